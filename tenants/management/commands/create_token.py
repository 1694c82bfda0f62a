from django.core.management.base import BaseCommand, CommandError

from tenants.models import Tenant, TokenScope
from tenants.services import token_create


class Command(BaseCommand):
    help = "Issue one more token for an existing tenant; prints the raw token once."

    def add_arguments(self, parser):
        parser.add_argument("tenant_id")
        parser.add_argument("--scope", choices=TokenScope.values, default=TokenScope.API)
        parser.add_argument("--name", default="")

    def handle(self, *args, tenant_id, scope, name, **options):
        tenant = Tenant.objects.filter(external_id=tenant_id).first()
        if tenant is None:
            raise CommandError(f"No tenant '{tenant_id}'. Create it with: manage.py create_tenant {tenant_id}")
        _, raw = token_create(tenant=tenant, scope=scope, name=name)
        self.stdout.write(raw)
