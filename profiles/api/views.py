"""REST API of the seed: validate, call a service or selector, serialize. Tenant scoping is in the base."""

import gzip

from django.conf import settings
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, status
from rest_framework.pagination import CursorPagination
from rest_framework.response import Response

from tenants.api import TenantScopedAPIView
from tenants.models import TokenScope

from .. import selectors, services
from ..models import ProfileResult
from .serializers import (
    AgentFailSerializer,
    AgentPollSerializer,
    AgentProgressSerializer,
    HistoryItemSerializer,
    HistoryQuerySerializer,
    ProfileRequestSerializer,
    ProfileResultSerializer,
)


class ProfileStartView(TenantScopedAPIView):
    """POST /start: create a run for the service's agent to claim; 202 with the running result."""

    queryset = ProfileResult.objects.all()
    serializer_class = ProfileRequestSerializer

    def post(self, request):
        request_serializer = ProfileRequestSerializer(data=request.data)
        request_serializer.is_valid(raise_exception=True)
        data = request_serializer.validated_data
        profile = services.profile_start(
            tenant=request.tenant,
            service=data["service"],
            profile_type=data["profileType"],
            duration_seconds=data["durationSeconds"],
            sample_rate=data["sampleRate"],
            engine=data["engine"],
        )
        body = ProfileResultSerializer(profile, context={"request": request}).data
        location = request.build_absolute_uri(reverse("profile-detail", args=[profile.pk]))
        return Response(body, status=status.HTTP_202_ACCEPTED, headers={"Location": location})


class ProfileDetailView(TenantScopedAPIView):
    queryset = ProfileResult.objects.all()
    serializer_class = ProfileResultSerializer
    lookup_url_kwarg = "profile_id"

    def get(self, request, profile_id):
        return Response(self.get_serializer(self.get_object()).data)


class AgentView(TenantScopedAPIView):
    """Base of the agent endpoints: agent-scoped tokens only."""

    required_scope = TokenScope.AGENT
    queryset = ProfileResult.objects.all()
    lookup_url_kwarg = "profile_id"


class AgentPollView(AgentView):
    """The agent asks for work; the oldest waiting run of its service is claimed for it, atomically."""

    serializer_class = AgentPollSerializer

    def post(self, request):
        poll = AgentPollSerializer(data=request.data)
        poll.is_valid(raise_exception=True)
        profile = services.profile_claim_next(
            tenant=request.tenant, service=poll.validated_data["service"], instance=poll.validated_data["instance"]
        )
        run = None
        if profile is not None:
            run = {
                "id": str(profile.pk),
                "profileType": profile.profile_type,
                "durationSeconds": profile.requested_duration_seconds,
                "sampleRate": profile.sample_rate,
                "engine": profile.engine or None,
            }
        return Response({"run": run, "pollAfterSeconds": settings.PROFILING_POLL_SECONDS})


class AgentProgressView(AgentView):
    serializer_class = AgentProgressSerializer

    def post(self, request, profile_id):
        body = AgentProgressSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        services.profile_record_progress(profile=self.get_object(), progress=body.validated_data["progress"])
        return Response(status=status.HTTP_204_NO_CONTENT)


class AgentFailView(AgentView):
    serializer_class = AgentFailSerializer

    def post(self, request, profile_id):
        body = AgentFailSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        services.profile_fail(profile=self.get_object(), error=f"agent: {body.validated_data['error']}")
        return Response(status=status.HTTP_204_NO_CONTENT)


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The uploaded profile is too large."


class AgentUploadView(AgentView):
    """The raw profile: gzip-compressed pyprof-raw/1 JSON, at most PROFILING_MAX_UPLOAD_BYTES."""

    parser_classes = []  # the body is read raw, with its size checked first

    @extend_schema(
        request={"application/json": OpenApiTypes.BINARY},
        responses={202: OpenApiTypes.OBJECT, 409: OpenApiTypes.OBJECT, 413: OpenApiTypes.OBJECT},
    )
    def post(self, request, profile_id):
        profile = self.get_object()
        limit = settings.PROFILING_MAX_UPLOAD_BYTES
        try:
            declared = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            declared = 0
        if declared > limit:
            raise PayloadTooLarge(f"The upload is {declared} bytes; the limit is {limit} bytes.")
        data = request._request.read(limit + 1)
        if len(data) > limit:
            raise PayloadTooLarge(f"The upload exceeds the limit of {limit} bytes.")
        if not data.startswith(b"\x1f\x8b"):
            if request.META.get("HTTP_CONTENT_ENCODING", "") == "gzip" or not data:
                raise exceptions.ParseError("The upload is not gzip data.")
            data = gzip.compress(data, mtime=0)  # plain JSON is accepted too; stored compressed
        try:
            services.profile_accept_upload(profile=profile, data=data)
        except services.RunConflict as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        return Response({"detail": "accepted"}, status=status.HTTP_202_ACCEPTED)


class HistoryPagination(CursorPagination):
    ordering = "-started_at"
    page_size = 50
    page_size_query_param = "pageSize"
    max_page_size = 500


class ProfileHistoryView(TenantScopedAPIView):
    """GET /history?service=..: newest first, filterable, cursor-paginated, with trend values."""

    queryset = ProfileResult.objects.all()
    serializer_class = HistoryItemSerializer
    pagination_class = HistoryPagination

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
