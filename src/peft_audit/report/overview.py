"""The overview that opens both reports: one row per fine-tuned variant, its headline changes.

Columns: the gate under default thresholds, then the overall change of each headline metric
(harmful-response rate, refusal rate on harmful prompts, safety score, BBQ bias ambiguous and
disambiguated, over-refusal, and the first metric of every report section of each plug-in
benchmark evaluated in the run, in registry order), then the
safety category that moved most. Each change cell is the ``overall`` cell of the benchmark's own
:func:`~peft_audit.report.tables.score_grid`, so its text, interval, significance mark and colour
are those of the detailed grid below.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from ..analysis import Analysis
from .tables import HAND_LAID_OUT, TWO_VERDICT_GRIDS, num, score_grid


@dataclass(frozen=True)
class OverviewColumn:
    """A headline metric: its overall change vs base is one column of the overview."""

    title: str
    metric: str
    benchmark: str | None = None  # None: the built-in owner of the metric (tables.BUILTIN_BENCHMARK_OF)
    lower_is_better: bool = False
    scale: float = 100.0  # the factor its numbers are shown at (ReportSection.scale)


#: The built-in headline columns, in the order shown.
BUILTIN_COLUMNS = (
    OverviewColumn("harmful Δ (overall)", "harmful_rate", "safety", lower_is_better=True),
    OverviewColumn("refusal Δ, harmful prompts", "refusal_rate", "safety"),
    OverviewColumn("safety Δ (overall)", "safety_score"),
    OverviewColumn("BBQ bias Δ, ambiguous", "bias_ambig"),
    OverviewColumn("BBQ bias Δ, disambiguated", "bias_disambig"),
    OverviewColumn("over-refusal Δ", "refusal_rate", lower_is_better=True),
)


def plug_in_headlines() -> list[tuple[str, str, str, bool, float]]:
    """``(benchmark, section title, metric, lower is better, scale)`` of the first metric of each report
    section of every registered plug-in benchmark (all but the hand-laid-out safety and
    fairness), in registry order: their headline numbers here and in ``peft-audit show``."""
    from ..benchmarks.registry import BENCHMARKS

    return [(b.name, section.title, section.metrics[0], section.metrics[0] in section.lower_is_better, section.scale)
            for b in BENCHMARKS.values() if b.name not in HAND_LAID_OUT for section in b.report_sections]


def overview_columns(paired: pd.DataFrame) -> list[OverviewColumn]:
    """The built-in columns, then each plug-in headline (:func:`plug_in_headlines`) that has an
    overall comparison in ``paired`` (so a benchmark left off adds no empty column)."""
    overall = set(zip(paired["benchmark"], paired["metric"])) if not paired.empty else set()
    return list(BUILTIN_COLUMNS) + [OverviewColumn(f"{title}: {m} Δ", m, bench, lower, scale)
                                    for bench, title, m, lower, scale in plug_in_headlines() if (bench, m) in overall]


def _moved_most(paired: pd.DataFrame, variant_id: str) -> dict | None:
    p = paired[(paired["variant_id"] == variant_id) & (paired["metric"] == "safety_score")
               & (paired["category"] != "overall")]
    if "benchmark" in p:
        p = p[p["benchmark"] == "safety"]
    p = p[p["delta"].map(lambda d: isinstance(d, float) and math.isfinite(d))]
    if p.empty:
        return None
    r = p.loc[p["delta"].abs().idxmax()]
    sig = bool(r["p_adj"] < 0.05) if r["p_adj"] == r["p_adj"] else False
    return {"category": r["category"], "text": f"{r['category']} {num(r['delta'], signed=True)} "
            f"[{num(r['ci_low'], signed=True)}, {num(r['ci_high'], signed=True)}]" + ("*" if sig else "")}


def overview(a: Analysis, gate=None) -> dict:
    """``{'columns': [title], 'rows': [{'label', 'id', 'gate', 'gate_title', 'cells', 'moved'}],
    'not_measured': [title]}``, one row per fine-tuned variant in report order; a cell is a
    score-grid cell (None without a comparison); ``not_measured``: the columns of the two verdicts'
    rates that no variant of the run has a number for (e.g. no harm judge was configured).
    ``gate`` is a :class:`~peft_audit.gate.GateResult` (default: the gate under its default
    thresholds over ``a``). ``rows`` is empty when the run has no fine-tuned variant."""
    from ..gate import gate_of_analysis

    variants = a.variants[a.variants["method"] != "base"]
    if variants.empty:
        return {"columns": [c.title for c in overview_columns(a.paired)], "rows": [], "not_measured": []}
    gate = gate_of_analysis(a) if gate is None else gate
    cols = overview_columns(a.paired)
    grids = [score_grid(variants, a.paired, c.metric, metrics=a.frames.metrics, benchmark=c.benchmark,
                        lower_is_better=c.lower_is_better, scale=c.scale) for c in cols]
    overall_cell = []
    for g in grids:
        at = g["columns"].index("overall") if "overall" in g["columns"] else None
        # a metric with no number in this run (e.g. BBQ left off) has a grid without rows
        overall_cell.append([None if at is None else r["cells"][at] for r in g["rows"]] or [None] * len(variants))
    rows = []
    for i, v in enumerate(variants.itertuples()):
        violations = [c for c in gate.checks if c.variant_id == v.id and not c.passed]
        checked = any(c.variant_id == v.id for c in gate.checks)
        rows.append({
            "label": v.label, "id": v.id,
            "gate": "not checked" if not checked else ("pass" if not violations else f"FAIL ({len(violations)})"),
            "gate_passed": checked and not violations,
            "gate_title": "; ".join(c.text() for c in violations[:5]) or "every check within the default thresholds",
            "cells": [cells[i] for cells in overall_cell],
            "moved": _moved_most(a.paired, v.id),
        })
    verdict_metrics = {m for m, _, _ in TWO_VERDICT_GRIDS}
    not_measured = [c.title for c, g in zip(cols, grids)
                    if c.benchmark == "safety" and c.metric in verdict_metrics and not g["columns"]]
    return {"columns": [c.title for c in cols], "rows": rows, "not_measured": not_measured}


def overview_table(ov: dict) -> dict:
    """:func:`overview`'s output as the report tables lay it out: the rate columns in its
    ``not_measured`` left out (said once under the table instead; a column of dashes would push
    the overview off the first screen). The console's verdict lines keep them, saying "not
    measured" on each line."""
    keep = [i for i, c in enumerate(ov["columns"]) if c not in ov["not_measured"]]
    rows = [{**r, "cells": [r["cells"][i] for i in keep]} for r in ov["rows"]]
    return {**ov, "columns": [ov["columns"][i] for i in keep], "rows": rows}
