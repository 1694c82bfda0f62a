"""REST API of the seed: validate, call a service or selector, serialize. Tenant scoping is in the base."""

from urllib.parse import urlencode

from django.http import HttpResponse
from django.urls import reverse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions, status
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.pagination import CursorPagination
from rest_framework.response import Response

from tenants.api import TenantScopedAPIView

from .. import selectors, services
from ..analysis import top_functions
from ..models import SERVICE_VALIDATOR, ContinuousProfile, ProfileResult
from .serializers import (
    CompareQuerySerializer,
    ContinuousProfileSerializer,
    ContinuousProfileUpdateSerializer,
    ErrorSerializer,
    ExportQuerySerializer,
    HistoryItemSerializer,
    HistoryPageSerializer,
    HistoryQuerySerializer,
    ProfileComparisonSerializer,
    ProfileRequestSerializer,
    ProfileResultSerializer,
    ProfileStartedSerializer,
    ResultQuerySerializer,
    ServiceInventorySerializer,
    TopFunctionSerializer,
)

# Every endpoint can answer these (bad token, wrong tenant or scope, bad input, not found).
AUTH_ERRORS = {
    400: OpenApiResponse(ErrorSerializer, description="invalid input or missing X-Tenant-ID"),
    401: OpenApiResponse(ErrorSerializer, description="missing, unknown or revoked token"),
    403: OpenApiResponse(ErrorSerializer, description="token of another tenant or scope"),
}
NOT_FOUND = {404: OpenApiResponse(ErrorSerializer, description="no such object for this tenant")}
CONFLICT = {409: OpenApiResponse(ErrorSerializer, description="the profile is not completed")}
UNSUPPORTED = {415: OpenApiResponse(ErrorSerializer, description="the body is not JSON")}


class Incomparable(exceptions.APIException):
    status_code = status.HTTP_400_BAD_REQUEST
    default_detail = "The two profiles cannot be compared."
    default_code = "incomparable"


class Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "The request conflicts with the object's state."
    default_code = "conflict"


class ProfileStartView(TenantScopedAPIView):
    """POST /start: create a run for the service's agent to claim; 202 with the running result."""

    queryset = ProfileResult.objects.all()
    serializer_class = ProfileRequestSerializer

    @extend_schema(
        request=ProfileRequestSerializer,
        responses={202: ProfileStartedSerializer, **AUTH_ERRORS, **UNSUPPORTED},
    )
    def post(self, request):
        request_serializer = ProfileRequestSerializer(data=request.data)
        request_serializer.is_valid(raise_exception=True)
        data = request_serializer.validated_data
        # Read once for both: routing the run and warning that no agent will take it.
        live = selectors.agent_instances_live(tenant=request.tenant, service=data["service"])
        profile = services.profile_start(
            tenant=request.tenant,
            service=data["service"],
            profile_type=data["profileType"],
            duration_seconds=data["durationSeconds"],
            sample_rate=data["sampleRate"],
            engine=data["engine"],
            live=live,
        )
        profile.warnings = selectors.start_warnings(profile=profile, live=live)
        body = ProfileStartedSerializer(profile, context={"request": request}).data
        location = request.build_absolute_uri(reverse("profile-detail", args=[profile.pk]))
        return Response(body, status=status.HTTP_202_ACCEPTED, headers={"Location": location})


class ProfileDetailView(TenantScopedAPIView):
    queryset = ProfileResult.objects.all()
    serializer_class = ProfileResultSerializer
    lookup_url_kwarg = "profile_id"
    not_found_detail = "profile not found"

    @extend_schema(
        parameters=[ResultQuerySerializer],
        responses={200: ProfileResultSerializer, **AUTH_ERRORS, **NOT_FOUND, **CONFLICT},
    )
    def get(self, request, profile_id):
        profile = self.get_object()
        query = ResultQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        params = query.validated_data
        body = self.get_serializer(profile).data
        if params["labelFilter"] or params["groupBy"]:
            # The stored summary is of all samples: recompute it from the labelled ones.
            try:
                filtered, body["labels"] = selectors.profile_labelled(
                    profile=profile, labels=params["labelFilter"], group_by=params["groupBy"]
                )
            except selectors.ProfileNotReady as exc:
                raise Conflict(str(exc)) from None
            body["topFunctions"] = TopFunctionSerializer(top_functions(filtered, limit=params["limit"]), many=True).data
            body["sampleCount"] = filtered.sample_count
            body["totalValue"] = round(filtered.total)
            if body["flameGraphUrl"] and request.query_params.get("labels"):
                body["flameGraphUrl"] += "?" + urlencode({"labels": request.query_params["labels"]})
        return Response(body)


class HistoryPagination(CursorPagination):
    ordering = ("-started_at", "-id")
    page_size = 50
    page_size_query_param = "pageSize"
    max_page_size = 500


class ProfileHistoryView(TenantScopedAPIView):
    """GET /history?service=..: newest first, filterable, cursor-paginated, with trend values.

    Every item carries `normalizedTotal` (per second of wall time; bytes for memory);
    `function=NAME` adds that function's share and normalized self value per item.
    """

    queryset = ProfileResult.objects.all()
    serializer_class = HistoryItemSerializer
    pagination_class = HistoryPagination

    @extend_schema(
        parameters=[
            HistoryQuerySerializer,
            OpenApiParameter("cursor", str, description="opaque cursor from `next` or `previous`"),
            OpenApiParameter("pageSize", int, description="items per page (default 50, at most 500)"),
        ],
        responses={
            200: HistoryPageSerializer,
            **AUTH_ERRORS,
            404: OpenApiResponse(ErrorSerializer, description="invalid cursor"),
        },
    )
    def get(self, request):
        query = HistoryQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        filters = query.validated_data
        qs = selectors.profile_history(queryset=self.get_queryset(), service=filters["service"], filters=filters)
        page = self.paginate_queryset(qs)
        items = HistoryItemSerializer(page, many=True, context={"function": filters.get("function")}).data
        return Response(
            {
                "service": filters["service"],
                "items": items,
                "next": self.paginator.get_next_link(),
                "previous": self.paginator.get_previous_link(),
            }
        )


class ProfileCompareView(TenantScopedAPIView):
    """GET /compare: the seed's ProfileComparison, values normalized so windows of any length compare."""

    queryset = ProfileResult.objects.all()
    serializer_class = ProfileComparisonSerializer

    @extend_schema(
        parameters=[CompareQuerySerializer],
        responses={
            200: ProfileComparisonSerializer,
            **AUTH_ERRORS,
            **NOT_FOUND,
            409: OpenApiResponse(ErrorSerializer, description="either profile is not completed"),
        },
    )
    def get(self, request):
        query = CompareQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        params = query.validated_data
        if "base" in params:
            return self._compare_ranges(request, params)
        scoped = self.get_queryset()
        base = scoped.filter(pk=params["baseProfileId"]).first()
        comparison = scoped.filter(pk=params["comparisonProfileId"]).first()
        for name, found in (("baseProfileId", base), ("comparisonProfileId", comparison)):
            if found is None:
                raise exceptions.NotFound(f"No profile {params[name]} ({name}) for this tenant.")
        try:
            result = selectors.profile_compare(
                base=base,
                comparison=comparison,
                normalization=params.get("normalization"),
                noise_threshold_percent=params["noiseThresholdPercent"],
                limit=params["limit"],
                allow_mismatch=params["allowMismatch"],
                include_noise=params["includeNoise"],
                labels=params["labelFilter"],
                group_by=params["groupBy"],
            )
        except selectors.ProfilesIncomparable as exc:
            raise Incomparable(str(exc)) from None
        except selectors.ProfileNotReady as exc:
            raise Conflict(str(exc)) from None
        return Response(ProfileComparisonSerializer(result).data)

    def _compare_ranges(self, request, params):
        try:
            result = selectors.range_compare(
                tenant=request.tenant, service=params["service"], profile_type=params["profileType"],
                base=params["base"], comparison=params["comparison"], engine=params["engine"],
                normalization=params.get("normalization"), noise_threshold_percent=params["noiseThresholdPercent"],
                limit=params["limit"], include_noise=params["includeNoise"],
                labels=params["labelFilter"], group_by=params["groupBy"],
            )
        except (selectors.ProfilesIncomparable, selectors.MixedEngines) as exc:
            raise Incomparable(str(exc)) from None
        except selectors.RangeEmpty as exc:
            raise exceptions.NotFound(str(exc)) from None
        except (selectors.ProfileNotReady, selectors.RangeNotRolledUp) as exc:
            raise Conflict(str(exc)) from None
        return Response(ProfileComparisonSerializer(result).data)


class ExportNegotiation(DefaultContentNegotiation):
    """Ignores `?format=` (here the export format, not DRF's renderer override) and Accept:
    errors of the export endpoint are always JSON; the file itself is a plain HttpResponse."""

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


class ProfileExportView(TenantScopedAPIView):
    """GET /{profileId}/export?format=pprof|speedscope|folded: the profile as a downloadable file.

    `labels=` keeps the matching samples; `groupBy=key` makes speedscope one profile per value
    and gives folded stacks a "key=value" root frame; pprof always carries every label.
    """

    queryset = ProfileResult.objects.all()
    lookup_url_kwarg = "profile_id"
    not_found_detail = "profile not found"
    content_negotiation_class = ExportNegotiation

    @extend_schema(
        parameters=[ExportQuerySerializer],
        responses={
            # JSON first: clients (and schemathesis) read the first media type's schema for JSON bodies.
            (200, "application/json"): OpenApiResponse(
                OpenApiTypes.OBJECT, description="speedscope file (https://www.speedscope.app/file-format-schema.json)"
            ),
            (200, "application/octet-stream"): OpenApiResponse(
                OpenApiTypes.BINARY, description="pprof: gzip-compressed protobuf"
            ),
            (200, "text/plain"): OpenApiResponse(OpenApiTypes.STR, description="folded stacks"),
            **AUTH_ERRORS,
            **NOT_FOUND,
            **CONFLICT,
        },
    )
    def get(self, request, profile_id):
        profile = self.get_object()
        query = ExportQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        try:
            params = query.validated_data
            exported = selectors.profile_export(
                profile=profile, export_format=params["format"], labels=params["labelFilter"], group_by=params["groupBy"]
            )
        except selectors.ProfileNotReady as exc:
            raise Conflict(str(exc)) from None
        response = HttpResponse(exported.content, content_type=exported.content_type)
        response["Content-Disposition"] = f'attachment; filename="{exported.filename}"'
        response["Content-Length"] = str(len(exported.content))
        return response


class ContinuousListView(TenantScopedAPIView):
    """GET: the tenant's continuous-profiling configurations; POST: create (201) or replace (200) one."""

    queryset = ContinuousProfile.objects.all()
    serializer_class = ContinuousProfileSerializer

    @extend_schema(responses={200: ContinuousProfileSerializer(many=True), **AUTH_ERRORS})
    def get(self, request):
        configs = selectors.continuous_profile_list(queryset=self.get_queryset())
        return Response(ContinuousProfileSerializer(configs, many=True, context={"now": timezone.now()}).data)

    @extend_schema(
        request=ContinuousProfileSerializer,
        responses={
            200: OpenApiResponse(ContinuousProfileSerializer, description="the configuration was replaced"),
            201: OpenApiResponse(ContinuousProfileSerializer, description="the configuration was created"),
            **AUTH_ERRORS,
            **UNSUPPORTED,
        },
    )
    def post(self, request):
        body = ContinuousProfileSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        config, created = services.continuous_profile_upsert(tenant=request.tenant, **body.validated_data)
        return Response(
            ContinuousProfileSerializer(config).data,
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )


class ServiceConfigView(TenantScopedAPIView):
    """Base of the views of one service's continuous configuration (`.../{service}` URLs)."""

    queryset = ContinuousProfile.objects.all()
    lookup_field = "service"
    lookup_url_kwarg = "service"
    not_found_detail = "No continuous-profiling configuration for this service."

    def get_object(self):
        # A name no configuration can have (e.g. with a NUL byte, which PostgreSQL refuses) is a 404.
        if not SERVICE_VALIDATOR.regex.fullmatch(self.kwargs["service"]):
            raise exceptions.NotFound(self.not_found_detail)
        return super().get_object()


class ContinuousDetailView(ServiceConfigView):
    """One service's configuration: read, replace (PUT), change (PATCH), delete."""

    serializer_class = ContinuousProfileSerializer

    @extend_schema(responses={200: ContinuousProfileSerializer, **AUTH_ERRORS, **NOT_FOUND})
    def get(self, request, service):
        return Response(ContinuousProfileSerializer(self.get_object()).data)

    @extend_schema(
        request=ContinuousProfileUpdateSerializer,
        responses={200: ContinuousProfileSerializer, **AUTH_ERRORS, **NOT_FOUND, **UNSUPPORTED},
    )
    def put(self, request, service):
        return self._update(request, service, partial=False)

    @extend_schema(
        request=ContinuousProfileUpdateSerializer(partial=True),
        responses={200: ContinuousProfileSerializer, **AUTH_ERRORS, **NOT_FOUND, **UNSUPPORTED},
    )
    def patch(self, request, service):
        return self._update(request, service, partial=True)

    @extend_schema(responses={204: None, **AUTH_ERRORS, **NOT_FOUND})
    def delete(self, request, service):
        services.continuous_profile_delete(config=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)

    def _update(self, request, service, *, partial):
        config = self.get_object()
        body = ContinuousProfileUpdateSerializer(data=request.data, partial=partial, context={"service": service})
        body.is_valid(raise_exception=True)
        if partial:
            config = services.continuous_profile_update(config=config, **body.validated_data)
        else:
            config, _ = services.continuous_profile_upsert(
                tenant=request.tenant, service=config.service, **body.validated_data
            )
        return Response(ContinuousProfileSerializer(config).data)


class ServiceInventoryView(TenantScopedAPIView):
    """GET /services: each service with profiles or agents, its live instances and last profile."""

    queryset = ProfileResult.objects.all()
    serializer_class = ServiceInventorySerializer

    @extend_schema(responses={200: ServiceInventorySerializer(many=True), **AUTH_ERRORS})
    def get(self, request):
        inventory = selectors.service_inventory(tenant=request.tenant)
        return Response(ServiceInventorySerializer(inventory, many=True).data)
