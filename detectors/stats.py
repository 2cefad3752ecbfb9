"""The two tests detectors use, one-sided toward "worse"."""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import mannwhitneyu


def proportion_worse(before_hits: int, before_n: int, after_hits: int, after_n: int) -> float:
    """One-sided p-value that the after-rate is higher (two-proportion z-test, pooled)."""
    if before_n == 0 or after_n == 0:
        return 1.0
    pooled = (before_hits + after_hits) / (before_n + after_n)
    if pooled in (0.0, 1.0):
        return 1.0
    se = math.sqrt(pooled * (1 - pooled) * (1 / before_n + 1 / after_n))
    z = (after_hits / after_n - before_hits / before_n) / se
    return 0.5 * math.erfc(z / math.sqrt(2))


def values_worse(before: np.ndarray, after: np.ndarray) -> float:
    """One-sided p-value that after-values are larger (Mann-Whitney U rank test)."""
    if len(before) < 2 or len(after) < 2:
        return 1.0
    return float(mannwhitneyu(after, before, alternative="greater").pvalue)


def robust_z(values: np.ndarray, baseline: np.ndarray, min_scale: float = 0.0) -> np.ndarray:
    """(x - median) / (1.4826 * MAD) of the baseline.

    The scale never drops below ``min_scale`` nor 5% of the median: a flat baseline
    (every run with zero errors) must not turn the first error into an infinite score.
    """
    median = float(np.median(baseline))
    mad = float(np.median(np.abs(baseline - median))) * 1.4826
    return (values - median) / max(mad, abs(median) * 0.05, min_scale, 1e-9)
