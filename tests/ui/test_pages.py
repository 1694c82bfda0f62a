"""The ops pages through Django's test client: what a logged-in staff member sees, and does not."""

import json
import re
import uuid
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.urls import reverse
from django.utils import timezone

from profiles import services
from profiles.analysis.export import parse_pprof
from profiles.models import Alert, ContinuousProfile, ProfileResult, Status
from profiles.pages.flamegraph import DIFF_PALETTE, PALETTE, WARM
from profiles.signing import flamegraph_token
from tests.profiles.samples import claim_one

from .conftest import PASSWORD, complete_profile
from .factories import busier, service_profile, wide_profile

pytestmark = pytest.mark.django_db


def page(pk) -> str:
    return reverse("profile-page", args=[pk])


def drawn_frames(html: bytes) -> int:
    return html.count(b'<g class="fr"')


def fills(html: bytes) -> set[str]:
    svg = html.split(b'<svg class="flamegraph"', 1)[1].split(b"</svg>", 1)[0]
    return {m.decode() for m in re.findall(rb'fill="(#[0-9a-f]{6})"', svg)}


@pytest.fixture
def mine(tenant, completed):
    return completed(tenant.tenant, service_profile())


@pytest.fixture
def theirs(other_tenant, completed):
    return completed(other_tenant.tenant, service_profile(), service="billing")


# --- login and scoping ---------------------------------------------------------------------------


def test_anonymous_is_sent_to_the_login_page_everywhere(client, mine):
    urls = [
        reverse("profile-list"), page(mine.pk), reverse("profile-status", args=[mine.pk]),
        reverse("profile-download", args=[mine.pk, "folded"]), reverse("compare"),
        reverse("history", args=[mine.tenant.external_id, mine.service]), reverse("continuous"), reverse("alerts"),
    ]
    for url in urls:
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith(reverse("login") + "?next="), url
    assert client.post(reverse("profile-start-page"), {}).status_code == 302
    assert ProfileResult.objects.count() == 1


def test_login_page_logs_a_member_in(client, member):
    assert b'name="password"' in client.get(reverse("login")).content
    response = client.post(reverse("login"), {"username": "ops", "password": PASSWORD})
    assert response.status_code == 302 and response["Location"] == "/"
    assert client.get("/").status_code == 200


def test_another_tenants_profile_compare_history_download_and_status_are_404(member_client, mine, theirs):
    other = theirs.tenant.external_id
    assert member_client.get(page(theirs.pk)).status_code == 404
    assert member_client.get(reverse("profile-status", args=[theirs.pk])).status_code == 404
    for fmt in ("pprof", "speedscope", "folded"):
        assert member_client.get(reverse("profile-download", args=[theirs.pk, fmt])).status_code == 404
    assert member_client.get(reverse("compare"), {"base": mine.pk, "comparison": theirs.pk}).status_code == 404
    assert member_client.get(reverse("compare"), {"base": theirs.pk}).status_code == 404
    assert member_client.get(reverse("compare"), {"p": [mine.pk, theirs.pk]}).status_code == 404
    assert member_client.get(reverse("history", args=[other, "billing"])).status_code == 404
    assert member_client.get(page(uuid.uuid4())).status_code == 404
    assert member_client.get(reverse("compare"), {"base": "not-a-uuid"}).status_code == 404


def test_list_shows_only_the_members_tenant(member_client, mine, theirs):
    html = member_client.get(reverse("profile-list")).content
    assert str(mine.pk).encode() in html
    assert str(theirs.pk).encode() not in html
    assert b"billing" not in html
    assert b"1 profile<" in html


def test_superuser_sees_every_tenant(client, superuser, mine, theirs):
    client.force_login(superuser)
    html = client.get(reverse("profile-list")).content
    assert str(mine.pk).encode() in html and str(theirs.pk).encode() in html
    assert b"<th>Tenant</th>" in html  # more than one tenant: the tenant column and filter appear
    assert client.get(page(theirs.pk)).status_code == 200
    assert client.get(reverse("history", args=[theirs.tenant.external_id, "billing"])).status_code == 200


def test_a_user_without_tenants_sees_nothing_and_is_told_why(client, mine):
    user = get_user_model().objects.create_user("nobody", password=PASSWORD)
    client.force_login(user)
    html = client.get(reverse("profile-list")).content
    assert b"not a member of any tenant" in html
    assert str(mine.pk).encode() not in html
    assert client.get(page(mine.pk)).status_code == 404


# --- the list ---------------------------------------------------------------------------------------


def test_list_filters_by_service_type_and_status_and_paginates(member_client, tenant, completed):
    completed(tenant.tenant, service_profile(), service="search")
    for _ in range(30):
        services.profile_start(tenant=tenant.tenant, service="checkout", profile_type="memory", duration_seconds=5)
    url = reverse("profile-list")
    assert b"31 profiles" in member_client.get(url).content
    html = member_client.get(url, {"service": "search"}).content
    assert b"1 profile<" in html and b"search" in html
    assert b"30 profiles" in member_client.get(url, {"profile_type": "memory"}).content
    assert b"1 profile<" in member_client.get(url, {"status": "completed"}).content
    first = member_client.get(url, {"profile_type": "memory"}).content
    assert b"Page 1 of 2" in first and b"profile_type=memory&amp;page=2" in first
    second = member_client.get(url, {"profile_type": "memory", "page": 2}).content
    assert b"Page 2 of 2" in second and second.count(b"<tr data-status-url") == 5


# --- start and progress --------------------------------------------------------------------------------


def test_start_form_creates_a_run_and_its_page_follows_progress(member_client, tenant):
    response = member_client.post(
        reverse("profile-start-page"),
        {"tenant": tenant.tenant.pk, "service": "ai-service", "profile_type": "cpu", "duration_seconds": 15, "sample_rate": 50},
    )
    run = ProfileResult.objects.get()
    assert response.status_code == 302 and response["Location"] == page(run.pk)
    assert (run.tenant, run.service, run.profile_type) == (tenant.tenant, "ai-service", "cpu")
    assert (run.requested_duration_seconds, run.sample_rate, run.status) == (15, 50, Status.RUNNING)
    html = member_client.get(page(run.pk)).content
    assert b"data-run-progress" in html and reverse("profile-status", args=[run.pk]).encode() in html


def test_start_form_chooses_an_engine_that_fits_the_type(member_client, tenant):
    form = {"tenant": tenant.tenant.pk, "service": "ai-service", "duration_seconds": 5, "sample_rate": 100}
    wrong = member_client.post(reverse("profile-start-page"), {**form, "profile_type": "memory", "engine": "yappi"})
    assert wrong.status_code == 400 and b"yappi cannot collect memory profiles" in wrong.content
    member_client.post(reverse("profile-start-page"), {**form, "profile_type": "cpu", "engine": "yappi"})
    assert ProfileResult.objects.get().engine == "yappi"


def test_start_form_rejects_bad_input_and_other_tenants(member_client, tenant, other_tenant):
    bad = member_client.post(
        reverse("profile-start-page"),
        {"tenant": tenant.tenant.pk, "service": "bad service!", "profile_type": "heap", "duration_seconds": 0, "sample_rate": 5000},
    )
    assert bad.status_code == 400
    assert b"A service name is 1-128" in bad.content and b"Select a valid choice" in bad.content
    foreign = member_client.post(
        reverse("profile-start-page"),
        {"tenant": other_tenant.tenant.pk, "service": "x", "profile_type": "cpu", "duration_seconds": 5, "sample_rate": 100},
    )
    assert foreign.status_code == 400
    assert not ProfileResult.objects.exists()


def test_progress_json_reports_phase_progress_and_the_end(member_client, tenant):
    run = services.profile_start(tenant=tenant.tenant, service="ai-service", profile_type="cpu", duration_seconds=10)
    url = reverse("profile-status", args=[run.pk])
    body = member_client.get(url).json()
    assert body == {
        "id": str(run.pk), "status": "running", "phase": "waiting", "phaseLabel": "waiting for an agent",
        "progress": 0.0, "error": "", "sampleCount": 0, "url": page(run.pk),
    }
    claim = claim_one(tenant.tenant, "ai-service")
    services.profile_record_progress(profile=claim.profile, lease=claim.lease, progress=0.4)
    body = member_client.get(url).json()
    assert (body["phase"], body["progress"]) == ("collecting", 0.4)
    services.profile_agent_fail(profile=claim.profile, lease=claim.lease, error="boom")
    body = member_client.get(url).json()
    assert (body["status"], body["error"]) == ("failed", "agent: boom")


# --- detail and downloads ----------------------------------------------------------------------------------


def test_detail_shows_summary_top_functions_and_an_interactive_flame_graph(member_client, mine):
    response = member_client.get(page(mine.pk))
    html = response.content
    assert response.status_code == 200
    assert b'<svg class="flamegraph"' in html and b"js/flamegraph.js" in html
    assert b'id="flamegraph-data"' in html
    for name in (b"apply_discounts", b"bm25", b"view_checkout"):
        assert name in html
    assert b"<dt>Samples</dt>" in html and b"web-1 pid 42" in html
    data = json.loads(html.split(b'id="flamegraph-data" type="application/json">')[1].split(b"</script>")[0])
    assert data["nodes"][0][3] == mine.total_value  # the root holds the whole profile
    assert set(fills(html)) <= set(PALETTE)
    # Top functions by self (default) and by total.
    by_self = re.findall(rb"<td class=\"fn\"><code>([^<]+)</code>", html)
    assert by_self[0] == b"apply_discounts"
    by_total = re.findall(rb"<td class=\"fn\"><code>([^<]+)</code>", member_client.get(page(mine.pk), {"sort": "total"}).content)
    assert by_total[0] == b"main"
    assert reverse("flamegraph-shared", args=[flamegraph_token(mine.pk)]).encode() in html


def test_detail_shows_the_profilers_measured_overhead(member_client, mine):
    assert b"<dt>Profiler overhead</dt><dd>unknown</dd>" in member_client.get(page(mine.pk)).content
    ProfileResult.objects.filter(pk=mine.pk).update(overhead_percent=0.42)
    html = member_client.get(page(mine.pk)).content
    assert b"<dt>Profiler overhead</dt><dd>0.42 % of the process&#x27;s CPU</dd>" in html


def test_detail_of_a_failed_run_says_why(member_client, tenant):
    run = services.profile_start(tenant=tenant.tenant, service="ai-service", profile_type="cpu", duration_seconds=10)
    services.profile_fail(profile=run, error="no agent of service ai-service claimed the run within 30 s")
    html = member_client.get(page(run.pk)).content
    assert b"The run failed." in html and b"no agent of service ai-service claimed" in html
    assert b'<svg class="flamegraph"' not in html


def test_downloads_are_the_analysis_exports(member_client, mine):
    pprof = member_client.get(reverse("profile-download", args=[mine.pk, "pprof"]))
    assert pprof["Content-Disposition"].startswith('attachment; filename="checkout-cpu-')
    decoded = parse_pprof(pprof.content)
    assert decoded  # our own decoder reads it back
    speedscope = member_client.get(reverse("profile-download", args=[mine.pk, "speedscope"]))
    assert speedscope.json()["$schema"] == "https://www.speedscope.app/file-format-schema.json"
    folded = member_client.get(reverse("profile-download", args=[mine.pk, "folded"])).content.decode()
    assert any(line.startswith("main (/app/server.py:10);serve_forever") for line in folded.splitlines())
    assert member_client.get(reverse("profile-download", args=[mine.pk, "svg"])).status_code == 404


def test_a_profile_with_10000_frames_draws_only_frames_at_least_a_pixel_wide(member_client, tenant, completed):
    big = completed(tenant.tenant, wide_profile(10_000), service="big")
    html = member_client.get(page(big.pk)).content
    data = json.loads(html.split(b'id="flamegraph-data" type="application/json">')[1].split(b"</script>")[0])
    assert len(data["nodes"]) == 10_001  # every function is in the node table for zooming...
    assert 0 < drawn_frames(html) < 4_000  # ...but only the visible ones are SVG elements
    assert len(html) < 3_000_000


# --- compare -------------------------------------------------------------------------------------------------


@pytest.fixture
def pair(tenant, completed):
    # A busy service (10 s of cpu in 10 s): enough samples that -80 % of tokenize is beyond noise.
    now = timezone.now()
    base = completed(tenant.tenant, busier(service_profile(), 10), started_at=now - timedelta(hours=1))
    slower = completed(tenant.tenant, busier(service_profile({"bm25": 3.0, "tokenize": 0.2}), 10), started_at=now)
    return base, slower



def test_compare_shows_regressions_improvements_and_a_red_green_differential_graph(member_client, pair):
    base, comparison = pair
    html = member_client.get(reverse("compare"), {"base": base.pk, "comparison": comparison.pk}).content
    regressions, improvements = html.split(b"<h2>Regressions")[1].split(b"<h2>Improvements")
    assert b"<code>bm25</code>" in regressions and b"+200%" in regressions
    assert b"<code>tokenize</code>" in improvements and b"-80%" in improvements
    colours = fills(html)
    assert colours & set(DIFF_PALETTE[6:11]), "deep red for the tripled bm25"
    assert colours & set(DIFF_PALETTE[11:21]), "green for the faster tokenize"
    assert not colours & set(WARM)


def test_compare_picks_two_from_the_list_older_first(member_client, pair):
    base, comparison = pair
    html = member_client.get(reverse("compare"), {"p": [comparison.pk, base.pk]}).content
    assert f'<option value="{base.pk}" selected>'.encode() in html.split(b'name="comparison"')[0]
    assert b"Differential flame graph" in html


def test_compare_explains_what_cannot_be_compared(member_client, tenant, pair, completed):
    base, _ = pair
    html = member_client.get(reverse("compare"), {"base": base.pk, "comparison": base.pk}).content
    assert b"Pick two different profiles." in html
    running = services.profile_start(tenant=tenant.tenant, service="checkout", profile_type="cpu", duration_seconds=5)
    html = member_client.get(reverse("compare"), {"base": base.pk, "comparison": running.pk}).content
    assert b"cannot be compared" in html and b"running, not completed" in html
    picker = member_client.get(reverse("compare")).content
    assert picker.count(str(base.pk).encode()) == 2  # offered as base and as comparison


def test_compare_refuses_two_services_and_offers_to_compare_anyway(member_client, tenant, completed):
    web = completed(tenant.tenant, busier(service_profile(), 10), service="web")
    search = completed(tenant.tenant, busier(service_profile({"bm25": 3.0}), 10), service="search")
    html = member_client.get(reverse("compare"), {"base": web.pk, "comparison": search.pk}).content.decode()
    assert "different services (web and search)" in html and "Compare anyway" in html
    anyway = member_client.get(
        reverse("compare"), {"base": web.pk, "comparison": search.pk, "allowMismatch": "true", "normalization": "share"}
    ).content.decode()
    regressions = anyway.split("<h2>Regressions")[1].split("<h2>Improvements")[0]
    assert "<code>bm25</code>" in regressions and "Compared although the profiles are of different services" in anyway
    assert "fraction of its profile" in anyway  # the note says share was used


# --- history ----------------------------------------------------------------------------------------------


def test_history_charts_the_normalized_total_with_points_linking_to_profiles(member_client, tenant, completed):
    now = timezone.now()
    runs = [
        completed(tenant.tenant, service_profile({"bm25": 1 + k}), started_at=now - timedelta(minutes=30 - k * 10))
        for k in range(3)
    ]
    url = reverse("history", args=[tenant.external_id, "checkout"])
    html = member_client.get(url, {"type": "cpu"}).content.decode()
    chart = html.split('<svg class="chart"')[1].split("</svg>")[0]
    assert chart.count("<circle") == 3 and "<polyline" in chart
    for run in runs:
        assert f'<a href="{page(run.pk)}">' in chart
    assert "CPU time per second of wall time" in chart and "time (UTC)" in chart
    assert '<option value="bm25">' in html


def test_history_charts_a_functions_share_over_time(member_client, tenant, completed):
    now = timezone.now()
    completed(tenant.tenant, service_profile(), started_at=now - timedelta(minutes=20))
    completed(tenant.tenant, service_profile({"bm25": 0}), started_at=now - timedelta(minutes=10))
    html = member_client.get(
        reverse("history", args=[tenant.external_id, "checkout"]), {"type": "cpu", "function": "bm25"}
    ).content.decode()
    share = html.split('<svg class="chart"')[2].split("</svg>")[0]
    assert share.count("<circle") == 2
    assert share.count('class="point hollow"') == 1  # the run where bm25 did not run at all
    assert "self share of the profile (%)" in share


def test_history_draws_one_line_per_engine_never_one_through_both(member_client, tenant, completed):
    now = timezone.now()
    for k, engine in enumerate(["py-spy", "py-spy", "yappi", "yappi", "py-spy"]):
        raw = service_profile({"bm25": 1 + k})
        raw["engine"] = engine
        completed(tenant.tenant, raw, started_at=now - timedelta(minutes=50 - k * 10))
    html = member_client.get(reverse("history", args=[tenant.external_id, "checkout"]), {"function": "bm25"}).content.decode()
    for chart in (html.split('<svg class="chart"')[i].split("</svg>")[0] for i in (1, 2)):
        lines = re.findall(r'<polyline class="line" data-series="([^"]+)"[^>]* points="([^"]+)"', chart)
        assert sorted(series for series, _ in lines) == ["py-spy", "yappi"]
        assert {series: len(points.split()) for series, points in lines} == {"py-spy": 3, "yappi": 2}
        assert ">py-spy</text>" in chart and ">yappi</text>" in chart  # the legend
        assert chart.count("(yappi)</title>") == 2
    assert "one line per engine" in html
    assert html.count("<td>yappi</td>") == 2


# --- continuous --------------------------------------------------------------------------------------------


def test_continuous_lists_the_members_configurations_with_state_and_next_run(member_client, tenant, other_tenant):
    ContinuousProfile.objects.create(tenant=tenant.tenant, service="checkout", profile_types=["cpu", "memory"])
    ContinuousProfile.objects.create(tenant=tenant.tenant, service="search", profile_types=["cpu"], enabled=False)
    ContinuousProfile.objects.create(tenant=other_tenant.tenant, service="billing", profile_types=["cpu"])
    html = member_client.get(reverse("continuous")).content.decode()
    assert "checkout" in html and "search" in html and "billing" not in html
    assert html.count("badge completed\">enabled") == 1 and html.count("disabled</span>") == 1
    assert html.count("never") == 2
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d <span class=\"muted small\">(in |due now)", html)


# --- the signed link -----------------------------------------------------------------------------------------


def test_shared_flame_graph_needs_no_login_and_shows_the_same_graph(client, mine):
    url = reverse("flamegraph-shared", args=[flamegraph_token(mine.pk)])
    html = client.get(url).content
    assert b'<svg class="flamegraph"' in html and b"apply_discounts" in html
    assert b"Log out" not in html
    assert client.get(url[:-3] + "xx/").status_code == 404


# --- admin ---------------------------------------------------------------------------------------------------


def test_admin_lists_filters_searches_and_compares_profiles(client, superuser, pair):
    base, comparison = pair
    client.force_login(superuser)
    url = reverse("admin:profiles_profileresult_changelist")
    html = client.get(url).content
    assert html.count(b'href="/profiles/') >= 2 and b"#flamegraph" in html
    assert client.get(url, {"profile_type__exact": "cpu", "status__exact": "completed", "continuous__exact": "0"}).status_code == 200
    found = client.get(url, {"q": str(base.pk)}).content
    assert found.count(b"#flamegraph") == 1
    response = client.post(url, {"action": "compare_two", "_selected_action": [base.pk, comparison.pk]})
    assert response.status_code == 302
    assert response["Location"] == f"{reverse('compare')}?base={base.pk}&comparison={comparison.pk}"
    one = client.post(url, {"action": "compare_two", "_selected_action": [base.pk]}, follow=True)
    assert b"Select exactly two profiles" in one.content


def test_admin_enables_and_disables_continuous_profiles(client, superuser, tenant):
    config = ContinuousProfile.objects.create(tenant=tenant.tenant, service="checkout", profile_types=["cpu"])
    client.force_login(superuser)
    url = reverse("admin:profiles_continuousprofile_changelist")
    client.post(url, {"action": "disable", "_selected_action": [config.pk]})
    config.refresh_from_db()
    assert not config.enabled
    client.post(url, {"action": "enable", "_selected_action": [config.pk]})
    config.refresh_from_db()
    assert config.enabled


def test_admin_shows_staff_only_their_tenants_rows(client, member, mine, theirs):
    member.user_permissions.add(*Permission.objects.filter(codename__in=["view_profileresult"]))
    client.force_login(member)
    html = client.get(reverse("admin:profiles_profileresult_changelist")).content
    assert str(mine.pk).encode() in html and str(theirs.pk).encode() not in html
    assert client.get(reverse("admin:profiles_profileresult_change", args=[theirs.pk])).status_code == 302


def test_function_names_from_uploads_are_escaped_everywhere(member_client, tenant):
    raw = service_profile()
    raw["frames"][-1]["function"] = "<script>alert(1)</script>"
    run = complete_profile(tenant.tenant, raw)
    for url in (page(run.pk), reverse("history", args=[tenant.external_id, "checkout"]) + "?function=%3Cscript%3E",
                reverse("flamegraph-shared", args=[flamegraph_token(run.pk)])):
        html = member_client.get(url).content
        assert b"<script>alert" not in html, url
    assert b"&lt;script&gt;alert(1)&lt;/script&gt;" in member_client.get(page(run.pk)).content


# --- alerts ------------------------------------------------------------------------------------------------


def _alert(tenant, base, latest, function="bm25"):
    return Alert.objects.create(
        tenant=tenant, service=latest.service, profile_type="cpu", function=function, file="/app/search/rank.py", line=52,
        baseline="trailing24h", threshold_percent=10, baseline_share=0.2, baseline_variance=0.0001, baseline_windows=30,
        current_share=0.45, peak_share=0.45, profile=latest, baseline_profile=base,
    )


def test_alerts_lists_the_members_alerts_with_a_link_to_their_diff(member_client, tenant, other_tenant, pair, completed):
    base, slower = pair
    _alert(tenant.tenant, base, slower)
    theirs = completed(other_tenant.tenant, service_profile(), service="billing")
    _alert(other_tenant.tenant, theirs, theirs, function="secret_function")
    html = member_client.get(reverse("alerts")).content.decode()
    assert "<code>bm25</code>" in html and "+125%" in html and "20%" in html and "45%" in html
    assert "secret_function" not in html
    diff = re.search(r'<a href="([^"]+)">diff</a>', html).group(1).replace("&amp;", "&")
    page_html = member_client.get(diff).content.decode()
    regressions = page_html.split("<h2>Regressions")[1].split("<h2>Improvements")[0]
    assert "<code>bm25</code>" in regressions and "fraction of its profile" in page_html
    assert "No resolved alerts." in member_client.get(reverse("alerts"), {"status": "resolved"}).content.decode()


def test_admin_shows_staff_only_their_tenants_alerts_and_nobody_edits_them(client, member, mine, theirs):
    _alert(mine.tenant, mine, mine, function="my_function")
    other = _alert(theirs.tenant, theirs, theirs, function="their_function")
    member.user_permissions.add(*Permission.objects.filter(codename__in=["view_alert", "change_alert", "add_alert"]))
    client.force_login(member)
    html = client.get(reverse("admin:profiles_alert_changelist")).content.decode()
    assert "my_function" in html and "their_function" not in html
    assert client.get(reverse("admin:profiles_alert_change", args=[other.pk])).status_code == 302
    assert client.get(reverse("admin:profiles_alert_add")).status_code == 403
