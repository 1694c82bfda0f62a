"""Admin for ops staff: browse and compare profiles, manage continuous profiling.

Non-superusers see only their tenants' rows: every admin here is a `TenantScopedAdmin`
(`tenants.scoping`, the same helper as the API and the pages).
"""

import uuid

from django import forms
from django.contrib import admin, messages
from django.db.models import Q
from django.shortcuts import redirect
from django.urls import reverse
from django.utils.html import format_html

from tenants.admin import ReadOnlyAdmin, TenantListFilter, TenantScopedAdmin

from . import services
from .models import (
    AgentInstance,
    Alert,
    AlertWebhook,
    ContinuousProfile,
    ProfileResult,
    ProfileType,
    Status,
    WebhookDelivery,
)
from .pages.formatting import format_value


@admin.register(ProfileResult)
class ProfileResultAdmin(ReadOnlyAdmin):
    """Read-only: runs are started from the pages or the API, so an agent can claim them."""

    list_display = (
        "started", "service", "tenant_id_display", "type", "status_badge", "continuous", "total", "flame_graph_link",
    )
    list_display_links = ("started",)
    list_filter = (TenantListFilter, "service", "profile_type", "status", "continuous", ("started_at", admin.DateFieldListFilter))
    search_fields = ("service",)
    search_help_text = "Service name, or a profile id (full UUID)."
    date_hierarchy = "started_at"
    list_per_page = 50
    actions = ["compare_two"]
    readonly_fields = (
        "id", "tenant", "service", "profile_type", "status", "phase", "progress", "error", "engine",
        "sample_rate", "requested_duration_seconds", "duration_seconds", "started_at", "claimed_at",
        "completed_at", "deadline_at", "instance", "sample_count", "unit", "total_value", "notes",
        "continuous", "continuous_slot", "payload", "size_bytes", "flame_graph_link",
    )
    exclude = ("top_functions",)

    def get_search_results(self, request, queryset, search_term):
        """Service by substring; a UUID matches the profile id exactly."""
        term = search_term.strip()
        try:
            profile_id = uuid.UUID(term)
        except ValueError:
            return super().get_search_results(request, queryset, search_term)
        return queryset.filter(Q(pk=profile_id) | Q(service__icontains=term)), False

    @admin.display(description="started (UTC)", ordering="started_at")
    def started(self, obj):
        return obj.started_at.strftime("%Y-%m-%d\u00a0%H:%M:%S")

    @admin.display(description="type", ordering="profile_type")
    def type(self, obj):
        return obj.profile_type

    @admin.display(description="tenant", ordering="tenant__external_id")
    def tenant_id_display(self, obj):
        return obj.tenant.external_id

    @admin.display(description="status", ordering="status")
    def status_badge(self, obj):
        colours = {Status.COMPLETED: "#1d7a45", Status.FAILED: "#b42323", Status.RUNNING: "#9a5b00"}
        label = obj.status if obj.status != Status.RUNNING else f"{obj.get_phase_display()} ({obj.progress:.0%})"
        return format_html('<b style="color:{}" title="{}">{}</b>', colours.get(obj.status, "inherit"), obj.error, label)

    @admin.display(description="total", ordering="total_value")
    def total(self, obj):
        return format_value(obj.total_value, obj.unit).replace(" ", "\u00a0") if obj.status == Status.COMPLETED else "—"

    @admin.display(description="graph")
    def flame_graph_link(self, obj):
        if obj.status != Status.COMPLETED:
            return "—"
        return format_html('<a href="{}#flamegraph">open</a>', reverse("profile-page", args=[obj.pk]))

    def view_on_site(self, obj):
        return reverse("profile-page", args=[obj.pk])

    @admin.action(description="Compare the two selected profiles")
    def compare_two(self, request, queryset):
        profiles = list(queryset.order_by("started_at")[:3])
        if len(profiles) != 2:
            self.message_user(request, "Select exactly two profiles to compare.", messages.ERROR)
            return None
        base, comparison = profiles
        if base.profile_type != comparison.profile_type:
            self.message_user(
                request,
                f"Cannot compare a {base.profile_type} profile with a {comparison.profile_type} profile.",
                messages.ERROR,
            )
            return None
        if base.status != Status.COMPLETED or comparison.status != Status.COMPLETED:
            self.message_user(request, "Both profiles must be completed.", messages.ERROR)
            return None
        return redirect(f"{reverse('compare')}?base={base.pk}&comparison={comparison.pk}")


class ContinuousProfileForm(forms.ModelForm):
    profile_types = forms.MultipleChoiceField(
        choices=ProfileType.choices, widget=forms.CheckboxSelectMultiple, required=False,
        help_text="The types profiled on every scheduled run.",
    )

    class Meta:
        model = ContinuousProfile
        fields = ("tenant", "service", "profile_types", "sample_rate", "retention_days", "enabled")


@admin.register(ContinuousProfile)
class ContinuousProfileAdmin(TenantScopedAdmin):
    """Changes go through the continuous-profile services, so disabling also cancels waiting runs."""

    form = ContinuousProfileForm
    list_display = ("service", "tenant", "types", "sample_rate", "retention_days", "enabled", "updated_at", "history_link")
    list_filter = ("enabled", TenantListFilter)
    list_editable = ("enabled",)
    search_fields = ("service",)
    actions = ["enable", "disable"]

    def get_readonly_fields(self, request, obj=None):
        return ("tenant", "service") if obj is not None else ()

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        if change:
            services.continuous_profile_update(
                config=obj,
                profile_types=data.get("profile_types", obj.profile_types),
                sample_rate=data.get("sample_rate", obj.sample_rate),
                retention_days=data.get("retention_days", obj.retention_days),
                enabled=data.get("enabled", obj.enabled),
            )
        else:
            config, _ = services.continuous_profile_upsert(
                tenant=data["tenant"],
                service=data["service"],
                profile_types=data["profile_types"],
                sample_rate=data["sample_rate"],
                retention_days=data["retention_days"],
                enabled=data["enabled"],
            )
            obj.pk = config.pk

    def delete_model(self, request, obj):
        services.continuous_profile_delete(config=obj)

    def delete_queryset(self, request, queryset):
        for config in queryset:
            services.continuous_profile_delete(config=config)

    @admin.display(description="types")
    def types(self, obj):
        return ", ".join(obj.profile_types) or "—"

    @admin.display(description="history")
    def history_link(self, obj):
        return format_html('<a href="{}">open</a>', reverse("history", args=[obj.tenant.external_id, obj.service]))

    def _set_enabled(self, request, queryset, enabled: bool) -> None:
        count = 0
        for config in queryset:
            services.continuous_profile_update(config=config, enabled=enabled)
            count += 1
        state = "Enabled" if enabled else "Disabled"
        self.message_user(request, f"{state} {count} configuration(s).", messages.SUCCESS)

    @admin.action(description="Enable continuous profiling of the selected services", permissions=["change"])
    def enable(self, request, queryset):
        self._set_enabled(request, queryset, True)

    @admin.action(description="Disable continuous profiling of the selected services", permissions=["change"])
    def disable(self, request, queryset):
        self._set_enabled(request, queryset, False)


@admin.register(AgentInstance)
class AgentInstanceAdmin(ReadOnlyAdmin):
    """The agents as their polls last reported them (written by the agent API only)."""

    list_display = ("service", "tenant", "host", "pid", "python", "agent_version", "last_poll_at")
    list_filter = (TenantListFilter, "service")
    search_fields = ("service", "host", "instance_id")
    readonly_fields = (
        "tenant", "service", "instance_id", "host", "pid", "python", "agent_version", "engines",
        "collecting", "first_seen_at", "last_poll_at",
    )


@admin.register(Alert)
class AlertAdmin(ReadOnlyAdmin):
    list_display = ("function", "service", "tenant", "profile_type", "status", "baseline_share", "current_share", "opened_at")
    list_filter = (TenantListFilter, "status", "service", "profile_type")
    search_fields = ("function", "service")


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "event", "tenant", "url", "status", "attempts", "response_status")
    list_filter = (TenantListFilter, "status", "event")


@admin.register(AlertWebhook)
class AlertWebhookAdmin(ReadOnlyAdmin):
    """Set through the API, which checks the URL and shows the new secret once."""

    list_display = ("tenant", "url", "enabled", "updated_at")
    exclude = ("secret",)
