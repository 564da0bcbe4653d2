"""Safety vs fairness trade-offs across the variants of a sweep, and the most fragile categories.

* **Fairness delta** (``fairness_gain``): the fall in the *absolute* BBQ ambiguous-context bias
  score, ``-(|s_AMB(variant)| - |s_AMB(base)|)`` (Parrish et al. 2022). Positive = fairer. The
  ambiguous-context score is BBQ's headline bias measure because there the only correct answer
  is "unknown"; the absolute value counts a swing towards either stereotype direction as bias.
* **Rank correlation**: Spearman's rho (Spearman 1904) of the overall safety delta and the
  fairness delta across variants, with scipy's p-value and a 95% percentile bootstrap interval
  resampling variants (Efron & Tibshirani 1993, ch. 13).
* **Pareto front**: variants not dominated on (safety delta, fairness delta), both maximised:
  no other variant is >= on both and > on one.
* **Utility delta** (``utility_delta``): the change in held-out task loss vs base, in nats
  (:mod:`peft_audit.benchmarks.utility`; negative = the variant does its task better), beside the
  two, for the safety-vs-utility and fairness-vs-utility plots; NaN where not measured.
* **Category ranking**: the mean safety delta per category over variants with a 95% t interval
  (Student 1908), most degraded first; plus how many variants dropped significantly there.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from .paired import bootstrap_weights


def spearman_with_ci(x, y, *, n_boot: int = 2000, seed: int = 0) -> dict:
    """{'rho', 'ci_low', 'ci_high', 'p_value', 'n'} over pairs where both are finite.

    Fewer than 3 pairs, or a constant input, gives NaN numbers (n says why).
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    n = len(x)
    out = {"rho": np.nan, "ci_low": np.nan, "ci_high": np.nan, "p_value": np.nan, "n": n}
    if n < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return out
    r = stats.spearmanr(x, y)
    out.update(rho=float(r.statistic), p_value=float(r.pvalue))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_boot, n))
    rx = stats.rankdata(x[idx], axis=1)
    ry = stats.rankdata(y[idx], axis=1)
    rx -= rx.mean(1, keepdims=True)
    ry -= ry.mean(1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        rb = (rx * ry).sum(1) / np.sqrt((rx**2).sum(1) * (ry**2).sum(1))
    rb = rb[np.isfinite(rb)]
    if len(rb):
        out["ci_low"], out["ci_high"] = np.percentile(rb, [2.5, 97.5])
    return out


def pareto_front(x, y) -> np.ndarray:
    """Boolean mask of points not dominated when maximising both x and y (NaN points never on it)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y)
    X, Y = x[:, None], y[:, None]
    dominated = ((x[None, :] >= X) & (y[None, :] >= Y) & ((x[None, :] > X) | (y[None, :] > Y)) & ok[None, :]).any(1)
    return ok & ~dominated


def tradeoff_table(table: pd.DataFrame, *, x: str = "safety_overall", y: str = "fairness_gain") -> pd.DataFrame:
    """The sweep table's label/base/method with x, y, ``utility_delta`` and a ``pareto`` flag (on x and y)."""
    cols = ["variant_id", "label", "base_model", "method", "family"]
    t = table[cols].copy()
    t["safety_delta"] = table[x] if x in table else np.nan
    t["fairness_delta"] = table[y] if y in table else np.nan
    t["utility_delta"] = table["utility_heldout_loss"] if "utility_heldout_loss" in table else np.nan
    t["pareto"] = pareto_front(t["safety_delta"], t["fairness_delta"])
    return t


def category_ranking(paired: pd.DataFrame, *, alpha: float = 0.05) -> pd.DataFrame:
    """Safety categories ranked by mean delta across variants (most negative first).

    Columns: category, n_variants, mean_delta, ci_low, ci_high (95% t interval; NaN for n < 2),
    n_significant_drops (delta < 0 and adjusted p < alpha).
    """
    s = paired[(paired["metric"] == "safety_score") & (paired["category"] != "overall")]
    if s.empty:
        return pd.DataFrame(columns=["category", "n_variants", "mean_delta", "ci_low", "ci_high", "n_significant_drops"])
    g = s.groupby("category")
    out = pd.DataFrame({
        "n_variants": g["delta"].count(),
        "mean_delta": g["delta"].mean(),
        "sd": g["delta"].std(ddof=1),
        "n_significant_drops": g.apply(lambda d: int(((d["delta"] < 0) & (d["p_adj"] < alpha)).sum()), include_groups=False),
    }).reset_index()
    half = stats.t.ppf(0.975, np.maximum(out["n_variants"] - 1, 1)) * out["sd"] / np.sqrt(out["n_variants"])
    half = np.where(out["n_variants"] >= 2, half, np.nan)
    out["ci_low"], out["ci_high"] = out["mean_delta"] - half, out["mean_delta"] + half
    return out.drop(columns="sd").sort_values("mean_delta", kind="stable").reset_index(drop=True)[
        ["category", "n_variants", "mean_delta", "ci_low", "ci_high", "n_significant_drops"]]


def median_with_ci(x, *, n_boot: int = 2000, seed: int = 0, key: str = "median") -> tuple[float, float, float, int]:
    """(median, ci_low, ci_high, n): percentile bootstrap interval of the median (Efron & Tibshirani 1993)."""
    x = np.asarray(x, float)
    x = x[np.isfinite(x)]
    n = len(x)
    if n == 0:
        return np.nan, np.nan, np.nan, 0
    W = bootstrap_weights(n, n_boot, seed, key)
    # The median of a resample = the weighted median of the sorted data under the counts.
    order = np.argsort(x)
    xs, cw = x[order], np.cumsum(W[:, order], axis=1)
    med = xs[np.argmax(cw >= n / 2.0, axis=1)]
    lo, hi = np.percentile(med, [2.5, 97.5])
    return float(np.median(x)), float(lo), float(hi), n
