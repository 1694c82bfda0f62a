"""GET /merge: every completed profile of a service and type in a time range, as one profile."""

from urllib.parse import urlencode

from django.http import HttpResponse
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import exceptions, serializers, status
from rest_framework.response import Response

from tenants.api import TenantScopedAPIView

from .. import selectors
from ..analysis import top_functions
from ..analysis.labels import apply_labels
from ..models import SERVICE_VALIDATOR, ProfileResult, ProfileType
from ..selectors import EXPORT_FORMATS
from .serializers import (
    LabelQueryFields,
    LabelsAppliedSerializer,
    TopFunctionSerializer,
    validated_range,
)
from .views import ExportNegotiation


class MixedEnginesError(exceptions.APIException):
    status_code = status.HTTP_400_BAD_REQUEST
    default_code = "mixed_engines"


class RangeConflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "conflict"


class MergeQuerySerializer(LabelQueryFields):
    service = serializers.CharField(max_length=128, validators=[SERVICE_VALIDATOR])
    profileType = serializers.ChoiceField(choices=ProfileType.choices)
    engine = serializers.CharField(max_length=32, required=False, default="", help_text="needed when the range holds several engines")
    continuous = serializers.BooleanField(required=False, allow_null=True, default=None)
    limit = serializers.IntegerField(min_value=1, max_value=1000, default=50, help_text="at most this many top functions")
    format = serializers.ChoiceField(
        choices=EXPORT_FORMATS, required=False, help_text="download the merge as pprof, speedscope or folded stacks"
    )

    def get_fields(self):
        fields = super().get_fields()  # `from` is a Python keyword
        fields["from"] = serializers.DateTimeField(help_text="start of the range, inclusive (ISO 8601)")
        fields["to"] = serializers.DateTimeField(help_text="end of the range, exclusive (ISO 8601)")
        return fields

    def validate(self, attrs):
        attrs = super().validate(attrs)
        attrs["from"], attrs["to"] = validated_range(attrs, "from", "to")
        return attrs


class RangeSourcesSerializer(serializers.Serializer):
    rollups = serializers.IntegerField(help_text="per-period rollups read")
    windows = serializers.IntegerField(help_text="raw profiles read (ragged edges, on-demand runs, fresh periods)")
    bytesRead = serializers.IntegerField(help_text="stored bytes read from storage")


class MergedRangeSerializer(serializers.Serializer):
    """The seed's result shape for a merged range, plus what the range covered."""

    service = serializers.CharField()
    profileType = serializers.ChoiceField(choices=ProfileType.choices)
    engine = serializers.CharField(allow_blank=True)
    unit = serializers.CharField(allow_blank=True)
    profileCount = serializers.IntegerField()
    durationSeconds = serializers.FloatField(help_text="covered time: the summed length of the merged windows")
    coverage = serializers.FloatField(help_text="share of the range the windows overlap, 0..1")
    sampleCount = serializers.IntegerField()
    totalValue = serializers.FloatField()
    topFunctions = TopFunctionSerializer(many=True)
    flameGraphUrl = serializers.CharField(allow_null=True, help_text="the service page on this range (login required)")
    sources = RangeSourcesSerializer()
    labels = LabelsAppliedSerializer(
        allow_null=True, help_text="with labels= or groupBy=: what was applied (the figures above are of the matching samples)"
    )

    def get_fields(self):
        fields = super().get_fields()
        fields["from"] = serializers.DateTimeField()
        fields["to"] = serializers.DateTimeField()
        return fields


def service_page_url(request, *, service: str, profile_type: str, start, end) -> str:
    query = urlencode({
        "tenant": request.tenant.external_id, "type": profile_type,
        "from": start.isoformat(), "to": end.isoformat(),
    })
    return request.build_absolute_uri(f"{reverse('service-page', args=[service])}?{query}")


class MergeView(TenantScopedAPIView):
    """GET /merge?service=&profileType=&from=&to=: the range's profiles merged into one.

    A window cut by either end of the range is included whole; a range of several engines is
    refused (400) until `engine=` picks one. `labels=` and `groupBy=` filter and split the merge.
    """

    queryset = ProfileResult.objects.all()
    serializer_class = MergedRangeSerializer
    content_negotiation_class = ExportNegotiation  # `format` is the export format, not a renderer

    @extend_schema(
        parameters=[MergeQuerySerializer],
        responses={
            (200, "application/json"): MergedRangeSerializer,
            (200, "application/octet-stream"): OpenApiResponse(OpenApiTypes.BINARY, description="format=pprof"),
            (200, "text/plain"): OpenApiResponse(OpenApiTypes.STR, description="format=folded"),
            400: OpenApiResponse(description="invalid input, or a range of several engines"),
            409: OpenApiResponse(description="a stored file is unreadable, or the range's rollups are not built yet"),
        },
    )
    def get(self, request):
        query = MergeQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        params = query.validated_data
        start, end = params["from"], params["to"]
        try:
            plan = selectors.range_plan(
                tenant=request.tenant, service=params["service"], profile_type=params["profileType"],
                start=start, end=end, engine=params["engine"], continuous=params["continuous"],
            )
            merged = selectors.range_merge(plan=plan)
        except selectors.MixedEngines as exc:
            raise MixedEnginesError(str(exc)) from None
        except (selectors.RangeNotRolledUp, selectors.ProfileNotReady) as exc:
            raise RangeConflict(str(exc)) from None
        profile, labels = merged.profile, None
        if profile is not None and (params["labelFilter"] or params["groupBy"]):
            profile, labels = apply_labels(profile, labels=params["labelFilter"], group_by=params["groupBy"])
        if params.get("format"):
            return self._export(profile, params)
        return Response(MergedRangeSerializer({
            "service": params["service"],
            "profileType": params["profileType"],
            "engine": merged.engine,
            "unit": merged.unit,
            "from": start,
            "to": end,
            "profileCount": plan.profile_count,
            "durationSeconds": profile.duration_seconds if profile else 0.0,
            "coverage": plan.coverage,
            "sampleCount": profile.sample_count if profile else 0,
            "totalValue": profile.total if profile else 0,
            "topFunctions": top_functions(profile, limit=params["limit"]) if profile else [],
            "flameGraphUrl": service_page_url(
                request, service=params["service"], profile_type=params["profileType"], start=start, end=end
            ) if profile else None,
            "sources": {"rollups": len(plan.rollups), "windows": len(plan.windows), "bytesRead": plan.bytes_to_read},
            "labels": labels,
        }).data)

    def _export(self, profile, params):
        if profile is None:
            raise exceptions.NotFound("The range holds no completed profile to export.")
        stem = f"{params['service']}-{params['profileType']}-{params['from']:%Y%m%dT%H%M%SZ}-{params['to']:%Y%m%dT%H%M%SZ}"
        exported = selectors.export_analysis(
            profile, export_format=params["format"], stem=stem, group_by=params["groupBy"]
        )
        response = HttpResponse(exported.content, content_type=exported.content_type)
        response["Content-Disposition"] = f'attachment; filename="{exported.filename}"'
        response["Content-Length"] = str(len(exported.content))
        return response
