"""The agent protocol's endpoints: poll (claim), progress, upload, fail. Agent-scoped tokens only."""

import time

from django.conf import settings
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions, status
from rest_framework.response import Response

from tenants.api import TenantScopedAPIView
from tenants.models import TokenScope

from .. import services
from ..analysis.model import InvalidProfile
from ..models import ProfileResult
from .serializers import (
    AgentFailSerializer,
    AgentPollResponseSerializer,
    AgentPollSerializer,
    AgentProgressSerializer,
    ErrorSerializer,
)
from .views import AUTH_ERRORS, NOT_FOUND, UNSUPPORTED


class AgentView(TenantScopedAPIView):
    """Base of the agent endpoints: agent-scoped tokens only."""

    required_scope = TokenScope.AGENT
    queryset = ProfileResult.objects.all()
    lookup_url_kwarg = "profile_id"


LEASE_HEADER = "HTTP_X_PROFILING_LEASE"
LEASE_PARAMETER = OpenApiParameter(
    "X-Profiling-Lease", str, OpenApiParameter.HEADER, required=True, description="the lease the claim handed out"
)
LEASE_CONFLICT = {
    409: OpenApiResponse(ErrorSerializer, description="wrong lease, or the run is no longer being collected"),
}


def _lease(request) -> str:
    return request.META.get(LEASE_HEADER, "").strip()


def _conflict(exc: Exception) -> Response:
    return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)


class AgentPollView(AgentView):
    """The agent reports itself and asks for work; every run it can collect now is claimed for it."""

    serializer_class = AgentPollSerializer

    @extend_schema(
        request=AgentPollSerializer,
        responses={200: AgentPollResponseSerializer, **AUTH_ERRORS, **UNSUPPORTED},
    )
    def post(self, request):
        poll = AgentPollSerializer(data=request.data)
        poll.is_valid(raise_exception=True)
        service = poll.validated_data["service"]
        instance = services.agent_instance_record(
            tenant=request.tenant,
            service=service,
            instance=poll.validated_data["instance"],
            collecting=poll.validated_data["collecting"],
        )
        claims = services.profile_claim_for(tenant=request.tenant, service=service, instance=instance)
        runs = [
            {
                "id": str(claim.profile.pk),
                "profileType": claim.profile.profile_type,
                "engine": claim.profile.engine,
                "durationSeconds": claim.profile.requested_duration_seconds,
                "sampleRate": claim.profile.sample_rate,
                "continuous": claim.profile.continuous,
                "lease": claim.lease,
                "startAt": claim.profile.scheduled_start_at.timestamp(),
                "deadline": claim.profile.deadline_at.timestamp(),
            }
            for claim in claims
        ]
        return Response(
            {"runs": runs, "pollAfterSeconds": settings.PROFILING_POLL_SECONDS, "serverTime": time.time()}
        )


class AgentProgressView(AgentView):
    serializer_class = AgentProgressSerializer

    @extend_schema(
        request=AgentProgressSerializer,
        parameters=[LEASE_PARAMETER],
        responses={204: None, **AUTH_ERRORS, **NOT_FOUND, **LEASE_CONFLICT, **UNSUPPORTED},
    )
    def post(self, request, profile_id):
        profile = self.get_object()
        body = AgentProgressSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            services.profile_record_progress(
                profile=profile, lease=_lease(request), progress=body.validated_data["progress"]
            )
        except services.RunConflict as exc:
            return _conflict(exc)
        return Response(status=status.HTTP_204_NO_CONTENT)


class AgentFailView(AgentView):
    serializer_class = AgentFailSerializer

    @extend_schema(
        request=AgentFailSerializer,
        parameters=[LEASE_PARAMETER],
        responses={204: None, **AUTH_ERRORS, **NOT_FOUND, **LEASE_CONFLICT, **UNSUPPORTED},
    )
    def post(self, request, profile_id):
        profile = self.get_object()
        body = AgentFailSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            services.profile_agent_fail(profile=profile, lease=_lease(request), error=body.validated_data["error"])
        except services.RunConflict as exc:
            return _conflict(exc)
        return Response(status=status.HTTP_204_NO_CONTENT)


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The uploaded profile is too large."


class AgentUploadView(AgentView):
    """The raw profile: gzip-compressed pyprof-raw/1 JSON, at most PROFILING_MAX_UPLOAD_BYTES.

    202 only once the upload is valid, durable in storage and its run is processing.
    """

    parser_classes = []  # the body is read raw, with its size checked first

    @extend_schema(
        request={"application/json": OpenApiTypes.BINARY},
        parameters=[LEASE_PARAMETER],
        responses={
            202: ErrorSerializer,
            400: OpenApiResponse(ErrorSerializer, description="the upload is invalid; the detail names the field"),
            **AUTH_ERRORS,
            **NOT_FOUND,
            409: OpenApiResponse(ErrorSerializer, description="wrong lease, deadline passed, or not collecting"),
            413: OpenApiResponse(ErrorSerializer, description="over PROFILING_MAX_UPLOAD_BYTES"),
            415: OpenApiResponse(ErrorSerializer, description="not sent with Content-Encoding: gzip"),
        },
    )
    def post(self, request, profile_id):
        profile = self.get_object()
        data = self._read_body(request._request)
        if request.META.get("HTTP_CONTENT_ENCODING", "").strip().lower() != "gzip":
            raise exceptions.UnsupportedMediaType(
                request.content_type,
                "An upload must be gzip-compressed JSON sent with the header Content-Encoding: gzip.",
            )
        try:
            services.profile_accept_upload(
                profile=profile, data=data, lease=request.META.get("HTTP_X_PROFILING_LEASE", "")
            )
        except InvalidProfile as exc:
            raise exceptions.ParseError(f"The uploaded profile is invalid: {exc}") from None
        except services.RunConflict as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        return Response({"detail": "accepted"}, status=status.HTTP_202_ACCEPTED)

    @staticmethod
    def _read_body(raw_request) -> bytes:
        """The body, at most PROFILING_MAX_UPLOAD_BYTES. Over that it is read to its end and dropped
        (so the agent reads the 413 rather than a reset connection), and answered 413."""
        limit = settings.PROFILING_MAX_UPLOAD_BYTES
        try:
            declared = int(raw_request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            declared = 0
        data = raw_request.read(limit + 1) if declared <= limit else b""
        if declared > limit or len(data) > limit:
            while raw_request.read(1 << 20):
                pass
            raise PayloadTooLarge(f"The upload is over the limit of {limit} bytes (PROFILING_MAX_UPLOAD_BYTES).")
        return data
