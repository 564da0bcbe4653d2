"""Task-utility metric rows (per variant) and its paired comparison with the base (pure).

Per variant (the metrics table), per task (``category``) and ``overall`` (every row pooled):

* ``heldout_loss``: mean over held-out SFT rows of the row's mean token negative log-likelihood
  (nats; lower is better), with a 95% t interval (:func:`peft_audit.stats.mean_interval`);
* ``perplexity``: exp of that mean, its interval the exp of the loss interval (exp is monotone);
* ``preference_accuracy``: share of held-out DPO rows with log pi(chosen) > log pi(rejected),
  with a Wilson interval (:func:`peft_audit.stats.wilson_interval`).

Paired, variant vs base on the rows both were scored on (:func:`paired_utility`):

* ``heldout_loss`` and ``perplexity``: per task and overall (rows pooled), the difference of the
  means with a paired bootstrap percentile interval resampling rows (Efron & Tibshirani 1993,
  ch. 13; the analysis module's :func:`~peft_audit.analysis.paired.bootstrap_weights`) and a
  paired sign-flip permutation p-value of the mean difference (Good 2005, §3.1), the same p for
  both (exp is monotone). A negative ``heldout_loss`` delta means the variant does its task better.
* ``preference_accuracy``: the variant's indicator is "implicit reward margin > 0" with the base
  as reference (Rafailov et al., 2023, Sec. 5), the base's "log pi(chosen) > log pi(rejected)";
  compared by :func:`~peft_audit.analysis.paired.paired_item_scores` (bootstrap interval, exact
  McNemar test).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd

from ...stats import mean_interval, wilson_interval
from .config import NAME

LOSS, PERPLEXITY, PREFERENCE_ACCURACY = "heldout_loss", "perplexity", "preference_accuracy"


def _exp(x: float | None) -> float | None:
    return None if x is None else math.exp(x)


def utility_metrics(samples: Iterable[Mapping]) -> list[dict]:
    """Metric rows (module docstring) of one variant's scored samples (``category``, ``algo`` and
    the scores of :func:`.score.score_rows`); no rows for an algo without samples, [] for none."""
    samples = list(samples)
    rows: list[dict] = []

    def groups(algo: str) -> list[tuple[str, list[Mapping]]]:
        mine = [s for s in samples if s["algo"] == algo]
        cats = sorted({s["category"] for s in mine})
        return [(c, [s for s in mine if s["category"] == c]) for c in cats] + ([("overall", mine)] if mine else [])

    for category, items in groups("sft"):
        mean, lo, hi = mean_interval([float(s["loss"]) for s in items])
        rows.append({"benchmark": NAME, "category": category, "metric": LOSS, "value": mean, "ci_low": lo,
                     "ci_high": hi, "n": len(items)})
        rows.append({"benchmark": NAME, "category": category, "metric": PERPLEXITY, "value": _exp(mean),
                     "ci_low": _exp(lo), "ci_high": _exp(hi), "n": len(items)})
    for category, items in groups("dpo"):
        k = sum(float(s["logp_chosen"]) > float(s["logp_rejected"]) for s in items)
        lo, hi = wilson_interval(k, len(items))
        rows.append({"benchmark": NAME, "category": category, "metric": PREFERENCE_ACCURACY, "value": k / len(items),
                     "ci_low": lo, "ci_high": hi, "n": len(items)})
    return rows


def paired_loss(items: pd.DataFrame, pairs: pd.DataFrame, *, n_boot: int, seed: int) -> pd.DataFrame:
    """``heldout_loss`` and ``perplexity`` rows of PAIRED_COLUMNS (module docstring) from the SFT
    items (variant_id, sample_id, category, loss) for every (variant_id, base_id) of ``pairs``."""
    from ...analysis.paired import (PAIRED_COLUMNS, _percentiles, _ratio, bootstrap_weights, permutation_p,
                                    permutation_swaps)

    if items.empty or pairs.empty:
        return pd.DataFrame(columns=PAIRED_COLUMNS)
    s = items.drop_duplicates(["variant_id", "sample_id"])
    wide = s.set_index(["variant_id", "sample_id"])["loss"].astype(float).unstack()
    cats = s.drop_duplicates("sample_id").set_index("sample_id")["category"].reindex(wide.columns).to_numpy()
    pairs = pairs[pairs["variant_id"].isin(wide.index) & pairs["base_id"].isin(wide.index)]
    if pairs.empty:
        return pd.DataFrame(columns=PAIRED_COLUMNS)
    V, B = wide.loc[pairs["variant_id"]].to_numpy(), wide.loc[pairs["base_id"]].to_numpy()
    M = np.isfinite(V) & np.isfinite(B)
    V0, B0 = np.where(M, V, 0.0), np.where(M, B, 0.0)
    groups = [(str(c), np.flatnonzero(cats == c)) for c in sorted(set(cats))] + [("overall", np.arange(len(cats)))]
    frames = []
    for cat, cols in groups:
        m, v, b = M[:, cols].astype(float), V0[:, cols], B0[:, cols]
        n = m.sum(1)
        mv, mb = _ratio(v.sum(1), n), _ratio(b.sum(1), n)
        W = bootstrap_weights(len(cols), n_boot, seed, f"{NAME}/{cat}").T  # (rows, n_boot)
        den = m @ W
        bv, bb = _ratio(v @ W, den), _ratio(b @ W, den)
        diffs = np.where(m > 0, (v - b) / np.where(n > 0, n, 1)[:, None], 0.0)
        flips = 1.0 - 2.0 * permutation_swaps(len(cols), n_boot, seed, f"{NAME}-perm/{cat}")
        p = permutation_p(np.where(n > 0, diffs.sum(1), np.nan), diffs @ flips)
        with np.errstate(over="ignore", invalid="ignore"):
            for metric, f in ((LOSS, lambda x: x), (PERPLEXITY, np.exp)):
                lo, hi = _percentiles(f(bv) - f(bb))
                frames.append(pd.DataFrame({
                    "variant_id": pairs["variant_id"].to_numpy(), "base_id": pairs["base_id"].to_numpy(),
                    "metric": metric, "category": cat, "value": f(mv), "base_value": f(mb), "delta": f(mv) - f(mb),
                    "ci_low": lo, "ci_high": hi, "n": n.astype(int), "p_value": p, "test": "permutation"}))
    out = pd.concat(frames, ignore_index=True)
    out = out[out["n"] > 0]
    out["benchmark"], out["p_adj"] = NAME, np.nan
    return out[PAIRED_COLUMNS].reset_index(drop=True)


def preference_indicators(items: pd.DataFrame, pairs: pd.DataFrame) -> pd.DataFrame:
    """variant_id, sample_id, category, ``correct`` (0/1): each base's rows with log pi(chosen) >
    log pi(rejected), and each variant's with its implicit reward margin vs its base > 0 (rows
    the base has too); see the module docstring."""
    d = items.assign(margin=items["logp_chosen"].astype(float) - items["logp_rejected"].astype(float))
    base = d[d["variant_id"].isin(pairs["base_id"])]
    out = [base.assign(correct=(base["margin"] > 0).astype(float))]
    for vid, bid in zip(pairs["variant_id"], pairs["base_id"]):
        v = d[d["variant_id"] == vid].merge(d.loc[d["variant_id"] == bid, ["sample_id", "margin"]], on="sample_id",
                                            suffixes=("", "_base"))
        out.append(v.assign(correct=(v["margin"] - v["margin_base"] > 0).astype(float)))
    cols = ["variant_id", "sample_id", "category", "correct"]
    return pd.concat([o[cols] for o in out], ignore_index=True)


def paired_utility(items: pd.DataFrame, pairs: pd.DataFrame, *, n_boot: int, seed: int) -> pd.DataFrame:
    """Every paired utility row (module docstring) from the run's utility items (``frames.items``)."""
    from ...analysis.paired import PAIRED_COLUMNS, paired_item_scores

    if items.empty or "algo" not in items:
        return pd.DataFrame(columns=PAIRED_COLUMNS)
    parts = [paired_loss(items[items["algo"] == "sft"], pairs, n_boot=n_boot, seed=seed)]
    dpo = items[items["algo"] == "dpo"]
    if not dpo.empty and not pairs.empty:
        parts.append(paired_item_scores(preference_indicators(dpo, pairs), pairs, value="correct", benchmark=NAME,
                                        metric=PREFERENCE_ACCURACY, id_col="sample_id", n_boot=n_boot, seed=seed))
    parts = [p for p in parts if not p.empty]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=PAIRED_COLUMNS)
