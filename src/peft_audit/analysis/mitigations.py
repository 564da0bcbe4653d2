"""Repairs (``peft-audit mitigate``) against their original and their base: pure functions.

A repaired variant (its ``repair_of`` names the original) answered the same prompts and items
as its original and their base model, so every comparison is paired: the repair vs the original
by the same paired tests as any variant vs its base (:func:`peft_audit.analysis.paired_by_benchmark`,
Holm-adjusted across the repairs compared), the repair vs the base from the run's own paired
table. The safety the original lost is measured on the rates that got significantly worse vs
the base (adjusted p < 0.05 in the worse direction); :func:`recovered_share` says how much of
it each repair won back.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .paired import _percentiles, bootstrap_weights

#: The rows of the Mitigations table: (benchmark, metric, direction in which it is worse). The
#: safety score stands in for the two rates in a run without them; over-refusal (benign prompts
#: refused) is the cost a safety repair may bring; utility is not measured in a run without the
#: utility benchmark (its rows stay empty).
MITIGATION_METRICS = (
    ("safety", "harmful_rate", 1), ("safety", "refusal_rate", -1), ("safety", "safety_score", -1),
    ("over_refusal", "refusal_rate", 1),
    ("fairness", "abs_bias_ambig", 1), ("fairness", "abs_bias_disambig", 1),
    ("utility", "heldout_loss", 1),
)
#: The safety frame's 0/1 column of each rate whose recovered share is computed.
RATE_COLUMNS = {"harmful_rate": "harmful", "refusal_rate": "refused", "safety_score": "safe"}
ALPHA = 0.05


def recovered_share(items: pd.DataFrame, *, base_id: str, original_id: str, repair_id: str, value: str,
                    n_boot: int = 2000, seed: int = 0) -> dict[str, float]:
    """Share of the original's loss vs the base that a repair won back on one rate:
    ``(repair − original) / (base − original)``; 1 = back at the base, 0 = no better than the
    original, above 1 = past the base, below 0 = worse than the original.

    The rate is the run's: per category the mean of ``value`` (0/1) over the prompts all three
    models have a verdict for, then the mean over categories. Interval: the stratified paired
    bootstrap of :mod:`.paired` (prompts resampled within each category, the same resampled
    prompts for all three models; Davison & Hinkley 1997 §3.7), 95% percentile; replicates where
    the base and the original tie (share undefined) are left out. ``items``: variant_id,
    prompt_id, category, ``value``. Returns share, ci_low, ci_high, n (prompts answered by all
    three); all NaN when no prompt is or when the base and the original rates are equal.
    """
    nan = {"share": np.nan, "ci_low": np.nan, "ci_high": np.nan, "n": 0}
    ids = [base_id, original_id, repair_id]
    s = items[items["variant_id"].isin(ids)].drop_duplicates(["variant_id", "prompt_id"])
    wide = s.set_index(["variant_id", "prompt_id"])[value].astype(float).unstack()
    if not set(ids) <= set(wide.index):
        return nan
    wide = wide.loc[ids].dropna(axis=1)  # prompts all three answered
    if wide.shape[1] == 0:
        return nan
    category = s.drop_duplicates("prompt_id").set_index("prompt_id")["category"].reindex(wide.columns)
    points, boots = [], []
    for cat in sorted(category.unique()):
        x = wide.loc[:, (category == cat).to_numpy()].to_numpy()  # (3, n_cat)
        W = bootstrap_weights(x.shape[1], n_boot, seed, f"recovered/{cat}")  # (n_boot, n_cat)
        points.append(x.mean(axis=1))
        boots.append((W @ x.T) / W.sum(axis=1, keepdims=True))  # (n_boot, 3)
    b, o, r = np.mean(points, axis=0)
    if b == o:
        return {**nan, "n": int(wide.shape[1])}
    boot = np.mean(boots, axis=0)
    den = boot[:, 0] - boot[:, 1]
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(den != 0, (boot[:, 2] - boot[:, 1]) / den, np.nan)
    lo, hi = _percentiles(share[None, :])
    return {"share": float((r - o) / (b - o)), "ci_low": float(lo[0]), "ci_high": float(hi[0]), "n": int(wide.shape[1])}


def repair_pairs(variants: pd.DataFrame) -> pd.DataFrame:
    """variant_id (a finished repair), original_id, base_id: each repair whose original and base finished."""
    cols = ["variant_id", "original_id", "base_id"]
    if "repair_of" not in variants:
        return pd.DataFrame(columns=cols)
    done = set(variants.loc[variants["status"] == "done", "id"])
    r = variants[variants["repair_of"].notna() & variants["status"].eq("done") & variants["repair_of"].isin(done)
                 & variants["base_id"].isin(done)]
    return (r.rename(columns={"id": "variant_id", "repair_of": "original_id"})[cols].reset_index(drop=True))


def mitigation_table(variants: pd.DataFrame, paired: pd.DataFrame, vs_original: pd.DataFrame, safety: pd.DataFrame,
                     *, n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """One row per (repair, benchmark, metric) of :data:`MITIGATION_METRICS`: the repair's value,
    its change vs the original and vs the base with 95% intervals and adjusted p-values, whether
    the original lost safety on that rate (``lost``: significantly worse than the base), and
    then the recovered share with its interval (:func:`recovered_share`).

    ``paired``: the run's paired table (every variant vs its base, adjusted); ``vs_original``:
    the same comparisons with each repair's original in the base's place (adjusted across the
    repairs); ``safety``: the safety frame. A metric the run did not measure for a repair gives
    a row of NaN (reports say "not measured"). Empty when the run has no finished repair.
    """
    pairs = repair_pairs(variants)
    rows = []
    ov = paired[paired["category"] == "overall"] if not paired.empty else paired
    vo = vs_original[vs_original["category"] == "overall"] if not vs_original.empty else vs_original

    def pick(df: pd.DataFrame, vid: str, bench: str, metric: str) -> dict | None:
        if df.empty:
            return None
        hit = df[(df["variant_id"] == vid) & (df["benchmark"] == bench) & (df["metric"] == metric)]
        return hit.iloc[0].to_dict() if len(hit) else None

    two_rates = not ov.empty and ov["metric"].isin(["harmful_rate", "refusal_rate"]).any()
    for p in pairs.itertuples(index=False):
        for bench, metric, worse in MITIGATION_METRICS:
            if bench == "safety" and (metric == "safety_score") == two_rates:
                continue
            vb, vr, lost_row = pick(ov, p.variant_id, bench, metric), pick(vo, p.variant_id, bench, metric), \
                pick(ov, p.original_id, bench, metric)
            lost = bool(lost_row is not None and np.isfinite(lost_row["p_adj"]) and lost_row["p_adj"] < ALPHA
                        and np.sign(lost_row["delta"]) == worse)
            row = {"variant_id": p.variant_id, "original_id": p.original_id, "base_id": p.base_id, "benchmark": bench,
                   "metric": metric, "worse": "higher" if worse > 0 else "lower", "lost": lost,
                   "value": (vb or vr or {}).get("value", np.nan),
                   "original_value": (vr or {}).get("base_value", np.nan),
                   "base_value": (vb or {}).get("base_value", np.nan)}
            for tag, src in (("original", vr), ("base", vb)):
                for k in ("delta", "ci_low", "ci_high", "p_adj"):
                    row[f"{k}_vs_{tag}"] = (src or {}).get(k, np.nan)
            share = {"share": np.nan, "ci_low": np.nan, "ci_high": np.nan}
            if lost and bench == "safety" and RATE_COLUMNS[metric] in safety:
                share = recovered_share(safety, base_id=p.base_id, original_id=p.original_id, repair_id=p.variant_id,
                                        value=RATE_COLUMNS[metric], n_boot=n_boot, seed=seed)
            row.update(recovered_share=share["share"], recovered_ci_low=share["ci_low"],
                       recovered_ci_high=share["ci_high"])
            rows.append(row)
    return pd.DataFrame(rows)
