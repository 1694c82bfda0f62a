"""Template helpers of the pages: values in a unit, and query strings that keep the filters."""

from django import template

from ..pages.formatting import format_value

register = template.Library()


@register.filter
def unit_value(value, unit):
    """`{{ profile.total_value|unit_value:profile.unit }}` -> "1.2 s", "3.4 MiB", "12k"."""
    try:
        return format_value(float(value), unit)
    except (TypeError, ValueError):
        return "—"


@register.filter
def percent_width(value):
    """A CSS width in percent, clamped to 0..100 (for the small bars in tables)."""
    try:
        return f"{max(0.0, min(100.0, float(value))):.1f}%"
    except (TypeError, ValueError):
        return "0%"


@register.simple_tag
def page_url(query, number):
    """`?<filters>&page=N` for the paginator links."""
    return f"?{query}&page={number}" if query else f"?page={number}"


@register.filter
def fraction_width(value):
    """A CSS width for a 0..1 fraction (progress bars)."""
    try:
        return percent_width(float(value) * 100)
    except (TypeError, ValueError):
        return "0%"
