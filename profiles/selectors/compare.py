"""Reads for comparing two profiles."""



from ..analysis import (
    IncomparableProfiles,
    Profile,
    compare_profiles,
)
from ..models import PER_SECOND_TYPES, ProfileResult
from .profiles import profile_load_analysis


class ProfilesIncomparable(Exception):
    """The two profiles cannot be compared (different types): a 400."""

def normalization_of(profile_type: str) -> str:
    return "perSecond" if profile_type in PER_SECOND_TYPES else "none"


def profile_compare(
    *,
    base: ProfileResult,
    comparison: ProfileResult,
    noise_threshold_percent: float = 5.0,
    limit: int = 100,
) -> dict:
    """The seed's ProfileComparison of two profiles of one tenant (the caller scoped them).

    Raises ProfilesIncomparable (types differ) before ProfileNotReady (either not completed),
    since a type mismatch will never resolve by waiting.
    """
    if base.profile_type != comparison.profile_type:
        raise ProfilesIncomparable(
            f"cannot compare a {base.profile_type} profile with a {comparison.profile_type} profile"
        )
    return comparison_result(
        base_profile=profile_load_analysis(profile=base),
        comparison_profile=profile_load_analysis(profile=comparison),
        base_label=str(base.pk),
        comparison_label=str(comparison.pk),
        noise_threshold_percent=noise_threshold_percent,
        limit=limit,
    )


def comparison_result(
    *,
    base_profile: Profile,
    comparison_profile: Profile,
    base_label: str,
    comparison_label: str,
    noise_threshold_percent: float = 5.0,
    limit: int = 100,
) -> dict:
    """The seed's ProfileComparison of two analysed profiles (stored ones, or merged ranges)."""
    if base_profile.profile_type != comparison_profile.profile_type:
        raise ProfilesIncomparable(
            f"cannot compare a {base_profile.profile_type} profile with a {comparison_profile.profile_type} profile"
        )
    try:
        result = compare_profiles(
            base_profile, comparison_profile, noise_threshold_percent=noise_threshold_percent, limit=limit
        )
    except IncomparableProfiles as exc:  # e.g. a rate profile of zero seconds
        raise ProfilesIncomparable(str(exc)) from None
    normalization = normalization_of(base_profile.profile_type)
    unit = base_profile.unit
    if normalization == "perSecond":
        note = (
            f"Values are {unit} per second of wall time, so profiles of different lengths "
            f"({base_profile.duration_seconds:g} s and {comparison_profile.duration_seconds:g} s) compare fairly."
        )
    else:
        note = f"Values are {unit} live at the end of each window, compared as they are."
    return {
        "baseProfile": base_label,
        "comparisonProfile": comparison_label,
        "improvements": result["improvements"],
        "regressions": result["regressions"],
        "unchanged": result["unchanged"],
        "overallDelta": result["overallDelta"],
        "profileType": base_profile.profile_type,
        "unit": unit,
        "normalization": normalization,
        "note": note,
        "noiseThresholdPercent": noise_threshold_percent,
        "baseDurationSeconds": base_profile.duration_seconds,
        "comparisonDurationSeconds": comparison_profile.duration_seconds,
    }
