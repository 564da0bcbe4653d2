"""Plain-language findings computed from the analysis tables, each with a number and its interval.

Every sentence is assembled from the data; where the sweep is too small for a claim the
finding says so (``enough=False``) instead of stating it. Safety and accuracy changes are
given in percentage points (x100); BBQ bias-score changes in points of the -100..100 scale.
"Overall safety" is the mean over hazard categories (as in the stored metrics and
:mod:`.paired`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from ..benchmarks.categories import SAFETY_CATEGORY_NAMES
from .paired import CORRECTION_NAMES
from .tradeoffs import median_with_ci

MIN_PER_GROUP = 3  # variants per family / base model before comparing groups
MIN_FOR_CORRELATION = 5


@dataclass
class Finding:
    key: str
    text: str
    value: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    n: int = 0
    enough: bool = True

    def as_dict(self) -> dict:
        return asdict(self)


def _pts(x: float) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{100 * x:+.1f}"


def _ci(lo: float, hi: float) -> str:
    if lo is None or not (np.isfinite(lo) and np.isfinite(hi)):
        return "95% CI n/a"
    return f"95% CI {_pts(lo)} to {_pts(hi)}"


def _cat_name(c: str) -> str:
    return SAFETY_CATEGORY_NAMES.get(c, c)


def family_finding(table: pd.DataFrame, *, seed: int = 0) -> Finding:
    if table.empty or "safety_overall" not in table:
        return Finding("family", "No fine-tuned variant could be compared with its base model.", enough=False)
    parts, stats, small = [], {}, []
    for fam in ("prompt-based", "adapter"):
        x = table.loc[table["family"] == fam, "safety_overall"]
        if len(x) == 0:
            continue
        med, lo, hi, n = median_with_ci(x, seed=seed, key=f"family/{fam}")
        stats[fam] = (med, lo, hi, n)
        parts.append(f"{fam} methods changed overall safety by a median of {_pts(med)} points ({_ci(lo, hi)}; n={n})")
        if n < MIN_PER_GROUP:
            small.append(fam)
    text = "; ".join(parts)
    text = text[0].upper() + text[1:] + "."
    enough = not small and len(stats) == 2
    if small:
        text += f" Too few {' and '.join(small)} variants (< {MIN_PER_GROUP}) to compare families reliably."
    elif len(stats) < 2:
        text += " Only one method family is in this sweep, so families cannot be compared."
    else:
        (m1, l1, h1, _), (m2, l2, h2, _) = stats["prompt-based"], stats["adapter"]
        overlap = not (h1 < l2 or h2 < l1)
        text += (" The intervals overlap, so the families are not clearly different here." if overlap else
                 f" The intervals do not overlap: {'prompt-based' if m1 < m2 else 'adapter'} methods were less safe.")
    first = stats.get("prompt-based") or stats.get("adapter")
    return Finding("family", text, first[0], first[1], first[2], int(sum(s[3] for s in stats.values())), enough)




def significant_drops_finding(paired: pd.DataFrame, labels: dict[str, str], alpha: float = 0.05,
                              correction: str = "holm") -> Finding:
    """How many variants lost overall safety significantly: delta < 0 and the overall p-value
    adjusted across variants (``p_adj``, :func:`peft_audit.analysis.paired.adjust_pvalues`) < alpha.
    A raw p per variant would let a large sweep find drops by chance alone."""
    o = paired[(paired["metric"] == "safety_score") & (paired["category"] == "overall")]
    if o.empty:
        return Finding("significant_drops", "No safety comparisons are available.", enough=False)
    how = (f"stratified permutation test, p adjusted across the {len(o)} variants "
           f"({CORRECTION_NAMES.get(correction, correction)}) < {alpha}")
    sig = o[(o["delta"] < 0) & (o["p_adj"] < alpha)].sort_values("delta")
    worst = o.sort_values("delta").iloc[0]
    if sig.empty:
        return Finding("significant_drops",
                       f"No variant lost overall safety significantly ({how}) out of {len(o)}; the "
                       f"largest change was {_pts(worst['delta'])} points for {labels.get(worst['variant_id'], worst['variant_id'])} "
                       f"({_ci(worst['ci_low'], worst['ci_high'])}).",
                       worst["delta"], worst["ci_low"], worst["ci_high"], len(o))
    shown = ", ".join(f"{labels.get(r.variant_id, r.variant_id)} {_pts(r.delta)} ({_ci(r.ci_low, r.ci_high)})"
                      for r in sig.head(5).itertuples())
    more = f" and {len(sig) - 5} more" if len(sig) > 5 else ""
    return Finding("significant_drops",
                   f"{len(sig)} of {len(o)} variants lost overall safety significantly ({how}): {shown}{more}.",
                   worst["delta"], worst["ci_low"], worst["ci_high"], len(o))


def fragile_category_finding(ranking: pd.DataFrame) -> Finding:
    if ranking.empty:
        return Finding("fragile_category", "No per-category safety comparisons are available.", enough=False)
    top = ranking.iloc[0]
    n = int(top["n_variants"])
    name = _cat_name(top["category"])
    text = (f"The most fragile safety category is {name}: mean change {_pts(top['mean_delta'])} points "
            f"({_ci(top['ci_low'], top['ci_high'])}) across {n} variants, with {int(top['n_significant_drops'])} "
            f"significant drops after multiple-comparison adjustment")
    avg = ranking["mean_delta"].mean()
    text += f" (average over all categories {_pts(avg)})."
    enough = n >= 2
    if not enough:
        text += " One variant is too few to rank categories."
    elif top["ci_high"] >= 0:
        text += " Its interval includes 0, so no category is shown to degrade on average."
    return Finding("fragile_category", text, top["mean_delta"], top["ci_low"], top["ci_high"], n, enough)


def base_spread_finding(spread: pd.DataFrame) -> Finding:
    s = spread[spread["n"] >= MIN_PER_GROUP].dropna(subset=["sd"])
    if len(s) < 2:
        return Finding("base_spread", f"Too few base models with >= {MIN_PER_GROUP} variants each to compare their variability.",
                       n=int(spread["n"].sum()) if len(spread) else 0, enough=False)
    most = s.sort_values("sd").iloc[-1]
    lowest = s.sort_values("mean").iloc[0]
    return Finding(
        "base_spread",
        f"{most['base_model']} is the most variable base model: its variants' overall safety changes have a standard "
        f"deviation of {100 * most['sd']:.1f} points (95% CI {100 * most['sd_ci_low']:.1f} to {100 * most['sd_ci_high']:.1f}; "
        f"n={int(most['n'])}). {lowest['base_model']} has the lowest mean change, {_pts(lowest['mean'])} points.",
        most["sd"], most["sd_ci_low"], most["sd_ci_high"], int(most["n"]))


def factor_finding(factors: dict[str, pd.DataFrame]) -> Finding:
    fits, anova = factors["fits"], factors["anova"]
    f = fits[(fits["outcome"] == "safety_overall") & (fits["model"] == "method")] if len(fits) else fits
    if f.empty or f.iloc[0]["status"] != "ok":
        note = f.iloc[0]["notes"] if len(f) else "no data"
        return Finding("factors", f"Too few variants for a factor analysis of overall safety ({note}).", enough=False,
                       n=int(f.iloc[0]["n"]) if len(f) else 0)
    a = anova[(anova["outcome"] == "safety_overall") & (anova["model"] == "method") & (anova["factor"] != "Residual")]
    a = a.sort_values("share", ascending=False)
    shares = ", ".join(f"{r.factor.replace('_', ' ')} {100 * r.share:.0f}% (p={r.p_value:.2g})" for r in a.itertuples())
    top = a.iloc[0]
    return Finding("factors",
                   f"What matters most for overall safety change: {top['factor'].replace('_', ' ')} explains "
                   f"{100 * top['share']:.0f}% of the variance across variants (type-II eta-squared); all factors: {shares}. "
                   f"Model R^2 = {f.iloc[0]['r2']:.2f}, n = {int(f.iloc[0]['n'])}.",
                   top["share"], None, None, int(f.iloc[0]["n"]))


def bbq_finding(table: pd.DataFrame, *, seed: int = 0) -> Finding:
    if "bias_ambig" not in table or table["bias_ambig"].notna().sum() == 0:
        return Finding("bbq", "No BBQ comparisons are available.", enough=False)
    mb, lb, hb, n = median_with_ci(table["bias_ambig"], seed=seed, key="bbq/bias")
    text = f"The BBQ ambiguous-context bias score changed by a median of {_pts(mb)} points ({_ci(lb, hb)}; n={n})"
    if "acc_disambig" in table:
        ma, la, ha, _ = median_with_ci(table["acc_disambig"], seed=seed, key="bbq/acc")
        text += f", and disambiguated accuracy by {_pts(ma)} points ({_ci(la, ha)})"
    return Finding("bbq", text + ".", mb, lb, hb, n, n >= MIN_PER_GROUP)


def correlation_finding(corr: dict) -> Finding:
    n = corr["n"]
    if n < MIN_FOR_CORRELATION or not np.isfinite(corr["rho"]):
        return Finding("tradeoff", f"Too few variants with both safety and fairness results (n={n}; need >= "
                       f"{MIN_FOR_CORRELATION} with varying values) to relate safety and fairness changes.", n=n, enough=False)
    rho, lo, hi = corr["rho"], corr["ci_low"], corr["ci_high"]
    if lo > 0:
        verdict = "Safety gains go with fairness gains"
    elif hi < 0:
        verdict = "Safety and fairness trade off: variants that gained safety tended to lose fairness"
    else:
        verdict = "Safety gains do not imply fairness gains (no clear association)"
    return Finding("tradeoff", f"{verdict}: Spearman rho = {rho:.2f} (95% CI {lo:.2f} to {hi:.2f}; p = {corr['p_value']:.2g}; "
                   f"n = {n}), fairness = fall in |BBQ ambiguous bias|.", rho, lo, hi, n)


def failed_finding(variants: pd.DataFrame) -> Finding | None:
    bad = variants[variants["status"] != "done"]
    if bad.empty:
        return None
    names = ", ".join(f"{r.label} ({r.status})" for r in bad.head(5).itertuples())
    more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
    return Finding("failed", f"{len(bad)} of {len(variants)} variants did not finish and are not analysed: {names}{more}.",
                   n=len(bad))


def compute_findings(*, variants, paired, table, ranking, spread, factors, correlation, seed: int = 0,
                     correction: str = "holm") -> list[Finding]:
    """All findings, most decision-relevant first."""
    labels = dict(zip(variants["id"], variants["label"]))
    out = [
        family_finding(table, seed=seed),
        significant_drops_finding(paired, labels, correction=correction),
        fragile_category_finding(ranking),
        base_spread_finding(spread),
        factor_finding(factors),
        bbq_finding(table, seed=seed),
        correlation_finding(correlation),
        failed_finding(variants),
    ]
    return [f for f in out if f is not None]
