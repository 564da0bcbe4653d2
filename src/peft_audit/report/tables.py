"""Shape analysis tables into what the templates show (no statistics here)."""

from __future__ import annotations

import math

import pandas as pd

from ..benchmarks.categories import SAFETY_CATEGORIES

FAIRNESS_SHOWN = ("acc_ambig", "acc_disambig", "bias_ambig", "bias_disambig")
#: Benchmarks the report lays out by hand (with the judge tables, heatmaps and factor models
#: around them): safety (with over-refusal) and BBQ. Every other benchmark's report sections are
#: rendered by :func:`benchmark_sections` in registry order, after them.
HAND_LAID_OUT = frozenset({"safety", "fairness"})
#: metric -> the benchmark value of its rows, for the grids laid out by hand
BUILTIN_BENCHMARK_OF = {"safety_score": "safety", "refusal_rate": "over_refusal",
                        **{m: "fairness" for m in ("acc_ambig", "acc_disambig", "bias_ambig", "bias_disambig",
                                                   "abs_bias_ambig", "abs_bias_disambig")}}
METRIC_TITLES = {
    "safety_score": "Safety score (share of prompts answered safely, among those the judges scored; overall = mean "
                    "over categories)",
    "acc_ambig": "BBQ accuracy, ambiguous contexts",
    "acc_disambig": "BBQ accuracy, disambiguated contexts",
    "bias_ambig": "BBQ bias score, ambiguous contexts (s_AMB)",
    "bias_disambig": "BBQ bias score, disambiguated contexts (s_DIS)",
    "refusal_rate": "Over-refusal rate on benign prompts (refused or incoherent)",
}


#: The safety section's grids of the two verdicts per response: (metric, title, lower is better).
TWO_VERDICT_GRIDS = (
    ("harmful_rate", "Harmful-response rate (share of responses giving meaningful help toward the harmful request, "
                     "per the harm judges; incoherent output is not harmful; overall = mean over categories)", True),
    ("refusal_rate", "Refusal rate on harmful prompts (share of responses that declined, explicitly or implicitly; "
                     "overall = mean over categories)", False),
)


def num(x, scale: float = 100.0, fmt: str = "{:.1f}", signed: bool = False) -> str:
    """``x`` times ``scale`` as text: one decimal (points), two at scale 1 (a loss in nats)."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    v = scale * x
    digits = 2 if scale == 1 and fmt == "{:.1f}" else 1
    if v == 0 or abs(v) < 0.5 / 10**digits and fmt == "{:.1f}":
        v = 0.0  # a change that rounds to zero reads +0.0, never -0.0
    return ("{:+.%df}" % digits if signed else fmt if digits == 1 else "{:.2f}").format(v)


def ordered_categories(cats, metric: str) -> list[str]:
    """``cats`` in display order: the taxonomy's order for safety, else sorted, then ``overall``
    where it is among them (a metric with too few items for an overall row has none)."""
    present = list(pd.unique(cats))
    cats = [c for c in present if c != "overall"]
    if metric in ("safety_score", *(m for m, _, _ in TWO_VERDICT_GRIDS)):
        cats = [c for c in SAFETY_CATEGORIES if c in cats] + sorted(c for c in cats if c not in SAFETY_CATEGORIES)
    else:
        cats = sorted(cats)
    return cats + (["overall"] if "overall" in present else [])


def score_grid(variants: pd.DataFrame, paired: pd.DataFrame, metric: str, *, alpha: float = 0.05,
               metrics: pd.DataFrame | None = None, benchmark: str | None = None, title: str | None = None,
               lower_is_better: bool = False, scale: float = 100.0) -> dict:
    """{'title', 'columns', 'rows': [{'label', 'method', 'base', 'cells': [cell or None]}]} for one metric.

    cell: value, delta, ci_low, ci_high, p_adj, significant, good (+1 better, -1 worse, 0 unclear),
    strength (0..1 for colour), and display text. Base rows show their own score only. ``metrics``
    (the store's metrics table) supplies the scores of variants without a comparison: a run of a
    base model alone, or a variant whose base is missing. ``benchmark`` keeps only that
    benchmark's rows (default: the built-in benchmark that owns ``metric``; plug-ins may reuse a
    metric name); ``lower_is_better`` colours a rise red; ``scale`` is the factor numbers are
    shown at (100: percentage points; 1: e.g. a loss in nats).
    """
    benchmark = benchmark or BUILTIN_BENCHMARK_OF.get(metric)
    p = paired[paired["metric"] == metric]
    if benchmark is not None and "benchmark" in p:
        p = p[p["benchmark"] == benchmark]
    own: dict = {}
    if metrics is not None and not metrics.empty:
        mm = metrics[metrics["metric"] == metric]
        if benchmark is not None and "benchmark" in mm:
            mm = mm[mm["benchmark"] == benchmark]
        own = {(r.variant_id, r.category): r.value for r in mm.itertuples()}
    cats = list(p["category"]) + [c for (_, c) in own]
    if not cats:
        return {"title": title or METRIC_TITLES.get(metric, metric), "metric": metric, "columns": [], "rows": []}
    cols = ordered_categories(pd.Series(cats), metric)
    safety_rows = metrics[metrics["benchmark"] == "safety"] if metrics is not None and "benchmark" in metrics else metrics
    unscored = _overall_or_category_values(safety_rows, "unscored_share") if metric == "safety_score" else {}
    abs_p = paired[paired["metric"] == "abs_" + metric] if metric.startswith("bias_") else None
    by = {(r.variant_id, r.category): r for r in p.itertuples()}
    by_abs = {(r.variant_id, r.category): r for r in abs_p.itertuples()} if abs_p is not None else {}
    base_vals = p.drop_duplicates(["base_id", "category"]).set_index(["base_id", "category"])["base_value"].to_dict()
    rows = []
    for v in variants.itertuples():
        cells = []
        for c in cols:
            r = by.get((v.id, c))
            if v.method == "base" or r is None:
                val = base_vals.get((v.id, c)) if v.method == "base" else None
                val = own.get((v.id, c)) if val is None else val
                tag = "base" if v.method == "base" else "no base to compare"
                cells.append(None if val is None else {"text": num(val, scale), "delta_text": tag, "good": 0, "strength": 0,
                                                        "title": ""})
                continue
            # Colour by what is better: higher safety/accuracy; a smaller |bias| for bias scores.
            ref = by_abs.get((v.id, c)) if by_abs else r
            # more refusals of benign prompts is worse (of harmful prompts, better)
            sign = -1 if by_abs or lower_is_better or (metric, benchmark) == ("refusal_rate", "over_refusal") else 1
            d, lo, hi = (ref.delta, ref.ci_low, ref.ci_high) if ref is not None else (math.nan,) * 3
            good = 0
            if math.isfinite(lo) and math.isfinite(hi):
                good = sign if lo > 0 else (-sign if hi < 0 else 0)
            strength = min(1.0, abs(d) * scale / 20) if math.isfinite(d) else 0.0
            sig = bool(r.p_adj < alpha) if r.p_adj == r.p_adj else False
            cells.append({
                "text": num(r.value, scale), "delta_text": f"{num(r.delta, scale, signed=True)} [{num(r.ci_low, scale, signed=True)}, "
                f"{num(r.ci_high, scale, signed=True)}]" + ("*" if sig else ""),
                "good": good if good else (sign if d > 0 else -sign if d < 0 else 0) * 0.5,
                "strength": strength, "significant": sig,
                "title": f"raw p={r.p_value:.3g}, adjusted p={r.p_adj:.3g}, n={r.n}" if r.p_value == r.p_value else f"n={r.n}",
            })
        for c, cell in zip(cols, cells):
            if cell is not None:  # the judges' abstentions, next to the score they are left out of
                share = unscored.get((v.id, c))
                cell["unscored_text"] = f"{num(share, fmt='{:.0f}')}% unscored" if share else ""
        rows.append({"label": v.label, "method": v.method, "base": v.base_model, "status": v.status, "cells": cells})
    return {"title": title or METRIC_TITLES.get(metric, metric), "metric": metric, "columns": cols, "rows": rows}


def _overall_or_category_values(metrics: pd.DataFrame | None, metric: str) -> dict:
    if metrics is None or metrics.empty:
        return {}
    mm = metrics[metrics["metric"] == metric]
    return {(r.variant_id, r.category): r.value for r in mm.itertuples()}


def judge_scores(variants: pd.DataFrame, metrics: pd.DataFrame | None) -> list[dict]:
    """Overall safety score per (variant, judge), the combined verdict first, each with the share
    of responses that judge left unscored (judge refusals included) and its refusal count, so no
    judge's score is read without knowing how much it skipped. ``rubric_5s``: the llm judge's
    share scored 5 on this project's rubric (analogous to Qi et al.'s harmfulness rate, not
    theirs). Display strings; [] without metrics."""
    if metrics is None or metrics.empty:
        return []
    m = metrics[(metrics["benchmark"] == "safety") & (metrics["category"] == "overall")]
    by = {(r.variant_id, r.metric): r for r in m.itertuples()}
    out = []
    for v in variants.itertuples():
        judges = sorted(k.split(":", 1)[1] for (vid, k) in by if vid == v.id and k.startswith("safety_score:"))
        for judge in (["combined"] if (v.id, "safety_score") in by else []) + judges:
            suffix = "" if judge == "combined" else f":{judge}"
            s = by[(v.id, "safety_score" + suffix)]
            u, r, h = (by.get((v.id, k)) for k in ("unscored_share" + suffix, "judge_refused_count" + suffix,
                                                    "harmfulness_rate" if judge == "llm" else ""))
            out.append({
                "label": v.label, "judge": judge, "score": num(s.value),
                "ci": f"[{num(s.ci_low)}, {num(s.ci_high)}]", "n": "n/a" if s.n != s.n else str(int(s.n)),
                "unscored": "n/a" if u is None else num(u.value, fmt="{:.0f}%"),
                "judge_refused": "—" if r is None else str(int(r.value)),
                "rubric_5s": "—" if h is None else num(h.value),
            })
    return out


def cell_colour(cell: dict | None) -> str:
    """Background colour: green better, red worse, pale when the interval includes 0."""
    if not cell or not cell.get("good"):
        return "#f4f4f4" if cell else "#ffffff"
    g = cell["good"]
    a = 0.15 + 0.55 * cell["strength"] * (1.0 if abs(g) == 1 else 0.35)
    return f"rgba(30,150,60,{a:.2f})" if g > 0 else f"rgba(210,40,40,{a:.2f})"


def delta_matrix(variants: pd.DataFrame, paired: pd.DataFrame, metric: str) -> pd.DataFrame:
    """variant label x category matrix of deltas (fine-tuned variants only) for heatmaps."""
    p = paired[paired["metric"] == metric]
    if p.empty:
        return pd.DataFrame()
    labels = dict(zip(variants["id"], variants["label"]))
    m = p.pivot_table(index="variant_id", columns="category", values="delta", aggfunc="first")
    order = [v for v in variants["id"] if v in m.index]
    m = m.loc[order, ordered_categories(m.columns, metric)]
    m.index = [labels.get(i, i) for i in m.index]
    return m


def heat_colour(value: float, limit: float) -> str:
    """RdYlGn colour for a delta in [-limit, limit] (points); light grey for NaN."""
    import matplotlib

    if not math.isfinite(value):
        return "#eeeeee"
    r, g, b, _ = matplotlib.colormaps["RdYlGn"](0.5 + 0.5 * max(-1.0, min(1.0, value / limit)))
    return f"#{int(255 * r):02x}{int(255 * g):02x}{int(255 * b):02x}"


def heatmap_grid(matrix: pd.DataFrame, title: str, *, scale: float = 100.0, higher_is_better: bool = True) -> dict | None:
    """An HTML heatmap (variant x category) of deltas in points, symmetric colour scale.

    Drawn as a table rather than an image: a 200-variant heatmap with readable row labels
    costs matplotlib ~10 s per figure (one text object per tick), a table costs nothing and
    keeps the labels searchable. ``higher_is_better=False`` (bias scores) flips the colours so
    that red always means worse.
    """
    if matrix.empty:
        return None
    vals = matrix.to_numpy(float) * scale
    finite = vals[pd.notna(vals)]
    limit = float(max(abs(finite).max(), 1e-9)) if finite.size else 1.0
    rows = [{"label": str(label), "cells": [
        {"text": "" if not math.isfinite(v) else f"{v:+.0f}", "colour": heat_colour(v if higher_is_better else -v, limit),
         "title": f"{label} / {c}: {v:+.1f} pts" if math.isfinite(v) else f"{label} / {c}: n/a"}
        for c, v in zip(matrix.columns, row)]} for label, row in zip(matrix.index, vals)]
    return {"title": title, "columns": [str(c) for c in matrix.columns], "rows": rows, "limit": limit}


def records(df: pd.DataFrame) -> list[dict]:
    return [] if df is None or df.empty else df.to_dict("records")


def judge_validity_rows(validation: pd.DataFrame) -> list[dict]:
    """Published judge figures, one row per (judge, part) with formatted cells
    (``value [lo, hi] (k/n)``) for :data:`~peft_audit.analysis.judge_errors.PUBLISHED_METRICS`."""
    from .console import stat_text

    if validation is None or validation.empty:
        return []
    rows = []
    for (judge, part), g in validation.groupby(["judge", "part"], sort=False):
        cells = {r["metric"]: stat_text(r) for r in g.to_dict("records")}
        rows.append({"judge": judge, "part": "all test responses" if part == "test" else "real model outputs only",
                     **{m: cells.get(m, "n/a") for m in ("recall:refusal", "precision:refusal", "safe_agreement",
                                                         "incoherent_labelled_safe")}})
    return rows


def external_validity_rows(judges: list[str]) -> dict:
    """The shipped external figures (:mod:`peft_audit.judges.external`) for ``judges`` and the field
    references: ``{"columns": [set titles], "rows": [{"name", "cells": [text per column]}]}``; no
    rows when none of ``judges`` was measured there."""
    from ..judges.external import REPORTED_PARTS, published_external, table_rows

    doc = published_external() or {"sets": {}, "judges": {}, "references": {}}
    parts = [p for p in REPORTED_PARTS if p in doc["sets"]]
    measured = [j for j in judges if j in doc["judges"]]
    if not measured:
        return {"columns": [], "rows": []}
    return {"columns": [REPORTED_PARTS[p] for p in parts], "rows": table_rows(doc, parts, measured)}


#: The harm judge's card figures a report quotes, in this order (:mod:`peft_audit.judges.harm`).
HARM_CARD_FIGURES = {"leave_out_gptfuzz": "GPTFuzz, trained without it",
                     "leave_out_xstest": "XSTest's unsafe prompts, trained without XSTest",
                     "own_test": "the own labelled set's test split", "test_harmbench": "HarmBench val (test only)"}


def harm_card_text(judges: list[str]) -> str | None:
    """One sentence with the ``harm`` judge's measured figures from its card (safe/unsafe agreement
    [95% interval] (k/n), κ) when ``judges`` includes it; None otherwise or without a card."""
    from ..judges.harm import published_card
    from .console import stat_text

    card = published_card() if "harm" in judges else None
    if not card:
        return None
    parts = []
    for key, title in HARM_CARD_FIGURES.items():
        rows = {r["metric"]: r for r in card["figures"].get(key, [])}
        if "safe_agreement" in rows:
            kappa = rows.get("kappa_safe", {}).get("value")
            parts.append(f"{title} {stat_text(rows['safe_agreement'])}"
                         + (f", κ {kappa:.2f}" if kappa is not None else ""))
    return ("The harm judge (its card, judges/data/harm_probe.json; responses to harmful requests, "
            "safe/unsafe agreement [95% interval] (k/n)): " + "; ".join(parts) + ".") if parts else None


SPOT_CHECK_SHOWN = ("safe_agreement", "kappa_safe", "sensitivity_safe", "specificity_safe", "recall:refusal",
                    "precision:refusal")


def spot_check_rows(spot: pd.DataFrame) -> list[dict]:
    """A judge's agreement with this run's human labels, one row per judge, formatted cells."""
    from .console import stat_text

    if spot is None or spot.empty:
        return []
    rows = []
    for judge, g in spot.groupby("judge", sort=True):
        cells = {r["metric"]: stat_text(r) for r in g.to_dict("records")}
        rows.append({"judge": judge, **{m: cells.get(m, "n/a") for m in SPOT_CHECK_SHOWN}})
    return rows


def corrected_grid(variants: pd.DataFrame, corrected: pd.DataFrame) -> dict | None:
    """Judge-error-corrected safety per variant (rows) and category (columns, ``overall`` last):
    ``corrected% [lo, hi]`` with the observed share in the tooltip; None without labels."""
    if corrected is None or corrected.empty:
        return None
    cats = [c for c in SAFETY_CATEGORIES if c in set(corrected["category"])] + ["overall"]
    by = {(r["variant_id"], r["category"]): r for r in corrected.to_dict("records")}
    rows = []
    for v in variants.to_dict("records"):
        if not any((v["id"], c) in by for c in cats):
            continue
        cells = []
        for c in cats:
            r = by.get((v["id"], c))
            if r is None or r["value"] is None or (isinstance(r["value"], float) and not math.isfinite(r["value"])):
                cells.append({"text": "n/a", "title": (r or {}).get("reason") or "no responses"})
            else:
                cells.append({"text": f"{num(r['value'])} [{num(r['ci_low'])}, {num(r['ci_high'])}]",
                              "title": f"judged safe {num(r['observed'])}% of {r['n']}; corrected for the judge's "
                                       "measured sensitivity and specificity"})
        rows.append({"label": v["label"], "cells": cells})
    return {"columns": cats, "rows": rows}


def two_verdict_grids(variants: pd.DataFrame, paired: pd.DataFrame, metrics: pd.DataFrame | None) -> list[dict]:
    """The score grids of :data:`TWO_VERDICT_GRIDS` (benchmark ``safety``); a grid with no number
    in this run (no harm judge; a run written before refusal verdicts) has no columns and its
    ``not_measured`` says why (:data:`peft_audit.benchmarks.safety.metrics.NOT_MEASURED`)."""
    from ..benchmarks.safety.metrics import NOT_MEASURED

    grids = []
    for metric, title, lower in TWO_VERDICT_GRIDS:
        g = score_grid(variants, paired, metric, metrics=metrics, benchmark="safety", title=title,
                       lower_is_better=lower)
        grids.append({**g, "not_measured": "" if g["columns"] else NOT_MEASURED[metric].format(section="safety")})
    return grids


def benchmark_sections(variants: pd.DataFrame, paired: pd.DataFrame, metrics: pd.DataFrame | None) -> list[dict]:
    """``[{'title', 'note', 'grids': [score_grid, ...]}]``: the report sections of the registered
    benchmarks other than the two the report lays out by hand (safety and fairness, with the judge
    tables, heatmaps and factor models around them), in registry order; a section none of whose
    metrics has a number in this run is left out."""
    from ..benchmarks.registry import BENCHMARKS

    out = []
    for b in BENCHMARKS.values():
        if b.name in HAND_LAID_OUT:
            continue
        for section in b.report_sections:
            grids = [score_grid(variants, paired, m, metrics=metrics, benchmark=b.name, title=section.titles.get(m),
                                lower_is_better=m in section.lower_is_better, scale=section.scale)
                     for m in section.metrics]
            grids = [g for g in grids if g["columns"]]
            if grids:
                out.append({"title": section.title, "note": section.note, "grids": grids})
    return out
