from django.urls import reverse
from rest_framework import serializers

from ..models import ENGINES_BY_TYPE, SERVICE_VALIDATOR, ProfileResult, ProfileType, Status
from ..signing import flamegraph_token


class ProfileRequestSerializer(serializers.Serializer):
    """The seed's ProfileRequest, plus an optional `engine` (cpu: py-spy or yappi)."""

    service = serializers.CharField(max_length=128, validators=[SERVICE_VALIDATOR])
    profileType = serializers.ChoiceField(choices=ProfileType.choices)
    durationSeconds = serializers.IntegerField(min_value=1, max_value=3600)
    sampleRate = serializers.IntegerField(min_value=1, max_value=1000, default=100)
    engine = serializers.CharField(required=False, allow_blank=True, default="")

    def validate(self, attrs):
        engine = attrs.get("engine") or ""
        allowed = ENGINES_BY_TYPE[attrs["profileType"]]
        if engine and engine not in allowed:
            raise serializers.ValidationError(
                {"engine": f"'{engine}' cannot collect {attrs['profileType']} profiles; use one of {', '.join(allowed)}."}
            )
        return attrs


class TopFunctionSerializer(serializers.Serializer):
    function = serializers.CharField()
    file = serializers.CharField()
    line = serializers.IntegerField()
    self = serializers.FloatField()
    total = serializers.FloatField()
    selfPercent = serializers.FloatField()
    totalPercent = serializers.FloatField()


class ProfileResultSerializer(serializers.ModelSerializer):
    """The seed's ProfileResult in camelCase, plus what a user needs while and after it runs."""

    profileType = serializers.CharField(source="profile_type")
    startedAt = serializers.DateTimeField(source="started_at")
    completedAt = serializers.DateTimeField(source="completed_at", allow_null=True)
    durationSeconds = serializers.FloatField(source="effective_duration_seconds")
    sampleCount = serializers.IntegerField(source="sample_count")
    sampleRate = serializers.IntegerField(source="sample_rate")
    topFunctions = TopFunctionSerializer(source="top_functions", many=True)
    flameGraphUrl = serializers.SerializerMethodField()
    totalValue = serializers.IntegerField(source="total_value")
    sizeBytes = serializers.IntegerField(source="size_bytes")

    class Meta:
        model = ProfileResult
        fields = [
            "id", "service", "profileType", "status", "startedAt", "completedAt", "durationSeconds",
            "sampleCount", "topFunctions", "flameGraphUrl",
            "sampleRate", "unit", "totalValue", "engine", "phase", "progress", "error", "continuous",
            "instance", "notes", "sizeBytes",
        ]
        read_only_fields = fields

    def get_flameGraphUrl(self, obj) -> str | None:
        if obj.status != Status.COMPLETED:
            return None
        path = reverse("flamegraph-shared", args=[flamegraph_token(obj.pk)])
        request = self.context.get("request")
        return request.build_absolute_uri(path) if request else path


class AgentInstanceSerializer(serializers.Serializer):
    host = serializers.CharField(max_length=255, required=False, allow_blank=True)
    pid = serializers.IntegerField(required=False, min_value=0)
    python = serializers.CharField(max_length=64, required=False, allow_blank=True)
    agentVersion = serializers.CharField(max_length=32, required=False, allow_blank=True)


class AgentPollSerializer(serializers.Serializer):
    service = serializers.CharField(max_length=128, validators=[SERVICE_VALIDATOR])
    instance = AgentInstanceSerializer(required=False, default=dict)


class AgentProgressSerializer(serializers.Serializer):
    progress = serializers.FloatField(min_value=0.0, max_value=1.0)


class AgentFailSerializer(serializers.Serializer):
    error = serializers.CharField(max_length=2000)


class HistoryQuerySerializer(serializers.Serializer):
    service = serializers.CharField(max_length=128, validators=[SERVICE_VALIDATOR])
    profileType = serializers.ChoiceField(choices=ProfileType.choices, required=False)
    status = serializers.ChoiceField(choices=Status.choices, required=False)
    continuous = serializers.BooleanField(required=False, allow_null=True, default=None)
    function = serializers.CharField(max_length=500, required=False)

    def to_internal_value(self, data):
        # `from` is a Python keyword: map the query names onto fields here.
        values = super().to_internal_value(data)
        for name in ("from", "to"):
            if data.get(name):
                values[name] = serializers.DateTimeField().run_validation(data[name])
        if values.get("from") and values.get("to") and values["from"] >= values["to"]:
            raise serializers.ValidationError({"from": "'from' must be before 'to'."})
        return values


class HistoryItemSerializer(serializers.ModelSerializer):
    profileType = serializers.CharField(source="profile_type")
    startedAt = serializers.DateTimeField(source="started_at")
    completedAt = serializers.DateTimeField(source="completed_at", allow_null=True)
    durationSeconds = serializers.FloatField(source="effective_duration_seconds")
    sampleCount = serializers.IntegerField(source="sample_count")
    totalValue = serializers.IntegerField(source="total_value")
    normalizedTotal = serializers.FloatField(source="normalized_total")
    function = serializers.SerializerMethodField()

    class Meta:
        model = ProfileResult
        fields = [
            "id", "service", "profileType", "status", "startedAt", "completedAt", "durationSeconds",
            "sampleCount", "continuous", "unit", "totalValue", "normalizedTotal", "function",
        ]
        read_only_fields = fields

    def get_function(self, obj) -> dict | None:
        from ..selectors import function_point

        name = self.context.get("function")
        return function_point(obj, name) if name else None
