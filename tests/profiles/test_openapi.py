"""The OpenAPI schema describes the API as it behaves: schemathesis calls every operation.

Each operation gets a bounded number of generated requests (valid and invalid), sent in
process through Django's WSGI handler with real tokens of the operation's scope; path and
query ids are sometimes replaced by real objects so the success paths run too. Every
response must be no 5xx, a documented status and content type, and match its schema.
"""

import pytest
import schemathesis
from django.core.handlers.wsgi import WSGIHandler
from django.core.management import call_command
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from profiles import services
from tenants.models import TokenScope

from .samples import completed_profile, raw_profile

CHECKS = (
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
)
MAX_EXAMPLES = 25
S = 1_000_000_000


@pytest.fixture
def wsgi_app():
    """Django's WSGI handler without the per-request connection reset that would end the test's transaction."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield WSGIHandler()
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


@pytest.fixture
def raw_schema(client) -> dict:
    response = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    return response.json()


@pytest.mark.django_db
def test_schema_and_docs_are_served(client, raw_schema):
    paths = raw_schema["paths"]
    prefix = "/api/v1/observability/profiling"
    for path in ("start", "{profile_id}", "compare", "history", "continuous", "continuous/{service}", "{profile_id}/export"):
        assert f"{prefix}/{path}" in paths, path
    compare = paths[f"{prefix}/compare"]["get"]
    assert {p["name"] for p in compare["parameters"]} >= {"baseProfileId", "comparisonProfileId", "noiseThresholdPercent"}
    assert set(compare["responses"]) >= {"200", "400", "404", "409"}
    comparison = raw_schema["components"]["schemas"]["ProfileComparison"]["properties"]
    assert set(comparison) >= {"baseProfile", "comparisonProfile", "improvements", "regressions", "unchanged", "overallDelta"}
    history = {p["name"] for p in paths[f"{prefix}/history"]["get"]["parameters"]}
    assert history >= {"service", "profileType", "status", "from", "to", "continuous", "function", "cursor", "pageSize"}
    continuous = paths[f"{prefix}/continuous/{{service}}"]
    assert set(continuous) >= {"get", "put", "patch", "delete"}
    export = paths[f"{prefix}/{{profile_id}}/export"]["get"]["responses"]["200"]["content"]
    assert set(export) == {"application/octet-stream", "application/json", "text/plain"}
    docs = client.get("/api/docs/")
    assert docs.status_code == 200 and b"swagger" in docs.content.lower()


def test_the_schema_generates_without_warnings(tmp_path):
    # drf-spectacular's warnings also fail `manage.py check --deploy --fail-level WARNING`.
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "schema.yaml"))


@pytest.mark.django_db
def test_every_operation_conforms_to_the_schema(raw_schema, wsgi_app, tenant):
    completed = completed_profile(tenant.tenant, raw_profile({"parse": 3 * S, "io": S}, duration=10))
    other = completed_profile(tenant.tenant, raw_profile({"parse": 6 * S, "io": S}, duration=20))
    running = services.profile_start(tenant=tenant.tenant, service="ai-service", profile_type="cpu", duration_seconds=5)
    services.continuous_profile_upsert(tenant=tenant.tenant, service="ai-service", profile_types=["cpu"])
    ids = [str(completed.pk), str(other.pk), str(running.pk)]
    headers = {
        TokenScope.API: {"Authorization": f"Bearer {tenant.api_raw}", "X-Tenant-ID": tenant.external_id},
        TokenScope.AGENT: {"Authorization": f"Bearer {tenant.agent_raw}", "X-Tenant-ID": tenant.external_id},
    }
    schema = schemathesis.from_dict(
        raw_schema,
        app=wsgi_app,
        data_generation_methods=[schemathesis.DataGenerationMethod.positive, schemathesis.DataGenerationMethod.negative],
    )
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 12

    failures = []
    for operation in operations:
        scope = TokenScope.AGENT if "/agent/" in operation.path else TokenScope.API
        try:
            _exercise(operation, headers[scope], ids)
        except Exception as exc:  # every operation is tried, all failures reported together
            failures.append(f"{operation.verbose_name}: {exc}")
    assert not failures, "\n\n".join(failures)


def _exercise(operation, headers: dict, ids: list[str]) -> None:
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(), data=st.data())
    def call(case, data):
        if case.path_parameters and "profile_id" in case.path_parameters:
            case.path_parameters["profile_id"] = data.draw(st.sampled_from([*ids, case.path_parameters["profile_id"]]))
        if case.path_parameters and "service" in case.path_parameters:
            case.path_parameters["service"] = data.draw(st.sampled_from(["ai-service", case.path_parameters["service"]]))
        if isinstance(case.query, dict) and "baseProfileId" in case.query and data.draw(st.booleans()):
            case.query["baseProfileId"] = data.draw(st.sampled_from(ids))
            case.query["comparisonProfileId"] = data.draw(st.sampled_from(ids))
        response = case.call(headers=headers)  # in process: the schema was loaded with app=
        case.validate_response(response, checks=CHECKS)

    call()
