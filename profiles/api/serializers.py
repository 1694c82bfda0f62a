import copy
from datetime import UTC, timedelta

from django.urls import reverse
from django.utils import timezone
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from ..analysis.labels import InvalidLabelQuery, parse_group_by, parse_label_filter
from ..models import ENGINES_BY_TYPE, SERVICE_VALIDATOR, ProfileResult, ProfileType, Status
from ..selectors import EXPORT_FORMATS, continuous_next_run_at, function_point
from ..services.runs import heavy_engine_problem
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
        problem = heavy_engine_problem(
            profile_type=attrs["profileType"], engine=engine, duration_seconds=attrs["durationSeconds"]
        )
        if problem:
            raise serializers.ValidationError({"durationSeconds": problem})
        return attrs


# --- labels -----------------------------------------------------------------------------------


class LabelQueryFields(serializers.Serializer):
    """`labels=key:value,...` and `groupBy=key`, shared by results, merges, compares and exports.

    validated_data holds "labelFilter" (sorted pairs) and "groupBy" (a key or None).
    """

    labels = serializers.CharField(
        required=False, allow_blank=True, max_length=2000,
        help_text="only samples carrying every key:value pair, e.g. route:api/items/,task:send_mail "
        "(the key thread matches the sample's thread)",
    )
    groupBy = serializers.CharField(
        required=False, allow_blank=True, max_length=200,
        help_text="a label key, e.g. route: adds the share of each of its values",
    )

    def validate_labels(self, value):
        try:
            return parse_label_filter(value)
        except InvalidLabelQuery as exc:
            raise serializers.ValidationError(str(exc)) from None

    def validate_groupBy(self, value):
        try:
            return parse_group_by(value)
        except InvalidLabelQuery as exc:
            raise serializers.ValidationError(str(exc)) from None

    def validate(self, attrs):
        attrs = super().validate(attrs)
        attrs["labelFilter"] = attrs.pop("labels", ())
        attrs["groupBy"] = attrs.get("groupBy")
        return attrs


class LabelGroupSerializer(serializers.Serializer):
    value = serializers.CharField(allow_null=True, help_text="the label's value; null: samples without the key")
    total = serializers.FloatField(help_text="in the profile's unit")
    percent = serializers.FloatField(help_text="share of the (filtered) profile total, 0..100")
    sampleCount = serializers.IntegerField()


class LabelsAppliedSerializer(serializers.Serializer):
    filter = serializers.DictField(child=serializers.CharField(), help_text="the labels= pairs applied")
    groupBy = serializers.CharField(allow_null=True)
    groups = LabelGroupSerializer(many=True, allow_null=True, help_text="with groupBy: its values, heaviest first")
    overflow = serializers.IntegerField(
        help_text="samples whose value the agent replaced by \"(other)\" (too many values of a key)"
    )


class CompareLabelsAppliedSerializer(serializers.Serializer):
    filter = serializers.DictField(child=serializers.CharField())
    groupBy = serializers.CharField(allow_null=True)
    baseGroups = LabelGroupSerializer(many=True, allow_null=True)
    comparisonGroups = LabelGroupSerializer(many=True, allow_null=True)
    overflow = serializers.IntegerField()


class ResultQuerySerializer(LabelQueryFields):
    """Query of GET /{profileId}: with labels or groupBy, the result is computed from the samples."""

    limit = serializers.IntegerField(min_value=1, max_value=1000, default=50, help_text="with labels: top functions")


class TopFunctionSerializer(serializers.Serializer):
    function = serializers.CharField()
    file = serializers.CharField()
    line = serializers.IntegerField()
    self = serializers.FloatField()
    total = serializers.FloatField()
    selfPercent = serializers.FloatField()
    totalPercent = serializers.FloatField()


class ProfileSummaryFields(serializers.ModelSerializer):
    """The camelCase fields a profile shows wherever it is listed or read.

    ModelSerializer builds its fields anew for every instance, introspecting the model each time
    (17 % of a status GET's CPU, the API's most frequent call): they are built once per class
    and each instance gets its own copy, as DRF itself copies declared fields.
    """

    def get_fields(self):
        built = type(self).__dict__.get("_built_fields")
        if built is None:
            built = super().get_fields()
            type(self)._built_fields = built
        return copy.deepcopy(built)

    profileType = serializers.CharField(source="profile_type")
    startedAt = serializers.DateTimeField(source="started_at")
    completedAt = serializers.DateTimeField(source="completed_at", allow_null=True)
    durationSeconds = serializers.SerializerMethodField(help_text="whole seconds collected (the seed's integer)")
    durationSecondsPrecise = serializers.FloatField(source="effective_duration_seconds")
    sampleCount = serializers.IntegerField(source="sample_count")
    totalValue = serializers.IntegerField(source="total_value")

    def get_durationSeconds(self, obj) -> int:
        return round(obj.effective_duration_seconds)


class ProfileResultSerializer(ProfileSummaryFields):
    """The seed's ProfileResult in camelCase, plus what a user needs while and after it runs."""

    sampleRate = serializers.IntegerField(source="sample_rate")
    topFunctions = TopFunctionSerializer(source="top_functions", many=True)
    flameGraphUrl = serializers.SerializerMethodField()
    sizeBytes = serializers.IntegerField(source="size_bytes")
    overheadPercent = serializers.FloatField(source="overhead_percent", allow_null=True)
    labels = serializers.SerializerMethodField(
        help_text="with labels= or groupBy=: the filter and grouping applied (topFunctions, sampleCount "
        "and totalValue are then of the matching samples); otherwise null"
    )

    class Meta:
        model = ProfileResult
        fields = [
            "id", "service", "profileType", "status", "startedAt", "completedAt", "durationSeconds",
            "durationSecondsPrecise", "sampleCount", "topFunctions", "flameGraphUrl",
            "sampleRate", "unit", "totalValue", "engine", "phase", "progress", "error", "continuous",
            "instance", "notes", "sizeBytes", "overheadPercent", "labels",
        ]
        read_only_fields = fields

    @extend_schema_field(LabelsAppliedSerializer(allow_null=True))
    def get_labels(self, obj):
        return None  # ProfileDetailView fills it in when asked to filter or group

    def get_flameGraphUrl(self, obj) -> str | None:
        if obj.status != Status.COMPLETED:
            return None
        path = reverse("flamegraph-shared", args=[flamegraph_token(obj.pk)])
        request = self.context.get("request")
        return request.build_absolute_uri(path) if request else path


class ProfileStartedSerializer(ProfileResultSerializer):
    """The answer of POST /start: the running result, plus what may keep it from being collected."""

    warnings = serializers.ListField(child=serializers.CharField(), help_text="e.g. no live agent of the service")

    class Meta(ProfileResultSerializer.Meta):
        fields = [*ProfileResultSerializer.Meta.fields, "warnings"]
        read_only_fields = fields


class AgentEnginesField(serializers.DictField):
    """profile type -> the engines this instance can run for it.

    Types and engines this platform does not know are left out (an agent newer than the
    platform still polls), so routing only ever sees names it can hand out.
    """

    def __init__(self, **kwargs):
        super().__init__(child=serializers.ListField(child=serializers.CharField(max_length=32), max_length=16), **kwargs)

    def to_internal_value(self, data):
        engines = super().to_internal_value(data)
        return {
            kind: [name for name in dict.fromkeys(names) if name in ENGINES_BY_TYPE[kind]]
            for kind, names in engines.items()
            if kind in ENGINES_BY_TYPE
        }


class AgentInstanceSerializer(serializers.Serializer):
    id = serializers.RegexField(r"^[A-Za-z0-9_-]{1,64}$", help_text="random, one per process, new after fork")
    host = serializers.CharField(max_length=255, required=False, allow_blank=True, default="")
    pid = serializers.IntegerField(required=False, min_value=0, max_value=2**31 - 1, default=0)
    python = serializers.CharField(max_length=64, required=False, allow_blank=True, default="")
    agentVersion = serializers.CharField(max_length=32, required=False, allow_blank=True, default="")
    engines = AgentEnginesField(required=False, default=dict)


class AgentCollectingSerializer(serializers.Serializer):
    runId = serializers.CharField(max_length=64)
    profileType = serializers.ChoiceField(choices=ProfileType.choices)
    engine = serializers.CharField(max_length=32, allow_blank=True, required=False, default="")


class AgentPollSerializer(serializers.Serializer):
    service = serializers.CharField(max_length=128, validators=[SERVICE_VALIDATOR])
    instance = AgentInstanceSerializer()
    collecting = AgentCollectingSerializer(many=True, required=False, default=list, max_length=64)


class AgentProgressSerializer(serializers.Serializer):
    progress = serializers.FloatField(min_value=0.0, max_value=1.0)


class AgentFailSerializer(serializers.Serializer):
    error = serializers.CharField(max_length=2000)


class HistoryQuerySerializer(serializers.Serializer):
    """Query of GET /history; `from` and `to` (ISO 8601, `from` inclusive, `to` exclusive)."""

    service = serializers.CharField(max_length=128, validators=[SERVICE_VALIDATOR])
    profileType = serializers.ChoiceField(choices=ProfileType.choices, required=False)
    status = serializers.ChoiceField(choices=Status.choices, required=False)
    continuous = serializers.BooleanField(required=False, allow_null=True, default=None)
    function = serializers.CharField(
        max_length=500, required=False, help_text="adds this function's share and normalized value to each item"
    )

    def get_fields(self):
        # `from` is a Python keyword, so these two cannot be declared as class attributes.
        fields = super().get_fields()
        fields["from"] = serializers.DateTimeField(required=False, help_text="started at or after (ISO 8601)")
        fields["to"] = serializers.DateTimeField(required=False, help_text="started before (ISO 8601)")
        return fields

    def validate(self, attrs):
        if attrs.get("from") and attrs.get("to") and attrs["from"] >= attrs["to"]:
            raise serializers.ValidationError({"from": "'from' must be before 'to'."})
        return attrs


class FunctionPointSerializer(serializers.Serializer):
    function = serializers.CharField()
    selfPercent = serializers.FloatField()
    totalPercent = serializers.FloatField()
    normalizedSelf = serializers.FloatField(help_text="self value per second (bytes for memory)")
    inTopFunctions = serializers.BooleanField(
        help_text="false: the function is not among the profile's stored top functions (value unknown, reported 0)"
    )


class HistoryItemSerializer(ProfileSummaryFields):
    normalizedTotal = serializers.FloatField(source="normalized_total")
    function = serializers.SerializerMethodField()

    class Meta:
        model = ProfileResult
        fields = [
            "id", "service", "profileType", "status", "startedAt", "completedAt", "durationSeconds",
            "durationSecondsPrecise", "sampleCount", "continuous", "engine", "unit", "totalValue",
            "normalizedTotal", "function",
        ]
        read_only_fields = fields

    @extend_schema_field(FunctionPointSerializer(allow_null=True))
    def get_function(self, obj):
        name = self.context.get("function")
        return function_point(obj, name) if name else None


class HistoryPageSerializer(serializers.Serializer):
    service = serializers.CharField()
    items = HistoryItemSerializer(many=True)
    next = serializers.URLField(allow_null=True, help_text="the next (older) page, or null")
    previous = serializers.URLField(allow_null=True)


class ErrorSerializer(serializers.Serializer):
    detail = serializers.CharField()
    errors = serializers.DictField(required=False, help_text="per-field messages of a 400")


class AgentRunSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    profileType = serializers.ChoiceField(choices=ProfileType.choices)
    engine = serializers.CharField()
    durationSeconds = serializers.IntegerField()
    sampleRate = serializers.IntegerField()
    continuous = serializers.BooleanField()
    lease = serializers.CharField(help_text="present it as X-Profiling-Lease on progress, upload and fail")
    startAt = serializers.FloatField(help_text="Unix epoch seconds: when collection begins")
    deadline = serializers.FloatField(help_text="Unix epoch seconds: the upload must arrive by then")


class AgentPollResponseSerializer(serializers.Serializer):
    runs = AgentRunSerializer(many=True)
    pollAfterSeconds = serializers.FloatField()
    serverTime = serializers.FloatField(help_text="the server's clock (epoch seconds), for startAt and deadline")


class AgentInstanceInventorySerializer(serializers.Serializer):
    id = serializers.CharField(source="instance_id")
    host = serializers.CharField()
    pid = serializers.IntegerField()
    python = serializers.CharField()
    agentVersion = serializers.CharField(source="agent_version")
    engines = serializers.DictField(child=serializers.ListField(child=serializers.CharField()))
    collecting = AgentCollectingSerializer(many=True)
    firstSeenAt = serializers.DateTimeField(source="first_seen_at")
    lastPollAt = serializers.DateTimeField(source="last_poll_at")


class LastProfileSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    profileType = serializers.CharField(source="profile_type")
    status = serializers.CharField()
    startedAt = serializers.DateTimeField(source="started_at")


class ServiceInventorySerializer(serializers.Serializer):
    service = serializers.CharField()
    instances = AgentInstanceInventorySerializer(many=True, help_text="instances seen in the last PROFILING_AGENT_LIVE_SECONDS")
    lastProfile = LastProfileSerializer(source="last_profile", allow_null=True)


# --- compare ----------------------------------------------------------------------------------


MAX_RANGE = timedelta(days=400)


def validated_range(attrs: dict, start_key: str, end_key: str) -> tuple:
    """(start, end) in UTC, or a 400 naming the field."""
    start, end = attrs[start_key].astimezone(UTC), attrs[end_key].astimezone(UTC)
    if start >= end:
        raise serializers.ValidationError({start_key: f"'{start_key}' must be before '{end_key}'."})
    if end - start > MAX_RANGE:
        raise serializers.ValidationError({end_key: f"A range spans at most {MAX_RANGE.days} days."})
    return start, end


RANGE_COMPARE_FIELDS = ("service", "profileType", "baseFrom", "baseTo", "comparisonFrom", "comparisonTo")


class CompareQuerySerializer(LabelQueryFields):
    """Two profile ids, or two time ranges of one service and type (each merged, see /merge)."""

    baseProfileId = serializers.UUIDField(required=False)
    comparisonProfileId = serializers.UUIDField(required=False)
    service = serializers.CharField(max_length=128, validators=[SERVICE_VALIDATOR], required=False)
    profileType = serializers.ChoiceField(choices=ProfileType.choices, required=False)
    baseFrom = serializers.DateTimeField(required=False, help_text="base range start (ISO 8601), with baseTo")
    baseTo = serializers.DateTimeField(required=False)
    comparisonFrom = serializers.DateTimeField(required=False, help_text="comparison range start, with comparisonTo")
    comparisonTo = serializers.DateTimeField(required=False)
    engine = serializers.CharField(max_length=32, required=False, default="", help_text="ranges: when they hold several engines")
    noiseThresholdPercent = serializers.FloatField(
        min_value=0, max_value=1000, default=5.0,
        help_text="a function whose value moved by at most this percent is unchanged",
    )
    limit = serializers.IntegerField(
        min_value=1, max_value=1000, default=100, help_text="at most this many improvements and regressions each"
    )
    normalization = serializers.ChoiceField(
        choices=["perSecond", "share"],
        required=False,
        help_text="perSecond: per second of wall time (the default; memory: bytes as they are); "
        "share: each function's fraction of its profile's total, which a change of load does not move",
    )
    allowMismatch = serializers.BooleanField(
        default=False, help_text="compare profiles of different services or engines (refused by default)"
    )
    includeNoise = serializers.BooleanField(
        default=False, help_text="also list changes within sampling noise (significant: false)"
    )


    def validate(self, attrs):
        attrs = super().validate(attrs)
        if "baseProfileId" in attrs or "comparisonProfileId" in attrs:
            missing = [k for k in ("baseProfileId", "comparisonProfileId") if k not in attrs]
        else:
            missing = [k for k in RANGE_COMPARE_FIELDS if k not in attrs]
            if not missing:
                attrs["base"] = validated_range(attrs, "baseFrom", "baseTo")
                attrs["comparison"] = validated_range(attrs, "comparisonFrom", "comparisonTo")
        if missing:
            raise serializers.ValidationError(
                {k: "Required: give baseProfileId and comparisonProfileId, or service, profileType, "
                 "baseFrom, baseTo, comparisonFrom and comparisonTo." for k in missing}
            )
        return attrs


DELTA_STATUSES = ("changed", "added", "removed")


# Schema notes. drf-spectacular names enums after their property and warns (failing
# `check --deploy`) when one name covers two choice sets or one set gets two names; ENUM_NAME_OVERRIDES
# would fix that in settings, these two fields avoid it where they are declared instead.
@extend_schema_field(
    {
        "type": "string",
        "pattern": f"^({'|'.join(DELTA_STATUSES)})$",
        "description": "changed: on both sides; added: only in the comparison; removed: only in the base",
    }
)
class DeltaStatusField(serializers.ChoiceField):
    """A compare row's status: one of DELTA_STATUSES (a pattern, so it is not a second "status" enum)."""


@extend_schema_field(
    {
        "type": "array",
        "items": {"$ref": "#/components/schemas/ProfileTypeEnum"},  # the enum of every `profileType`
        "minItems": 1,
        "maxItems": len(ProfileType.choices),
        "uniqueItems": True,
    }
)
class ProfileTypesField(serializers.ListField):
    """A non-empty list of distinct profile types."""


class FunctionDeltaSerializer(serializers.Serializer):
    function = serializers.CharField()
    file = serializers.CharField(allow_blank=True)
    line = serializers.IntegerField()
    baseValue = serializers.FloatField(help_text="normalized (per second, or bytes for memory)")
    comparisonValue = serializers.FloatField()
    delta = serializers.FloatField()
    deltaPercent = serializers.FloatField(allow_null=True, help_text="null when the function is new")
    status = DeltaStatusField(choices=DELTA_STATUSES)
    significant = serializers.BooleanField(
        help_text="the change is beyond sampling noise (1% family-wise false-alarm rate over the functions)"
    )
    noise = serializers.FloatField(help_text="standard deviation of the delta from sampling alone")


class ProfileComparisonSerializer(serializers.Serializer):
    """The seed's ProfileComparison, plus what a reader needs to interpret its numbers."""

    baseProfile = serializers.CharField()
    comparisonProfile = serializers.CharField()
    improvements = FunctionDeltaSerializer(many=True)
    regressions = FunctionDeltaSerializer(many=True)
    unchanged = serializers.IntegerField()
    droppedAsNoise = serializers.IntegerField(
        help_text="changes beyond noiseThresholdPercent left out of the lists as within sampling noise"
    )
    overallDelta = serializers.FloatField(help_text="percent change of the per-second totals (bytes for memory)")
    profileType = serializers.ChoiceField(choices=ProfileType.choices)
    unit = serializers.CharField(help_text="the profiles' unit")
    valueUnit = serializers.CharField(help_text="the unit of baseValue, comparisonValue and delta")
    normalization = serializers.ChoiceField(
        choices=["perSecond", "share", "none"],
        help_text="perSecond: per second of wall time; share: fraction of the profile total; none: as measured",
    )
    note = serializers.CharField()
    noiseThresholdPercent = serializers.FloatField()
    baseDurationSeconds = serializers.IntegerField(help_text="whole seconds, as the seed's durationSeconds")
    comparisonDurationSeconds = serializers.IntegerField()
    baseDurationSecondsPrecise = serializers.FloatField()
    comparisonDurationSecondsPrecise = serializers.FloatField()
    baseEngine = serializers.CharField(allow_blank=True)
    comparisonEngine = serializers.CharField(allow_blank=True)
    mismatch = serializers.CharField(
        allow_null=True, help_text="why the profiles differ beyond code (services, engines), when allowMismatch let it pass"
    )
    labels = CompareLabelsAppliedSerializer(allow_null=True, help_text="with labels= or groupBy=: what was applied")


# --- export -----------------------------------------------------------------------------------


class ExportQuerySerializer(LabelQueryFields):
    format = serializers.ChoiceField(
        choices=EXPORT_FORMATS,
        help_text="pprof: gzip'd protobuf (go tool pprof); speedscope: JSON; folded: text stacks",
    )


# --- continuous -------------------------------------------------------------------------------


class ContinuousProfileSerializer(serializers.Serializer):
    """The seed's ContinuousProfile; writes validate, reads add timestamps and `nextRunAt`."""

    service = serializers.CharField(max_length=128, validators=[SERVICE_VALIDATOR])
    profileTypes = ProfileTypesField(
        source="profile_types",
        child=serializers.ChoiceField(choices=ProfileType.choices),
        allow_empty=False,
        max_length=len(ProfileType.choices),
    )
    sampleRate = serializers.IntegerField(source="sample_rate", min_value=1, max_value=1000, default=100)
    retentionDays = serializers.IntegerField(source="retention_days", min_value=1, max_value=3650, default=30)
    enabled = serializers.BooleanField(default=True)
    createdAt = serializers.DateTimeField(source="created_at", read_only=True)
    updatedAt = serializers.DateTimeField(source="updated_at", read_only=True)
    nextRunAt = serializers.SerializerMethodField(
        help_text="when the next window begins (null when disabled)"
    )

    def validate_profileTypes(self, value):
        duplicates = sorted({t for t in value if value.count(t) > 1})
        if duplicates:
            raise serializers.ValidationError(f"Each type at most once; repeated: {', '.join(duplicates)}.")
        return value

    @extend_schema_field(serializers.DateTimeField(allow_null=True))
    def get_nextRunAt(self, obj):
        now = self.context.get("now") or timezone.now()
        when = continuous_next_run_at(config=obj, now=now)
        return serializers.DateTimeField().to_representation(when) if when else None


class ContinuousProfileUpdateSerializer(ContinuousProfileSerializer):
    """PUT/PATCH of /continuous/{service}: the service is the URL's; a different one is refused."""

    service = serializers.CharField(read_only=True)

    def validate(self, attrs):
        sent = self.initial_data.get("service") if isinstance(self.initial_data, dict) else None
        if sent is not None and sent != self.context["service"]:
            raise serializers.ValidationError(
                {"service": "The service is named by the URL; a configuration cannot be renamed."}
            )
        return attrs
