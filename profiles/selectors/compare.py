"""Reads for comparing two profiles."""

from ..analysis import IncomparableProfiles, Profile, compare_profiles
from ..analysis.labels import Labels, apply_labels
from ..analysis.significance import default_normalization
from ..models import ProfileResult
from .profiles import profile_load_analysis


class ProfilesIncomparable(Exception):
    """The two profiles cannot be compared (different types, services or engines): a 400."""


def _mismatch(base: ProfileResult, comparison: ProfileResult) -> str | None:
    """Why comparing these two would measure something else than a code change, if it would."""
    if base.service != comparison.service:
        return (
            f"the profiles are of different services ({base.service} and {comparison.service}); "
            "pass allowMismatch=true to compare them anyway"
        )
    if base.engine and comparison.engine and base.engine != comparison.engine:
        return (
            f"the profiles were taken by different engines ({base.engine} and {comparison.engine}), "
            "which attribute time differently; pass allowMismatch=true to compare them anyway"
        )
    return None


def profile_compare(
    *,
    base: ProfileResult,
    comparison: ProfileResult,
    normalization: str | None = None,
    noise_threshold_percent: float = 5.0,
    limit: int = 100,
    allow_mismatch: bool = False,
    include_noise: bool = False,
    labels: Labels = (),
    group_by: str | None = None,
) -> dict:
    """The seed's ProfileComparison of two profiles of one tenant (the caller scoped them).

    Raises ProfilesIncomparable (types differ; services or engines differ unless
    `allow_mismatch`) before ProfileNotReady (either not completed), since a mismatch will
    never resolve by waiting.
    """
    if base.profile_type != comparison.profile_type:
        raise ProfilesIncomparable(
            f"cannot compare a {base.profile_type} profile with a {comparison.profile_type} profile"
        )
    if normalization == "perSecond" and default_normalization(base.profile_type) == "none":
        raise ProfilesIncomparable(
            f"{base.profile_type} profiles hold the bytes live at the end of a window, a level "
            "that has no per-second rate; use normalization=share or leave it out"
        )
    mismatch = _mismatch(base, comparison)
    if mismatch and not allow_mismatch:
        raise ProfilesIncomparable(mismatch)
    return comparison_result(
        base_profile=profile_load_analysis(profile=base),
        comparison_profile=profile_load_analysis(profile=comparison),
        base_label=str(base.pk),
        comparison_label=str(comparison.pk),
        engines=(base.engine, comparison.engine),
        mismatch=mismatch,
        normalization=normalization,
        noise_threshold_percent=noise_threshold_percent,
        limit=limit,
        include_noise=include_noise,
        labels=labels,
        group_by=group_by,
    )


def comparison_result(
    *,
    base_profile: Profile,
    comparison_profile: Profile,
    base_label: str,
    comparison_label: str,
    engines: tuple[str, str],
    mismatch: str | None = None,
    normalization: str | None = None,
    noise_threshold_percent: float = 5.0,
    limit: int = 100,
    include_noise: bool = False,
    labels: Labels = (),
    group_by: str | None = None,
) -> dict:
    """The seed's ProfileComparison of two analysed profiles (stored ones, or merged ranges).

    With `labels`, both sides are first cut to the samples that carry them; the result's
    "labels" block says so and, with `group_by`, holds each side's groups.
    """
    base_profile, base_labels = apply_labels(base_profile, labels=labels, group_by=group_by)
    comparison_profile, comparison_labels = apply_labels(comparison_profile, labels=labels, group_by=group_by)
    if base_profile.profile_type != comparison_profile.profile_type:
        raise ProfilesIncomparable(
            f"cannot compare a {base_profile.profile_type} profile with a {comparison_profile.profile_type} profile"
        )
    try:
        result = compare_profiles(
            base_profile,
            comparison_profile,
            normalization=normalization,
            noise_threshold_percent=noise_threshold_percent,
            limit=limit,
            include_noise=include_noise,
        )
    except IncomparableProfiles as exc:  # e.g. a rate profile of zero seconds
        raise ProfilesIncomparable(str(exc)) from None
    used = result["normalization"]
    unit = base_profile.unit
    if used == "perSecond":
        note = (
            f"Values are {unit} per second of wall time, so profiles of different lengths "
            f"({base_profile.duration_seconds:g} s and {comparison_profile.duration_seconds:g} s) compare fairly; "
            "a change of load moves them too (normalization=share does not)."
        )
    elif used == "share":
        note = (
            "Values are each function's fraction of its profile's total, which a change of load "
            "leaves alone; overallDelta still compares the totals per second."
        )
    else:
        note = f"Values are {unit} live at the end of each window, compared as they are."
    if result["droppedAsNoise"]:
        note += (
            f" {result['droppedAsNoise']} change(s) beyond the threshold were within sampling noise "
            "and left out (includeNoise=true lists them)."
        )
    if mismatch:
        note += f" Compared although {mismatch.split(';')[0]}."
    return {
        "baseProfile": base_label,
        "comparisonProfile": comparison_label,
        "improvements": result["improvements"],
        "regressions": result["regressions"],
        "unchanged": result["unchanged"],
        "droppedAsNoise": result["droppedAsNoise"],
        "overallDelta": result["overallDelta"],
        "profileType": base_profile.profile_type,
        "unit": unit,
        "valueUnit": {"perSecond": f"{unit}/s", "share": "fraction of the profile total"}.get(used, unit),
        "normalization": used,
        "note": note,
        "noiseThresholdPercent": noise_threshold_percent,
        "baseDurationSeconds": round(base_profile.duration_seconds),
        "comparisonDurationSeconds": round(comparison_profile.duration_seconds),
        "baseDurationSecondsPrecise": base_profile.duration_seconds,
        "comparisonDurationSecondsPrecise": comparison_profile.duration_seconds,
        "baseEngine": engines[0],
        "comparisonEngine": engines[1],
        "mismatch": mismatch,
        "labels": {
            "filter": base_labels["filter"],
            "groupBy": group_by,
            "baseGroups": base_labels["groups"],
            "comparisonGroups": comparison_labels["groups"],
            "overflow": base_labels["overflow"] + comparison_labels["overflow"],
        } if labels or group_by else None,
    }
