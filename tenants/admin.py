from django.contrib import admin, messages

from .models import ApiToken, Tenant
from .services import token_create, token_revoke


class ApiTokenInline(admin.TabularInline):
    model = ApiToken
    extra = 0
    fields = ("name", "scope", "masked", "created_at", "last_used_at", "revoked_at")
    readonly_fields = fields
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Tenant)
class TenantAdmin(admin.ModelAdmin):
    list_display = ("external_id", "name", "is_active", "created_at")
    list_filter = ("is_active",)
    search_fields = ("external_id", "name")
    filter_horizontal = ("members",)
    inlines = [ApiTokenInline]


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ("masked", "tenant", "scope", "name", "created_at", "last_used_at", "revoked_at")
    list_filter = ("scope", "tenant")
    search_fields = ("prefix", "name", "tenant__external_id")
    readonly_fields = ("masked", "created_at", "last_used_at", "revoked_at")
    actions = ["revoke"]

    def get_fields(self, request, obj=None):
        if obj is None:
            return ("tenant", "scope", "name")
        return ("tenant", "scope", "name", "masked", "created_at", "last_used_at", "revoked_at")

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return ()
        return ("tenant", "scope", *self.readonly_fields)

    def save_model(self, request, obj, form, change):
        if change:
            return super().save_model(request, obj, form, change)
        token, raw = token_create(tenant=obj.tenant, scope=obj.scope, name=obj.name)
        obj.pk = token.pk
        messages.warning(
            request,
            f"New {token.scope} token for {token.tenant.external_id}: {raw} "
            "(copy it now: it is stored hashed and will not be shown again).",
        )

    @admin.action(description="Revoke selected tokens")
    def revoke(self, request, queryset):
        for token in queryset:
            token_revoke(token=token)
        self.message_user(request, f"Revoked {queryset.count()} token(s).")
