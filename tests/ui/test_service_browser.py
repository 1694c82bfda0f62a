"""The service page in headless Chromium: drag a range on the timeline, see its merged flame
graph, follow the graph with the function table, pick a function and see the graph focus on it."""

from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlparse

import pytest

from profiles.models import ProfileResult
from tests.profiles.samples import completed_profile

from .factories import SERVICE_STACKS, service_profile

# The browser fixtures (and the log-in helper) of the other browser tests.
from .test_browser import browser, log_in, ops_user, page, shot  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

T0 = datetime(2026, 11, 30, 0, 0, tzinfo=UTC)
ONE_WINDOW_NS = sum(SERVICE_STACKS.values()) * 1_000_000


@pytest.fixture
def day_of_windows(tenant):
    """A 60 s window every 10 minutes for 24 hours."""
    for k in range(144):
        at = T0 + timedelta(minutes=10 * k)
        completed_profile(tenant.tenant, service_profile(duration=60.0), service="checkout", started_at=at, continuous_slot=at)


def graph_root_value(tab) -> float:
    return tab.evaluate("() => document.querySelector('[data-flamegraph]').flamegraph.data.nodes[0][3]")


def table_functions(tab) -> list[str]:
    return tab.locator("[data-fn-table] .fn-table tbody button.fn-pick").all_inner_texts()


def test_drag_a_range_see_its_merge_and_focus_a_function_from_the_table(page, ops_user, tenant, day_of_windows):  # noqa: F811
    log_in(page)
    page.goto("/services/checkout/?range=24h")
    page.wait_for_selector("[data-flamegraph][data-ready]")
    assert graph_root_value(page) == 144 * ONE_WINDOW_NS
    shot(page, "service-24h")

    # Drag across the second quarter of the timeline's plot.
    svg = page.locator("svg.timeline")

    def plot_geometry() -> tuple[float, float, float]:
        """(left, width, middle y) of the timeline's plot in the viewport, as it is now."""
        svg.scroll_into_view_if_needed()
        box = svg.bounding_box()
        scale = box["width"] / 1240  # the chart's viewBox width
        return (box["x"] + float(svg.get_attribute("data-left")) * scale,
                float(svg.get_attribute("data-width")) * scale, box["y"] + box["height"] / 2)

    left, width, y = plot_geometry()
    page.mouse.move(left + width * 0.25, y)
    page.mouse.down()
    page.mouse.move(left + width * 0.4, y, steps=5)
    page.mouse.move(left + width * 0.5, y, steps=5)
    page.mouse.up()
    page.wait_for_url("**from=**")
    page.wait_for_selector("[data-flamegraph][data-ready]")
    query = parse_qs(urlparse(page.url).query)
    start, end = (datetime.fromisoformat(query[k][0].replace("Z", "+00:00")) for k in ("from", "to"))
    assert timedelta(hours=5) < end - start < timedelta(hours=7)  # a quarter of the day
    overlapping = [
        p for p in ProfileResult.objects.filter(service="checkout")
        if p.started_at < end and p.started_at + timedelta(seconds=60) > start
    ]
    assert 25 <= len(overlapping) <= 45
    assert f"{len(overlapping)} profiles merged" in page.locator("#range-summary").inner_text()
    assert graph_root_value(page) == len(overlapping) * ONE_WINDOW_NS
    shot(page, "service-dragged")

    # The table lists every function of the graph; the search narrows it.
    assert {"apply_discounts", "bm25", "view_checkout", "main"} <= set(table_functions(page))
    page.fill(".fg-search", "bm25|tokenize")
    page.wait_for_function("() => document.querySelector('.fn-scope').textContent.includes('matching')")
    assert sorted(table_functions(page)) == ["bm25", "tokenize"]
    page.click(".fg-reset")
    page.wait_for_function("() => document.querySelector('.fn-scope').textContent === 'whole graph'")

    # Zooming the graph into view_checkout narrows the table to that subtree.
    fg_index = page.evaluate(
        "() => { const d = document.querySelector('[data-flamegraph]').flamegraph.data;"
        " return d.nodes.findIndex((n) => d.strings[n[0]] === 'view_checkout'); }"
    )
    page.locator(f'svg.flamegraph g.fr[data-i="{fg_index}"] rect').click()
    page.wait_for_function("() => document.querySelector('.fn-scope').textContent.includes('view_checkout')")
    inside = set(table_functions(page))
    assert "apply_discounts" in inside and "bm25" not in inside
    page.click(".fg-reset")

    # Pick a function in the table: its callers and callees, and the graph zooms to it.
    page.locator("[data-fn-table] button.fn-pick", has_text="score_document").click()
    sandwich = page.locator(".sandwich")
    assert sandwich.is_visible()
    assert page.locator(".fn-callers tbody td.mono").all_inner_texts() == ["rank_results"]
    assert page.locator(".fn-callees tbody td.mono").all_inner_texts() == ["bm25"]
    assert "Zoomed to score_document" in page.locator(".fg-zoomed").inner_text()
    focused = page.evaluate(
        "() => { const d = document.querySelector('[data-flamegraph]').flamegraph.data;"
        " return d.nodes.findIndex((n) => d.strings[n[0]] === 'score_document'); }"
    )
    frame = page.locator(f'svg.flamegraph g.fr[data-i="{focused}"]')
    assert "match" in frame.get_attribute("class")
    frame_width = float(frame.locator("rect").get_attribute("width"))
    assert frame_width == pytest.approx(page.locator("svg.flamegraph").bounding_box()["width"], rel=0.02)
    shot(page, "service-sandwich")

    # Shift-drag picks the base range: the same range now shows the differential flame graph.
    left, width, y = plot_geometry()  # the table and the sandwich above may have moved it
    page.keyboard.down("Shift")
    page.mouse.move(left + width * 0.6, y)
    page.mouse.down()
    page.mouse.move(left + width * 0.7, y, steps=5)
    page.mouse.move(left + width * 0.85, y, steps=5)
    page.mouse.up()
    page.keyboard.up("Shift")
    page.wait_for_url("**baseFrom=**")
    page.wait_for_selector("[data-flamegraph][data-ready]")
    query = parse_qs(urlparse(page.url).query)
    kept = [datetime.fromisoformat(query[k][0].replace("Z", "+00:00")) for k in ("from", "to")]
    assert kept == [start, end]  # the picked range stays; only the base is new
    assert page.locator("#flamegraph h2").inner_text() == "Differential flame graph"
    assert page.evaluate("() => document.querySelector('[data-flamegraph]').flamegraph.data.differential") is True
    assert "Base range" in page.locator("#base-summary").inner_text()
    shot(page, "service-differential")
