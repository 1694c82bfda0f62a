"""REST API of regression alerts: the list, one alert, each service's policy, the tenant's
webhook and its delivery log. Tenant scoping is in the base view."""

import uuid

from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import exceptions, serializers, status
from rest_framework.pagination import CursorPagination
from rest_framework.response import Response

from tenants.api import TenantScopedAPIView

from .. import selectors, services
from ..models import (
    SERVICE_VALIDATOR,
    Alert,
    AlertBaseline,
    AlertStatus,
    AlertWebhook,
    DeliveryStatus,
    WebhookDelivery,
)
from .views import AUTH_ERRORS, NOT_FOUND, UNSUPPORTED, ServiceConfigView


def _one_of(values: list[str], description: str):
    """A string of fixed values, documented as a pattern: enums named "status" already exist."""
    return extend_schema_field({"type": "string", "pattern": f"^({'|'.join(values)})$", "description": description})


@_one_of(AlertStatus.values, "open: the function is still above its baseline; resolved: it came back")
class AlertStatusField(serializers.CharField):
    pass


@_one_of(DeliveryStatus.values, "pending: being sent or retried; delivered: a 2xx answer; failed: every retry failed")
class DeliveryStatusField(serializers.CharField):
    pass


class AlertSerializer(serializers.ModelSerializer):
    service = serializers.CharField()
    status = AlertStatusField()
    profileType = serializers.CharField(source="profile_type")
    thresholdPercent = serializers.FloatField(source="threshold_percent")
    baselineShare = serializers.FloatField(source="baseline_share", help_text="mean self share over the baseline windows")
    baselineWindows = serializers.IntegerField(source="baseline_windows")
    currentShare = serializers.FloatField(source="current_share", help_text="self share in the latest windows checked")
    peakShare = serializers.FloatField(source="peak_share")
    risePercent = serializers.FloatField(source="rise_percent", help_text="rise of currentShare over baselineShare")
    profileId = serializers.UUIDField(source="profile_id", allow_null=True)
    baselineProfileId = serializers.UUIDField(source="baseline_profile_id", allow_null=True)
    compareUrl = serializers.SerializerMethodField(help_text="the compare page: baseline window against the latest one")
    openedAt = serializers.DateTimeField(source="opened_at")
    lastSeenAt = serializers.DateTimeField(source="last_seen_at")
    resolvedAt = serializers.DateTimeField(source="resolved_at", allow_null=True)

    class Meta:
        model = Alert
        fields = [
            "id", "service", "profileType", "function", "file", "line", "status", "baseline", "thresholdPercent",
            "baselineShare", "baselineWindows", "currentShare", "peakShare", "risePercent", "profileId",
            "baselineProfileId", "compareUrl", "openedAt", "lastSeenAt", "resolvedAt",
        ]
        read_only_fields = fields

    def get_compareUrl(self, obj) -> str | None:
        path = selectors.alert_compare_url(obj)
        request = self.context.get("request")
        return request.build_absolute_uri(path) if path and request else path


@_one_of(AlertStatus.values, "only alerts in this state")
class AlertStatusChoice(serializers.ChoiceField):
    pass


class AlertQuerySerializer(serializers.Serializer):
    status = AlertStatusChoice(choices=AlertStatus.choices, required=False)
    service = serializers.CharField(max_length=128, validators=[SERVICE_VALIDATOR], required=False)


class AlertPagination(CursorPagination):
    ordering = ("-opened_at", "-id")
    page_size = 50
    page_size_query_param = "pageSize"
    max_page_size = 500


class AlertPageSerializer(serializers.Serializer):
    items = AlertSerializer(many=True)
    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)


class AlertListView(TenantScopedAPIView):
    """GET /alerts: the tenant's regression alerts, newest first; ?status=open|resolved&service=."""

    queryset = Alert.objects.all()
    serializer_class = AlertSerializer
    pagination_class = AlertPagination

    @extend_schema(
        operation_id="alerts_list", parameters=[AlertQuerySerializer], responses={200: AlertPageSerializer, **AUTH_ERRORS}
    )
    def get(self, request):
        query = AlertQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        page = self.paginate_queryset(selectors.alert_list(queryset=self.get_queryset(), filters=query.validated_data))
        return Response(
            {
                "items": AlertSerializer(page, many=True, context={"request": request}).data,
                "next": self.paginator.get_next_link(),
                "previous": self.paginator.get_previous_link(),
            }
        )


class AlertDetailView(TenantScopedAPIView):
    queryset = Alert.objects.all()
    serializer_class = AlertSerializer
    lookup_url_kwarg = "alert_id"
    not_found_detail = "alert not found"

    def get_object(self):
        try:
            uuid.UUID(self.kwargs["alert_id"])
        except ValueError:
            raise exceptions.NotFound(self.not_found_detail) from None
        return super().get_object()

    @extend_schema(responses={200: AlertSerializer, **AUTH_ERRORS, **NOT_FOUND})
    def get(self, request, alert_id):
        return Response(self.get_serializer(self.get_object()).data)


class AlertPolicySerializer(serializers.Serializer):
    enabled = serializers.BooleanField(default=True)
    baseline = serializers.ChoiceField(
        choices=AlertBaseline.choices, default=AlertBaseline.TRAILING_24H,
        help_text="trailing24h: the windows of the previous 24 h; dayBefore: those within 30 min of the same time a day earlier",
    )
    thresholdPercent = serializers.FloatField(
        source="threshold_percent", min_value=0, max_value=10_000, default=10.0,
        help_text="alert when a function's share rises significantly and by more than this percent",
    )
    latestWindows = serializers.IntegerField(
        source="latest_windows", min_value=1, max_value=60, default=1,
        help_text="how many of the newest windows are compared with the baseline",
    )


class AlertPolicyView(ServiceConfigView):
    """GET/PUT /alerts/policies/{service}: how the service's continuous windows are checked."""

    serializer_class = AlertPolicySerializer

    @extend_schema(responses={200: AlertPolicySerializer, **AUTH_ERRORS, **NOT_FOUND})
    def get(self, request, service):
        return Response(AlertPolicySerializer(selectors.alert_policy_for(config=self.get_object())).data)

    @extend_schema(
        request=AlertPolicySerializer,
        responses={200: AlertPolicySerializer, **AUTH_ERRORS, **NOT_FOUND, **UNSUPPORTED},
    )
    def put(self, request, service):
        config = self.get_object()
        body = AlertPolicySerializer(data=request.data)
        body.is_valid(raise_exception=True)
        policy = services.alert_policy_set(config=config, **body.validated_data)
        return Response(AlertPolicySerializer(policy).data)


class AlertWebhookSerializer(serializers.Serializer):
    url = serializers.URLField(max_length=2000)
    enabled = serializers.BooleanField(default=True)
    rotateSecret = serializers.BooleanField(default=False, write_only=True, help_text="issue a new signing secret")
    secret = serializers.SerializerMethodField(
        help_text="the HMAC-SHA256 signing key, only in the answer that created or rotated it; "
        "each POST carries X-Profiling-Signature: sha256=<hex HMAC of the body>"
    )
    secretPrefix = serializers.SerializerMethodField()

    def get_secret(self, obj) -> str | None:
        return obj.secret if self.context.get("show_secret") else None

    def get_secretPrefix(self, obj) -> str:
        return obj.secret[:6] + "…"


class AlertWebhookView(TenantScopedAPIView):
    """GET/PUT/DELETE /alerts/webhook: the one URL the tenant's alert events are POSTed to."""

    queryset = AlertWebhook.objects.all()
    serializer_class = AlertWebhookSerializer
    not_found_detail = "No alert webhook is set for this tenant."

    def get_object(self):
        webhook = self.get_queryset().first()
        if webhook is None:
            raise exceptions.NotFound(self.not_found_detail)
        return webhook

    @extend_schema(responses={200: AlertWebhookSerializer, **AUTH_ERRORS, **NOT_FOUND})
    def get(self, request):
        return Response(AlertWebhookSerializer(self.get_object()).data)

    @extend_schema(
        request=AlertWebhookSerializer,
        responses={200: AlertWebhookSerializer, **AUTH_ERRORS, **UNSUPPORTED},
    )
    def put(self, request):
        body = AlertWebhookSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        try:
            webhook, new_secret = services.alert_webhook_set(
                tenant=request.tenant, url=data["url"], enabled=data["enabled"], rotate_secret=data["rotateSecret"]
            )
        except services.WebhookRefused as exc:
            raise exceptions.ValidationError({"url": [str(exc)]}) from None
        return Response(AlertWebhookSerializer(webhook, context={"show_secret": new_secret}).data)

    @extend_schema(responses={204: None, **AUTH_ERRORS, **NOT_FOUND})
    def delete(self, request):
        services.alert_webhook_delete(webhook=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)


class WebhookDeliverySerializer(serializers.ModelSerializer):
    status = DeliveryStatusField()
    alertId = serializers.UUIDField(source="alert_id")
    responseStatus = serializers.IntegerField(source="response_status", allow_null=True)
    createdAt = serializers.DateTimeField(source="created_at")
    deliveredAt = serializers.DateTimeField(source="delivered_at", allow_null=True)

    class Meta:
        model = WebhookDelivery
        fields = ["id", "alertId", "event", "url", "status", "attempts", "responseStatus", "error", "createdAt", "deliveredAt"]
        read_only_fields = fields


class DeliveryPagination(CursorPagination):
    ordering = ("-created_at", "-id")
    page_size = 50


class DeliveryPageSerializer(serializers.Serializer):
    items = WebhookDeliverySerializer(many=True)
    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)


class WebhookDeliveryListView(TenantScopedAPIView):
    """GET /alerts/deliveries: the delivery log of the tenant's webhook, newest first."""

    queryset = WebhookDelivery.objects.all()
    serializer_class = WebhookDeliverySerializer
    pagination_class = DeliveryPagination

    @extend_schema(responses={200: DeliveryPageSerializer, **AUTH_ERRORS})
    def get(self, request):
        page = self.paginate_queryset(self.get_queryset())
        return Response(
            {
                "items": WebhookDeliverySerializer(page, many=True).data,
                "next": self.paginator.get_next_link(),
                "previous": self.paginator.get_previous_link(),
            }
        )

