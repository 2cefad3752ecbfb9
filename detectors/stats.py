"""The tests detectors use, one-sided toward "worse"."""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import chi2, mannwhitneyu


def proportion_z(before_hits: int, before_n: int, after_hits: int, after_n: int) -> float:
    """z-score of the after-rate over the before-rate (two-proportion test, pooled); 0 when undefined."""
    if before_n == 0 or after_n == 0:
        return 0.0
    pooled = (before_hits + after_hits) / (before_n + after_n)
    if pooled in (0.0, 1.0):
        return 0.0
    se = math.sqrt(pooled * (1 - pooled) * (1 / before_n + 1 / after_n))
    return (after_hits / after_n - before_hits / before_n) / se


def proportion_worse(before_hits: int, before_n: int, after_hits: int, after_n: int) -> float:
    """One-sided p-value that the after-rate is higher (two-proportion z-test, pooled)."""
    if before_n == 0 or after_n == 0 or before_hits + after_hits in (0, before_n + after_n):
        return 1.0
    return 0.5 * math.erfc(proportion_z(before_hits, before_n, after_hits, after_n) / math.sqrt(2))


def values_worse(before: np.ndarray, after: np.ndarray) -> float:
    """One-sided p-value that after-values are larger (Mann-Whitney U rank test)."""
    if len(before) < 2 or len(after) < 2:
        return 1.0
    return float(mannwhitneyu(after, before, alternative="greater").pvalue)


def superiority(baseline: np.ndarray, values: np.ndarray) -> np.ndarray:
    """For each value, the share of baseline values below it, ties counted half.

    Its mean over a sample is the probability that a run of the sample exceeds a baseline
    run (the Mann-Whitney U statistic over the sizes): 0.5 when both come from one
    distribution, whatever its shape, skew or outliers.
    """
    ordered = np.sort(baseline)
    below = np.searchsorted(ordered, values, side="left")
    not_above = np.searchsorted(ordered, values, side="right")
    return (below + not_above) / (2.0 * len(ordered))


def superiority_z(mean: float, before_n: int, after_n: int) -> float:
    """z-score of a mean :func:`superiority` of ``after_n`` values over ``before_n`` baseline values.

    The normal approximation of the Mann-Whitney U test, without tie correction (which
    would only make the score larger).
    """
    if before_n == 0 or after_n == 0:
        return 0.0
    return (mean - 0.5) * math.sqrt(12.0 * before_n * after_n / (before_n + after_n + 1))


def overdispersion(deviations: np.ndarray, keep: float = 0.75) -> float:
    """How many times wider than sampling alone standardized deviations spread (>= 1).

    Pearson's dispersion (mean squared deviation; 1 for pure sampling noise), taken over the
    ``keep`` share of smallest deviations and corrected for the trimming, so that the largest
    quarter, such as buckets that already hold the change being judged, does not inflate it.
    The square root is returned: the factor a z-score is divided by.
    """
    squares = np.sort(np.square(np.asarray(deviations, dtype=float)))
    if len(squares) == 0:
        return 1.0
    kept = squares[: max(1, math.ceil(len(squares) * keep))]
    # E[X | X <= q] for X ~ chi-square(1) and q its keep-quantile: x f_1(x) = f_3(x), so E[X; X <= q] = F_3(q).
    expected = float(chi2.cdf(chi2.ppf(keep, 1), 3)) / keep
    return math.sqrt(max(1.0, float(kept.mean()) / expected))


def robust_scale(values: np.ndarray) -> float:
    """1.4826 x the median absolute deviation: the standard deviation of normal data, robustly."""
    if len(values) == 0:
        return 0.0
    return float(np.median(np.abs(values - np.median(values)))) * 1.4826


def robust_z(values: np.ndarray, baseline: np.ndarray, min_scale: float = 0.0) -> np.ndarray:
    """(x - median) / (1.4826 * MAD) of the baseline.

    The scale never drops below ``min_scale`` nor 5% of the median: a flat baseline
    (every run with zero errors) must not turn the first error into an infinite score.
    """
    median = float(np.median(baseline))
    return (values - median) / max(robust_scale(baseline), abs(median) * 0.05, min_scale, 1e-9)
