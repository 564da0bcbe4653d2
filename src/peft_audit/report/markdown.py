"""report.md: the overview (one row per variant) first, then the findings, then one table per benchmark metric, then the sweep analysis."""

from __future__ import annotations

import math

import pandas as pd

from ..analysis import Analysis
from ..analysis.data import run_judges
from ..analysis.paired import CORRECTION_NAMES
from ..shown_text import md_text
from .overview import overview, overview_table
from .tables import (
    FAIRNESS_SHOWN, benchmark_sections, corrected_grid, external_validity_rows, judge_scores, judge_validity_rows, num,
    harm_card_text, score_grid, spot_check_rows, two_verdict_grids,
)


def _grid_md(grid: dict) -> list[str]:
    if not grid["rows"]:
        return [f"_No data for {grid['title']}._", ""]
    out = ["| variant | " + " | ".join(map(md_text, grid["columns"])) + " |", "|---" * (len(grid["columns"]) + 1) + "|"]
    for r in grid["rows"]:
        cells = [("—" if c is None else f"{c['text']} ({c['delta_text']})" if c["delta_text"] != "base" else f"{c['text']} (base)")
                 + (f"; {c['unscored_text']}" if c and c.get("unscored_text") else "") for c in r["cells"]]
        out.append(f"| {md_text(r['label'])} | " + " | ".join(cells) + " |")
    return out + [""]


def _judge_scores_md(variants: pd.DataFrame, metrics: pd.DataFrame | None) -> list[str]:
    rows = judge_scores(variants, metrics)
    if not rows:
        return []
    L = ["### Safety score per judge (overall)", "",
         "Unscored: share of responses the judge did not score (failed requests, unparseable answers, and the "
         "judge's own refusals to rate, counted under 'judge refused'); they are left out of the score, never "
         "counted safe. Rubric 5s: share scored 5 on this project's 1-5 rubric (analogous to Qi et al.'s "
         "harmfulness rate, not the same rubric).", "",
         "| variant | judge | safety score | 95% CI | n scored | unscored | judge refused | rubric 5s |",
         "|---" * 8 + "|"]
    L += [f"| {md_text(r['label'])} | {md_text(r['judge'])} | {r['score']} | {r['ci']} | {r['n']} | {r['unscored']} | "
          f"{r['judge_refused']} | {r['rubric_5s']} |" for r in rows]
    return L + [""]


def _judge_validity_md(a: Analysis) -> list[str]:
    L = ["## How far the judges can be trusted", ""]
    rows = judge_validity_rows(a.judge_validation)
    if rows:
        L += ["Measured against hand-labelled responses (the held-out test part of the judge's labelled set, "
              "`judges/data/labelled_responses.jsonl`; value [95% interval] (k/n)):", "",
              "| judge | responses | refusal recall | refusal precision | safe/unsafe agreement | incoherent judged safe |",
              "|---" * 6 + "|"]
        L += [f"| {md_text(r['judge'])} | {r['part']} | {r['recall:refusal']} | {r['precision:refusal']} | "
              f"{r['safe_agreement']} | {r['incoherent_labelled_safe']} |" for r in rows]
        L += [""]
    else:
        L += ["No judge of this run has published agreement figures with human labels; treat its scores as "
              "unvalidated, or label a sample with `peft-audit label`.", ""]
    ext = external_validity_rows(run_judges(a.frames.verdicts))
    if ext["rows"]:
        L += ["Measured on sets written and labelled by others (`judges/data/external_validation.json`, "
              "`python -m peft_audit.judges.external`): safe/unsafe agreement with the human labels [95% interval], "
              "Cohen's κ [95% interval], n; (proxy): a refusal judge read against safe/unsafe labels as refusal ⇒ "
              "safe, compliance ⇒ unsafe. References as published by Röttger et al. 2024 (XSTest) and Mazeika et "
              "al. 2024 (HarmBench).", "",
              "| judge | " + " | ".join(ext["columns"]) + " |", "|---" * (len(ext["columns"]) + 1) + "|"]
        L += ["| " + md_text(r["name"]) + " | " + " | ".join(r["cells"]) + " |" for r in ext["rows"]] + [""]
    harm_card = harm_card_text(run_judges(a.frames.verdicts))
    if harm_card:
        L += [md_text(harm_card), ""]
    spot = spot_check_rows(a.spot_check)
    if not spot:
        L += ["No human spot-check of this run yet: `peft-audit label RUN_DIR --n 40` draws a random sample to "
              "label, after which this section shows each judge's measured errors on this run and a safety score "
              "corrected for them.", ""]
        return L
    L += ["### Human spot-check of this run", "", "Each judge against the labels in `human_labels.csv` "
          "(value [95% interval] (k/n)):", "",
          "| judge | safe/unsafe agreement | kappa (safe/unsafe) | truly safe judged safe | truly unsafe judged unsafe "
          "| refusal recall | refusal precision |", "|---" * 7 + "|"]
    L += [f"| {md_text(r['judge'])} | {r['safe_agreement']} | {r['kappa_safe']} | {r['sensitivity_safe']} | "
          f"{r['specificity_safe']} | {r['recall:refusal']} | {r['precision:refusal']} |" for r in spot]
    g = corrected_grid(a.variants, a.corrected)
    if g:
        L += ["", "Safety corrected for the headline judge's measured errors (Rogan & Gladen 1978; 95% interval by the "
              "delta method of Greenland 1988, carrying the uncertainty of the judge's error rates). Assumes the judge "
              "errs alike in every variant and category, since its error rates are estimated from all labels of the run.",
              "", "| variant | " + " | ".join(map(md_text, g["columns"])) + " |", "|---" * (len(g["columns"]) + 1) + "|"]
        L += ["| " + md_text(r["label"]) + " | " + " | ".join(c["text"] for c in r["cells"]) + " |" for r in g["rows"]]
    return L + [""]


def _table(df: pd.DataFrame, cols: list[tuple[str, str, str]]) -> list[str]:
    """cols: (column, header, kind) with kind in {'text', 'pts', 'num', 'p', 'pct'}."""
    if df is None or df.empty:
        return ["_None._", ""]
    out = ["| " + " | ".join(h for _, h, _ in cols) + " |", "|---" * len(cols) + "|"]
    for r in df.to_dict("records"):
        vals = []
        for c, _, kind in cols:
            v = r.get(c)
            if kind == "text":
                vals.append(md_text(v))
            elif v is None or (isinstance(v, float) and not math.isfinite(v)):
                vals.append("n/a")
            elif kind == "pts":
                vals.append(num(v, signed=True))
            elif kind == "pct":
                vals.append(f"{100 * v:.0f}%")
            elif kind == "p":
                vals.append(f"{v:.3g}")
            else:
                vals.append(f"{v:.3g}" if isinstance(v, float) else str(v))
        out.append("| " + " | ".join(vals) + " |")
    return out + [""]


def _overview_md(ov: dict) -> list[str]:
    ov = overview_table(ov)
    L = ["## Overview", ""]
    if not ov["rows"]:
        return L + ["_No fine-tuned variant in this run: nothing is compared with a base model._", ""]
    L += ["Change vs base in points [95% paired bootstrap CI], `*` = significant after adjustment; gate: "
          "`peft-audit gate` under its default thresholds.", "",
          "| variant | gate | " + " | ".join(md_text(c) for c in ov["columns"]) + " | safety category that moved most | id |",
          "|---" * (len(ov["columns"]) + 4) + "|"]
    for r in ov["rows"]:
        cells = ["—" if c is None else c["delta_text"] for c in r["cells"]]
        moved = md_text(r["moved"]["text"]) if r["moved"] else "—"
        L.append(f"| {md_text(r['label'])} | {r['gate']} | " + " | ".join(cells) + f" | {moved} | `{r['id']}` |")
    if ov["not_measured"]:
        L += ["", f"Not measured in this run: {md_text(', '.join(ov['not_measured']))} (see the Safety section)."]
    return L + [""]


def _mitigations_md(a: Analysis, gate=None) -> list[str]:
    """The Mitigations section (only in a run with repairs)."""
    from ..gate import gate_of_analysis
    from .mitigations import INTRO, mitigation_groups

    if a.mitigations.empty:
        return []
    L = ["## Mitigations", "", INTRO, ""]
    for g in mitigation_groups(a.variants, a.mitigations, gate_of_analysis(a) if gate is None else gate):
        L += [f"### Repairs of {md_text(g['original'])} (`{g['original_id']}`)", ""]
        for r in g["repairs"]:
            L += [f"**{md_text(r['label'])}** (`{r['id']}`): repaired from `{g['original_id']}` by {md_text(r['how'])}; "
                  f"gate: {r['gate']}", "",
                  "| metric | value | Δ vs original | Δ vs base | recovered |", "|---|---|---|---|---|"]
            L += [f"| {x['metric']} | {x['value']} | {x['vs_original']} | {x['vs_base']} | {x['recovered']} |"
                  for x in r["rows"]]
            L += [""]
    return L


def render_markdown(a: Analysis, title: str, gate=None) -> str:
    """report.md of ``a``; ``gate`` is the overview's gate result (default: evaluated here)."""
    corr_name = CORRECTION_NAMES[a.correction]
    L = [f"# peft-audit report: {md_text(title)}", ""] + _overview_md(overview(a, gate)) + ["## Findings", ""]
    L += [f"- {md_text(f.text)}" + ("" if f.enough else " _(sweep too small for a firm claim)_") for f in a.findings]
    L += ["", "Cells: score in % (change vs base in points [95% paired bootstrap CI]); `*` = significant after "
          f"{corr_name} adjustment (categories: across the categories of a variant, exact McNemar for safety; "
          "overall: across variants, safety overall = mean over categories with a stratified permutation test; "
          "BBQ: paired permutation test).", ""]
    L += ["## Safety", ""]
    for g in two_verdict_grids(a.variants, a.paired, a.frames.metrics):
        L += [f"### {md_text(g['title'])}", ""]
        L += _grid_md(g) if g["columns"] else [f"_Not measured: {md_text(g['not_measured'])}._", ""]
    L += ["### The combined verdict's safety score (all judges together)", ""]
    L += _grid_md(score_grid(a.variants, a.paired, "safety_score", metrics=a.frames.metrics))
    L += _judge_scores_md(a.variants, a.frames.metrics)
    L += _judge_validity_md(a)
    L += ["## Fairness (BBQ)", ""]
    for m in FAIRNESS_SHOWN:
        g = score_grid(a.variants, a.paired, m, metrics=a.frames.metrics)
        L += [f"### {md_text(g['title'])}", ""] + _grid_md(g)
    L += ["## Over-refusal", ""] + _grid_md(score_grid(a.variants, a.paired, "refusal_rate", metrics=a.frames.metrics))
    for section in benchmark_sections(a.variants, a.paired, a.frames.metrics):
        L += [f"## {md_text(section['title'])}", ""] + ([md_text(section["note"]), ""] if section["note"] else [])
        for g in section["grids"]:
            L += [f"### {md_text(g['title'])}", ""] + _grid_md(g)
    L += _mitigations_md(a, gate)
    L += ["## What matters: factor effects on overall safety change", ""]
    e = a.factors["effects"]
    e = e[e["outcome"] == "safety_overall"] if not e.empty else e
    L += _table(e, [("model", "model", "text"), ("term", "term", "text"), ("estimate", "effect (pts)", "pts"),
                    ("ci_low", "CI low", "pts"), ("ci_high", "CI high", "pts"), ("p_value", "p", "p")])
    an = a.factors["anova"]
    an = an[(an["outcome"] == "safety_overall")] if not an.empty else an
    L += ["### Variance decomposition (type-II sums of squares, share of total)", ""]
    L += _table(an, [("model", "model", "text"), ("factor", "factor", "text"), ("share", "share", "pct"), ("p_value", "p", "p")])
    fits = a.factors["fits"]
    notes = fits[(fits["outcome"] == "safety_overall")] if not fits.empty else fits
    L += [f"- {r.model} model: {r.status}, n={r.n}. {md_text(r.notes)}" for r in notes.itertuples()] + [""]
    L += ["### Spread of overall safety change per base model", ""]
    L += _table(a.spread, [("base_model", "base model", "text"), ("n", "n", "num"), ("mean", "mean", "pts"),
                           ("median", "median", "pts"), ("sd", "sd (pts)", "pts"), ("sd_ci_low", "sd CI low", "pts"),
                           ("sd_ci_high", "sd CI high", "pts")])
    L += ["## Trade-offs", ""]
    c = a.correlation
    L += [f"Spearman rho (overall safety change vs fall in |BBQ ambiguous bias|) = {num(c['rho'], 1, '{:.2f}')} "
          f"(95% CI {num(c['ci_low'], 1, '{:.2f}')} to {num(c['ci_high'], 1, '{:.2f}')}; p = {num(c['p_value'], 1, '{:.3g}')}; "
          f"n = {c['n']}).", ""]
    t = a.tradeoffs
    L += ["Pareto front (no variant is better on both safety and fairness):", ""]
    L += _table(t[t["pareto"]] if not t.empty else t, [("label", "variant", "text"), ("safety_delta", "safety Δ", "pts"),
                                                        ("fairness_delta", "fairness Δ", "pts")])
    if not t.empty and t["utility_delta"].notna().any():
        L += ["Task utility beside them (held-out loss change vs base, nats; lower = better at its task):", ""]
        L += [f"- {r.label}: safety Δ {num(r.safety_delta, signed=True)}, fairness Δ {num(r.fairness_delta, signed=True)}, "
              f"held-out loss Δ {num(r.utility_delta, 1, signed=True)}" for r in t.itertuples()
              if r.utility_delta == r.utility_delta]
        L += [""]
    L += ["### Safety categories ranked by mean change", ""]
    L += _table(a.ranking, [("category", "category", "text"), ("n_variants", "variants", "num"),
                            ("mean_delta", "mean Δ (pts)", "pts"), ("ci_low", "CI low", "pts"), ("ci_high", "CI high", "pts"),
                            ("n_significant_drops", "significant drops", "num")])
    L += ["## Judge agreement", ""]
    L += _table(a.judges, [("category", "judges", "text"), ("metric", "metric", "text"), ("n_variants", "variants", "num"),
                           ("mean", "mean", "num"), ("min", "min", "num"), ("max", "max", "num")])
    bad = a.variants[a.variants["status"] != "done"]
    L += ["## Failed or unfinished variants", ""]
    L += _table(bad, [("label", "variant", "text"), ("id", "id", "text"), ("status", "status", "text"), ("error", "error", "text")])
    return "\n".join(L) + "\n"
