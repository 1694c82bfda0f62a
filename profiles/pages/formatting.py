"""Values in a profile's unit, written for people (the page script mirrors these rules)."""

from ..models import PER_SECOND_TYPES

_TIME_STEPS = ((1e9, "s"), (1e6, "ms"), (1e3, "µs"), (1.0, "ns"))
_BYTE_STEPS = ((1024.0**4, "TiB"), (1024.0**3, "GiB"), (1024.0**2, "MiB"), (1024.0, "KiB"), (1.0, "B"))
_COUNT_STEPS = ((1e9, "G"), (1e6, "M"), (1e3, "k"), (1.0, ""))

# What the normalized total of each type means (see ProfileResult.normalized_total).
NORMALIZED_LABELS = {
    "cpu": "CPU time per second of wall time",
    "block": "off-CPU wait per second of wall time",
    "mutex": "lock wait per second of wall time",
    "alloc": "bytes allocated per second of wall time",
    "goroutine": "thread samples per second of wall time",
    "memory": "live bytes allocated in the window",
}


# What a profile's values measure, for captions ("width = share of CPU time").
MEASURES = {
    "cpu": "CPU time",
    "block": "off-CPU wait time",
    "mutex": "lock wait time",
    "alloc": "allocated bytes",
    "memory": "live bytes",
    "goroutine": "thread samples",
}


def number(value: float) -> str:
    """Three significant figures without exponent notation: 1.23, 12.3, 123, 1,234."""
    magnitude = abs(value)
    if magnitude >= 100 or magnitude == 0:
        text = f"{value:,.0f}"
    elif magnitude >= 10:
        text = f"{value:.1f}"
    else:
        text = f"{value:.2f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def format_value(value: float | None, unit: str, *, per_second: bool = False) -> str:
    if value is None:
        return "—"
    steps = {"nanoseconds": _TIME_STEPS, "bytes": _BYTE_STEPS}.get(unit, _COUNT_STEPS)
    factor, suffix = next(((f, s) for f, s in steps if abs(value) >= f), steps[-1])
    text = number(value / factor)
    if unit in ("nanoseconds", "bytes"):
        text = f"{text} {suffix}"
    else:
        text = f"{text}{suffix}"
    return f"{text}/s" if per_second else text


def is_per_second(profile_type: str) -> bool:
    return profile_type in PER_SECOND_TYPES


def format_normalized(value: float, profile_type: str, unit: str) -> str:
    return format_value(value, unit, per_second=is_per_second(profile_type))
