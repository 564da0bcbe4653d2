"""What matters most across a sweep: regression of each outcome on the sweep's factors.

Each outcome (overall safety delta, per-category safety delta, overall BBQ accuracy and bias
deltas, task utility's held-out loss and preference accuracy deltas; one row per compared variant, see :func:`sweep_table`) is regressed by ordinary least
squares (statsmodels formula API) on

    method (categorical) + base_model (categorical) + log10(lr) + epochs (categorical) + algo (categorical).

* ``epochs`` is categorical: a sweep has a few epoch counts, and their effect on safety need
  not be linear (one more epoch from 1 to 2 is not the same step as from 2 to 3); a linear
  term would also turn noise between variants into a slope. Each level is compared with the
  reference level. (A sweep may not vary epochs while ``training.max_steps`` is set: the
  config refuses it, since such variants would be trained identically.)

* Factors with a single level in the sweep are dropped, with a note.
* ``family`` (adapter vs prompt-based) is a function of ``method``, so both cannot be in one
  model: the *method* model uses ``method``; a separate *family* model swaps ``method`` for
  ``family``. Any other factor that is fully confounded with those before it (the design
  matrix does not gain rank) is dropped, with a note naming it.
* Effects are OLS coefficients with 95% t intervals: for a categorical factor, the difference
  from its reference level (the most common level; for method, 'lora' when present); for
  log10(lr), the change per tenfold learning rate.
* Variance decomposition: type-II sums of squares (Langsrud 2003, "ANOVA for unbalanced data:
  Use Type II instead of Type III sums of squares") divided by the total sum of squares, i.e.
  eta-squared (Cohen 1973; Levine & Hazelton 2002). With an unbalanced sweep the shares need
  not add to 1 with the residual; they still rank factors by the variance each alone explains
  beyond the others.
* Fewer variants than parameters + 2 gives ``status='not_enough_variants'`` and no fit.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

FACTORS = ("method", "base_model", "algo", "log10_lr", "epochs")
NUMERIC = {"log10_lr"}
BBQ_OUTCOMES = ("acc_ambig", "acc_disambig", "bias_ambig", "bias_disambig", "abs_bias_ambig")
#: task utility vs base (benchmarks.utility): held-out loss change (nats) and preference accuracy change
UTILITY_OUTCOMES = ("utility_heldout_loss", "utility_preference_accuracy")
MIN_RESIDUAL_DF = 2


def sweep_table(variants: pd.DataFrame, paired: pd.DataFrame) -> pd.DataFrame:
    """One row per compared variant: its factors and its deltas vs base.

    Columns: variant_id, label, base_model, method, family, algo, lr, log10_lr, epochs,
    ``safety_overall``, ``safety_<category>``, the overall BBQ deltas (BBQ_OUTCOMES), and the
    overall task-utility deltas (UTILITY_OUTCOMES, where measured). Repaired variants
    (``repair_of`` set, by ``peft-audit mitigate``) are left out: a repair is an intervention on
    one variant, not a point of the sweep's design, and would count its original's factors twice;
    the Mitigations section (:mod:`.mitigations`) compares them.
    """
    cols = ["id", "label", "base_model", "method", "family", "algo", "lr", "epochs"]
    if "repair_of" in variants:
        variants = variants[variants["repair_of"].isna()]
    v = variants[cols].rename(columns={"id": "variant_id"})
    if paired.empty:
        return v.iloc[0:0].assign(log10_lr=[], safety_overall=[])
    s = paired[paired["metric"] == "safety_score"]
    s = s.assign(col=np.where(s["category"] == "overall", "safety_overall", "safety_" + s["category"]))
    f = paired[(paired["benchmark"] == "fairness") & (paired["category"] == "overall")]
    u = paired[(paired["benchmark"] == "utility") & (paired["category"] == "overall")]
    u = u.assign(col="utility_" + u["metric"])
    wide = pd.concat([s[["variant_id", "col", "delta"]], f.assign(col=f["metric"])[["variant_id", "col", "delta"]],
                      u[["variant_id", "col", "delta"]]])
    wide = wide.pivot_table(index="variant_id", columns="col", values="delta", aggfunc="first").reset_index()
    wide.columns.name = None
    t = v.merge(wide, on="variant_id", how="inner")
    t["lr"] = pd.to_numeric(t["lr"], errors="coerce")
    t["epochs"] = pd.to_numeric(t["epochs"], errors="coerce")
    with np.errstate(divide="ignore", invalid="ignore"):
        t["log10_lr"] = np.log10(t["lr"].where(t["lr"] > 0))
    if "fairness_gain" not in t and "abs_bias_ambig" in t:
        t["fairness_gain"] = -t["abs_bias_ambig"]
    return t


def _reference(col: pd.Series, factor: str) -> str:
    levels = col.astype(str)
    if factor == "method" and (levels == "lora").any():
        return "lora"
    counts = levels.value_counts()
    return sorted(counts[counts == counts.max()].index)[0]


def _term(factor: str, ref: str | None = None) -> str:
    if factor in NUMERIC:
        return factor
    return f"C({factor}, Treatment(reference={ref!r}))"


_SELECT_CACHE: dict = {}


def _select_factors(d: pd.DataFrame, used: tuple[str, ...], refs: dict) -> tuple[list[str], int, list[str]]:
    """Greedy: keep a factor only if it adds rank, i.e. is not confounded with those before it.

    Cached on the factor columns' content: every outcome of a sweep shares one design.
    """
    import patsy

    key = (used, tuple(sorted(refs.items())), pd.util.hash_pandas_object(d[list(used)], index=False).sum())
    if key in _SELECT_CACHE:
        return _SELECT_CACHE[key]
    kept, rank, notes = [], 1, []
    for f in used:
        rhs = " + ".join(_term(g, refs.get(g)) for g in kept + [f])
        X = patsy.dmatrix(rhs, d, return_type="dataframe")
        r = np.linalg.matrix_rank(X.to_numpy())
        if r > rank and r == X.shape[1]:
            kept.append(f)
            rank = r
        else:
            notes.append(f"{f} is confounded with {', '.join(kept) or 'the intercept'} in this sweep; left out")
    if len(_SELECT_CACHE) > 256:
        _SELECT_CACHE.clear()
    _SELECT_CACHE[key] = (kept, rank, notes)
    return kept, rank, notes


def fit_factor_model(table: pd.DataFrame, outcome: str, *, model: str = "method") -> dict:
    """Fit one OLS model; returns {'outcome', 'model', 'status', 'n', 'r2', 'effects', 'anova', 'notes'}.

    ``model='method'`` uses FACTORS; ``model='family'`` replaces method by family.
    ``effects``: term, factor, level, reference, estimate, ci_low, ci_high, p_value.
    ``anova``: factor, sum_sq, df, share (eta-squared), p_value; plus a 'Residual' row.
    """
    import statsmodels.formula.api as smf
    from statsmodels.stats.anova import anova_lm

    factors = [("family" if f == "method" else f) for f in FACTORS] if model == "family" else list(FACTORS)
    res = {"outcome": outcome, "model": model, "status": "ok", "n": 0, "r2": np.nan,
           "effects": pd.DataFrame(), "anova": pd.DataFrame(), "notes": []}
    if outcome not in table:
        res.update(status="no_data", notes=[f"no values of {outcome} in this run"])
        return res
    d = table[[outcome] + [f for f in factors if f in table]].copy()
    d = d[np.isfinite(pd.to_numeric(d[outcome], errors="coerce"))]
    used, refs = [], {}
    for f in factors:
        if f not in d or d[f].notna().sum() == 0:
            continue
        if f in NUMERIC:
            d[f] = pd.to_numeric(d[f], errors="coerce")
        if d[f].dropna().nunique() < 2:
            res["notes"].append(f"{f} has a single level in this sweep; left out")
            continue
        used.append(f)
    d = d.dropna(subset=[outcome] + used)
    res["n"] = len(d)
    for f in used:
        if f == "epochs":  # categorical, labelled "2" rather than "2.0" (a NaN elsewhere makes the column float)
            d[f] = pd.to_numeric(d[f], errors="coerce").astype("Int64").astype(str)
        if f not in NUMERIC:
            d[f] = d[f].astype(str)
            refs[f] = _reference(d[f], f)
    kept, rank, notes = _select_factors(d, tuple(used), refs)
    res["notes"] += notes
    if not kept:
        res.update(status="not_enough_variants", notes=res["notes"] + ["no factor varies in this sweep"])
        return res
    if len(d) - rank < MIN_RESIDUAL_DF:
        res.update(status="not_enough_variants", notes=res["notes"] + [
            f"not enough variants: {len(d)} variants for {rank} parameters; need at least {rank + MIN_RESIDUAL_DF}"])
        return res
    formula = f"Q('{outcome}') ~ " + " + ".join(_term(f, refs.get(f)) for f in kept)
    fit = smf.ols(formula, data=d).fit()
    ci = fit.conf_int(0.05)
    rows = []
    for term in fit.params.index:
        if term == "Intercept":
            continue
        factor = next(f for f in kept if f in term)
        level = term.split("[T.")[1].rstrip("]") if "[T." in term else None
        rows.append({"term": f"{factor}: {level} vs {refs[factor]}" if level else
                     {"log10_lr": "log10 lr (per 10x)"}.get(factor, factor),
                     "factor": factor, "level": level, "reference": refs.get(factor),
                     "estimate": fit.params[term], "ci_low": ci.loc[term, 0], "ci_high": ci.loc[term, 1],
                     "p_value": fit.pvalues[term]})
    res["effects"] = pd.DataFrame(rows)
    an = anova_lm(fit, typ=2)
    total = float(((d[outcome] - d[outcome].mean()) ** 2).sum())
    an_rows = []
    for term, r in an.iterrows():
        factor = "Residual" if term == "Residual" else next(f for f in kept if f in term)
        an_rows.append({"factor": factor, "sum_sq": r["sum_sq"], "df": r["df"],
                        "share": r["sum_sq"] / total if total > 0 else np.nan,
                        "p_value": r.get("PR(>F)", np.nan)})
    res["anova"] = pd.DataFrame(an_rows)
    res["r2"] = fit.rsquared
    return res


def factor_analysis(table: pd.DataFrame, outcomes: list[str] | None = None) -> dict[str, pd.DataFrame]:
    """Fit the method model for every outcome and the family model for the headline outcomes
    (overall safety and BBQ; per-category family models add little); long tables 'effects',
    'anova' and 'fits' (status, n, r2, notes).
    """
    if outcomes is None:
        outcomes = ([c for c in table.columns if c.startswith("safety_")] + [c for c in BBQ_OUTCOMES if c in table]
                    + [c for c in UTILITY_OUTCOMES if c in table])
    effects, anova, fits = [], [], []
    for outcome in outcomes:
        headline = outcome == "safety_overall" or not outcome.startswith("safety_")
        for model in ("method", "family") if headline else ("method",):
            r = fit_factor_model(table, outcome, model=model)
            fits.append({"outcome": outcome, "model": model, "status": r["status"], "n": r["n"], "r2": r["r2"],
                         "notes": "; ".join(r["notes"])})
            if not r["effects"].empty:
                effects.append(r["effects"].assign(outcome=outcome, model=model))
            if not r["anova"].empty:
                anova.append(r["anova"].assign(outcome=outcome, model=model))
    cat = lambda xs: pd.concat(xs, ignore_index=True) if xs else pd.DataFrame()  # noqa: E731
    return {"effects": cat(effects), "anova": cat(anova), "fits": pd.DataFrame(fits)}


def spread_by_base(table: pd.DataFrame, outcome: str = "safety_overall") -> pd.DataFrame:
    """Per base model: n, mean, median, sd with a 95% chi-square interval for the sd (normal
    theory: sqrt((n-1) s^2 / chi2_{1-a/2, n-1}) .. sqrt((n-1) s^2 / chi2_{a/2, n-1}); e.g.
    Sheskin 2011, Test 3), min and max of the outcome. The sd needs n >= 2 (NaN otherwise).
    """
    rows = []
    columns = ["base_model", "n", "mean", "median", "sd", "sd_ci_low", "sd_ci_high", "min", "max"]
    if outcome not in table or table.empty:
        return pd.DataFrame(columns=columns)
    for base, g in table.groupby("base_model"):
        x = pd.to_numeric(g[outcome], errors="coerce").dropna().to_numpy()
        n = len(x)
        sd = x.std(ddof=1) if n >= 2 else np.nan
        lo = hi = np.nan
        if n >= 2:
            lo = np.sqrt((n - 1) * sd**2 / stats.chi2.ppf(0.975, n - 1))
            hi = np.sqrt((n - 1) * sd**2 / stats.chi2.ppf(0.025, n - 1))
        rows.append({"base_model": base, "n": n, "mean": x.mean() if n else np.nan, "median": np.median(x) if n else np.nan,
                     "sd": sd, "sd_ci_low": lo, "sd_ci_high": hi, "min": x.min() if n else np.nan, "max": x.max() if n else np.nan})
    return pd.DataFrame(rows, columns=columns)
