"""Interval estimates shared by the benchmarks' metrics and the judges' agreement statistics.
Pure functions; 95% intervals throughout."""

from __future__ import annotations

import math
from collections.abc import Sequence

Z95 = 1.959963984540054  # standard normal 97.5% quantile


def wilson_interval(successes: int, n: int) -> tuple[float | None, float | None]:
    """Wilson score 95% interval for a binomial proportion (Wilson, 1927, "Probable inference, the
    law of succession, and statistical inference", JASA 22:209-212), computed by statsmodels'
    ``proportion_confint(method="wilson")``. ``n == 0`` gives (None, None)."""
    if n == 0:
        return None, None
    from statsmodels.stats.proportion import proportion_confint

    lo, hi = proportion_confint(successes, n, alpha=0.05, method="wilson")
    return float(lo), float(hi)


def mean_of_proportions(counts: Sequence[tuple[int, int]]) -> tuple[float | None, float | None, float | None]:
    """Unweighted mean of per-stratum proportions x_k/n_k (each category counts equally) with a
    95% normal-approximation interval from the stratified-sampling variance with equal weights
    1/K: Var = (1/K^2) sum_k p_k (1 - p_k) / n_k (Cochran, 1977, "Sampling Techniques", 3rd ed.,
    eq. 5.7). The variance uses Agresti-Coull adjusted proportions p~_k = (x_k + 2) / (n_k + 4)
    and n~_k = n_k + 4 (Agresti & Coull, 1998, "Approximate is better than 'exact' for interval
    estimation of binomial proportions") so that a category at 0% or 100% still contributes
    uncertainty. Strata with n_k = 0 are skipped; no strata gives (None, None, None).
    The interval is clipped to [0, 1]."""
    strata = [(x, n) for x, n in counts if n > 0]
    if not strata:
        return None, None, None
    k = len(strata)
    mean = sum(x / n for x, n in strata) / k
    var = sum(((x + 2) / (n + 4)) * (1 - (x + 2) / (n + 4)) / (n + 4) for x, n in strata) / k**2
    half = Z95 * math.sqrt(var)
    return mean, max(0.0, mean - half), min(1.0, mean + half)


def mean_interval(values: Sequence[float]) -> tuple[float | None, float | None, float | None]:
    """Sample mean with a 95% t interval (Student, 1908). One value gives (mean, None, None);
    none gives (None, None, None)."""
    n = len(values)
    if n == 0:
        return None, None, None
    mean = sum(values) / n
    if n == 1:
        return mean, None, None
    from scipy.stats import t

    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = float(t.ppf(0.975, n - 1)) * sd / math.sqrt(n)
    return mean, mean - half, mean + half


def mean_of_means(groups: Sequence[Sequence[float]]) -> tuple[float | None, float | None, float | None]:
    """Unweighted mean of per-stratum means with a 95% normal interval from the stratified variance
    (1/K^2) sum_k s_k^2 / n_k (Cochran, 1977, eq. 5.6); strata of size 1 contribute no variance
    term (s_k undefined). Empty strata are skipped."""
    strata = [list(g) for g in groups if len(g) > 0]
    if not strata:
        return None, None, None
    k = len(strata)
    means = [sum(g) / len(g) for g in strata]
    mean = sum(means) / k
    var = 0.0
    for g, m in zip(strata, means):
        if len(g) > 1:
            var += sum((v - m) ** 2 for v in g) / (len(g) - 1) / len(g)
    half = Z95 * math.sqrt(var / k**2)
    return mean, mean - half, mean + half
