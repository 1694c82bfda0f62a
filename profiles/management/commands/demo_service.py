import os
import threading

from django.conf import settings
from django.core.management.base import BaseCommand
from profiling_agent import start

from profiles import demo
from tenants.models import ApiToken, TokenScope
from tenants.services import tenant_get_or_create, token_create, token_revoke

TOKEN_NAME = "demo_service"


class Command(BaseCommand):
    help = "Run a small realistic workload with the profiling agent in it, so there is something to profile."

    def add_arguments(self, parser):
        parser.add_argument("--service", default="ai-service")
        parser.add_argument("--tenant", default="550e8400", help="created when missing")
        # Not settings.PORT: under a Procfile runner PORT is this process's own port, not the web's.
        parser.add_argument(
            "--server", default=os.environ.get("PROFILING_SERVER_URL", "http://127.0.0.1:8088")
        )
        parser.add_argument("--mode", choices=demo.MODES, default="service")
        parser.add_argument("--seconds", type=float, default=0, help="stop after this long (0: run until interrupted)")

    def handle(self, *args, service, tenant, server, mode, seconds, **options):
        tenant_obj, _ = tenant_get_or_create(external_id=tenant, name="Demo")
        # One live demo token at a time: the previous run's token is revoked.
        for old in ApiToken.objects.filter(tenant=tenant_obj, name=TOKEN_NAME, revoked_at__isnull=True):
            token_revoke(token=old)
        _, raw = token_create(tenant=tenant_obj, scope=TokenScope.AGENT, name=TOKEN_NAME)
        handle = start(service, server, tenant, raw, poll_seconds=settings.PROFILING_POLL_SECONDS)
        stop = threading.Event()
        demo.run(mode, stop)
        self.stdout.write(
            f"Demo service '{service}' ({mode} workload) of tenant {tenant} is running with the agent "
            f"polling {server}. Start a profile of service '{service}' to see it."
        )
        try:
            stop.wait(seconds or None)
        except KeyboardInterrupt:
            pass
        finally:
            stop.set()
            handle.stop()
