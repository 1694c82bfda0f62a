"""Admin of tenants and tokens, and the tenant-scoped base every model admin of the project uses.

A staff user who is not a superuser reaches only the tenants they are a member of, whatever app
permissions they hold: rows, change pages, actions, tenant choices and list filters are all
scoped through `tenants.scoping`. Who belongs to which tenant is decided by superusers only.
"""

from django.contrib import admin, messages
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.views.main import ChangeList
from django.contrib.auth.admin import GroupAdmin, UserAdmin
from django.contrib.auth.models import Group, User

from .models import ApiToken, Tenant
from .scoping import scope_to_user, sees_every_tenant, tenants_for_user
from .services import token_create, token_revoke


class TenantListFilter(admin.SimpleListFilter):
    """The "by tenant" filter, listing only the tenants the user may see."""

    title = "tenant"
    parameter_name = "tenant"

    def lookups(self, request, model_admin):
        return [(str(t.pk), str(t)) for t in tenants_for_user(request.user)]

    def queryset(self, request, queryset):
        value = self.value()
        if not value:
            return queryset
        # Only a choice it offered: anything else (junk, huge, another tenant's id) matches nothing.
        if value not in {key for key, _ in self.lookup_choices}:
            return queryset.none()
        return queryset.filter(tenant_id=int(value))


class JunkTolerantChangeList(ChangeList):
    """A huge number in a filter (`?started_at__year=`, `?tenant=`) raises OverflowError in Django
    or the database driver (a 500); make it the admin's usual answer to bad filters instead (a
    redirect to `?e=1`)."""

    def get_filters(self, request):
        try:
            return super().get_filters(request)
        except OverflowError as exc:
            raise IncorrectLookupParameters(exc) from exc

    def get_results(self, request):
        try:
            return super().get_results(request)
        except OverflowError as exc:
            raise IncorrectLookupParameters(exc) from exc


class TenantScopedAdmin(admin.ModelAdmin):
    """Rows and tenant choices limited to the user's tenants (superusers: all).

    `tenant_field` is the lookup from the model to its Tenant ("pk" for Tenant itself).
    """

    tenant_field = "tenant"

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        if self.tenant_field != "pk":
            queryset = queryset.select_related(self.tenant_field)
        return scope_to_user(queryset, request.user, tenant_field=self.tenant_field)

    def get_changelist(self, request, **kwargs):
        return JunkTolerantChangeList

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.related_model is Tenant:
            kwargs["queryset"] = tenants_for_user(request.user)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


class ReadOnlyAdmin(TenantScopedAdmin):
    """Rows that only the platform writes: anyone with view permission may look, nobody edits."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


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
class TenantAdmin(TenantScopedAdmin):
    tenant_field = "pk"
    list_display = ("external_id", "name", "is_active", "created_at")
    list_filter = ("is_active",)
    search_fields = ("external_id", "name")
    filter_horizontal = ("members",)
    inlines = [ApiTokenInline]

    def has_add_permission(self, request):
        # A tenant its creator could not see, or one they joined on their own, would both be wrong.
        return sees_every_tenant(request.user) and super().has_add_permission(request)

    def get_readonly_fields(self, request, obj=None):
        if sees_every_tenant(request.user):
            return ()
        return ("external_id", "members")


@admin.register(ApiToken)
class ApiTokenAdmin(TenantScopedAdmin):
    list_display = ("masked", "tenant", "scope", "name", "created_at", "last_used_at", "revoked_at")
    list_filter = ("scope", TenantListFilter)
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

    @admin.action(description="Revoke selected tokens", permissions=["change"])
    def revoke(self, request, queryset):
        for token in queryset:
            token_revoke(token=token)
        self.message_user(request, f"Revoked {queryset.count()} token(s).")


# Users and groups decide what the scoping above rests on (membership, superuser, permissions),
# so a staff user who is not a superuser may only see and edit their own account, and not its
# flags or permissions: with auth permissions they could otherwise make themselves superuser,
# or reset the password of a member (or a superuser) of another tenant.
admin.site.unregister(User)
admin.site.unregister(Group)


@admin.register(User)
class ScopedUserAdmin(UserAdmin):
    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        return queryset if sees_every_tenant(request.user) else queryset.filter(pk=request.user.pk)

    def has_add_permission(self, request):
        return sees_every_tenant(request.user) and super().has_add_permission(request)

    def has_delete_permission(self, request, obj=None):
        return sees_every_tenant(request.user) and super().has_delete_permission(request, obj)

    def get_readonly_fields(self, request, obj=None):
        if sees_every_tenant(request.user):
            return super().get_readonly_fields(request, obj)
        return ("username", "is_active", "is_staff", "is_superuser", "groups", "user_permissions",
                "last_login", "date_joined")


@admin.register(Group)
class SuperuserOnlyGroupAdmin(GroupAdmin):
    """Groups carry permissions: superusers only."""

    def has_module_permission(self, request):
        return sees_every_tenant(request.user)

    def has_view_permission(self, request, obj=None):
        return sees_every_tenant(request.user)

    def has_add_permission(self, request):
        return sees_every_tenant(request.user)

    def has_change_permission(self, request, obj=None):
        return sees_every_tenant(request.user)

    def has_delete_permission(self, request, obj=None):
        return sees_every_tenant(request.user)
