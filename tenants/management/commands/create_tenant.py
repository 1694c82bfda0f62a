import json

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from tenants.models import TokenScope
from tenants.services import tenant_get_or_create, token_create


class Command(BaseCommand):
    help = "Create a tenant (or reuse an existing one) and issue one api and one agent token."

    def add_arguments(self, parser):
        parser.add_argument("tenant_id", help="the value clients send in X-Tenant-ID, e.g. 550e8400")
        parser.add_argument("--name", default="")
        parser.add_argument("--json", action="store_true", dest="as_json", help="print one JSON object and nothing else")

    def handle(self, *args, tenant_id, name, as_json, **options):
        try:
            tenant, created = tenant_get_or_create(external_id=tenant_id, name=name)
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from exc
        _, api_raw = token_create(tenant=tenant, scope=TokenScope.API, name="create_tenant")
        _, agent_raw = token_create(tenant=tenant, scope=TokenScope.AGENT, name="create_tenant")
        if as_json:
            self.stdout.write(
                json.dumps({"tenantId": tenant.external_id, "apiToken": api_raw, "agentToken": agent_raw})
            )
            return
        verb = "Created" if created else "Reusing existing"
        self.stdout.write(f"{verb} tenant {tenant.external_id}.")
        self.stdout.write(f"API token (shown once):   {api_raw}")
        self.stdout.write(f"Agent token (shown once): {agent_raw}")

