"""report.html: one self-contained file (inline CSS, JS and PNG figures; no network at view time).

Model text is never put into markup: tables go through jinja2 autoescaping, and the per-sample
browser's data is embedded as JSON in ``<script type="application/json">`` with ``<``, ``>``
and ``&`` written as ``\\u003c`` etc. (so no ``</script>`` can appear), then rendered with
``textContent``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import jinja2
import pandas as pd

from ..analysis import Analysis
from ..analysis.data import run_judges
from ..analysis.paired import CORRECTION_NAMES
from ..judges.base import MAX_RATIONALE_CHARS, cut_text
from . import plots
from .overview import overview, overview_table
from .tables import (
    FAIRNESS_SHOWN, METRIC_TITLES, benchmark_sections, cell_colour, corrected_grid, delta_matrix, heatmap_grid,
    judge_scores,
    external_validity_rows, harm_card_text, judge_validity_rows, num,
    records, score_grid, spot_check_rows, two_verdict_grids,
)

TEMPLATES = Path(__file__).parent / "templates"


def script_json(obj) -> str:
    """JSON safe to place inside a <script> element: no '<', '>' or '&' characters remain."""
    s = json.dumps(obj, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return s.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e").replace(
        "\u2028", "\\u2028").replace("\u2029", "\\u2029")


def _clean(x):
    return None if isinstance(x, float) and not math.isfinite(x) else x


def sample_browser_data(a: Analysis) -> dict:
    """Compact per-sample records: prompts stored once, verdicts grouped per (variant, prompt)."""
    f = a.frames
    variants = a.variants
    vindex = {v: i for i, v in enumerate(variants["id"])}
    samples = pd.concat([f.safety, f.over_refusal], ignore_index=True)
    prompts: dict[str, int] = {}
    prompt_texts: list[str] = []
    ver = {}
    for r in f.verdicts.itertuples(index=False):
        ver.setdefault((r.variant_id, r.prompt_id), []).append(
            [r.judge, r.label, _clean(None if r.safe is None else float(r.safe)), _clean(r.score),
             # cut again here: a store written before reasons were bounded may hold megabytes
             cut_text(r.rationale, MAX_RATIONALE_CHARS) if isinstance(r.rationale, str) else None])
    rows = []
    for r in samples.itertuples(index=False):
        if r.prompt not in prompts:
            prompts[r.prompt] = len(prompt_texts)
            prompt_texts.append(r.prompt)
        rows.append([vindex.get(r.variant_id, -1), r.benchmark, r.category, r.prompt_id, prompts[r.prompt], str(r.response),
                     r.label if isinstance(r.label, str) else "unjudged", ver.get((r.variant_id, r.prompt_id), [])])
    return {"variants": [[v.id, v.label] for v in variants.itertuples()], "prompts": prompt_texts,
            "fields": ["variant", "benchmark", "category", "prompt_id", "prompt", "response", "label", "verdicts"],
            "samples": rows}


def render_html(a: Analysis, title: str, gate=None) -> str:
    """report.html of ``a``; ``gate`` is the overview's gate result (default: evaluated here)."""
    from ..gate import gate_of_analysis
    from .mitigations import INTRO as MITIGATIONS_INTRO, mitigation_groups

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                             undefined=jinja2.StrictUndefined)
    env.filters["pts"] = lambda x: num(x, signed=True)
    env.filters["num3"] = lambda x: "n/a" if x is None or (isinstance(x, float) and not math.isfinite(x)) else (
        f"{x:.3g}" if isinstance(x, float) else str(x))
    env.filters["pct"] = lambda x: "n/a" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{100 * x:.0f}%"
    env.globals["colour"] = cell_colour
    grids = [score_grid(a.variants, a.paired, m, metrics=a.frames.metrics) for m in ("safety_score", *FAIRNESS_SHOWN)]
    heatmaps = [heatmap_grid(delta_matrix(a.variants, a.paired, m), METRIC_TITLES[m], higher_is_better=not m.startswith("bias_"))
                for m in ("safety_score",) + FAIRNESS_SHOWN]
    effects = a.factors["effects"]
    forests = []
    for outcome in ("safety_overall", "acc_disambig", "bias_ambig", "utility_heldout_loss"):
        e = effects[effects["outcome"] == outcome] if not effects.empty else effects
        nats = outcome == "utility_heldout_loss"  # a loss change in nats, not a proportion
        for model in ("method", "family"):
            em = e[e["model"] == model] if not e.empty else e
            img = plots.forest(em, f"{outcome} ~ factors ({model} model)", scale=1.0 if nats else 100.0,
                               unit="nats" if nats else "points")
            if img:
                forests.append((f"{outcome}, {model} model", img))
    an = a.factors["anova"]
    fits = a.factors["fits"]
    return env.get_template("report.html.j2").render(
        title=title,
        correction=CORRECTION_NAMES[a.correction],
        overview=overview_table(overview(a, gate)),
        findings=[f.as_dict() for f in a.findings],
        grids=grids,
        over_refusal=score_grid(a.variants, a.paired, "refusal_rate", metrics=a.frames.metrics),
        two_verdicts=two_verdict_grids(a.variants, a.paired, a.frames.metrics),
        benchmark_sections=benchmark_sections(a.variants, a.paired, a.frames.metrics),
        heatmaps=[h for h in heatmaps if h],
        forests=forests,
        anova=records(an[an["outcome"] == "safety_overall"] if not an.empty else an),
        fits=records(fits[fits["outcome"] == "safety_overall"] if not fits.empty else fits),
        spread=records(a.spread),
        base_plot=plots.base_distributions(a.table),
        scatter=plots.tradeoff_scatter(a.tradeoffs),
        utility_scatters=[img for x in ("safety_delta", "fairness_delta") if (img := plots.utility_scatter(a.tradeoffs, x))],
        correlation=a.correlation,
        pareto=records(a.tradeoffs[a.tradeoffs["pareto"]] if not a.tradeoffs.empty else a.tradeoffs),
        ranking=records(a.ranking),
        judges=records(a.judges),
        judge_scores=judge_scores(a.variants, a.frames.metrics),
        judge_validity=judge_validity_rows(a.judge_validation),
        external_validity=external_validity_rows(run_judges(a.frames.verdicts)),
        harm_card=harm_card_text(run_judges(a.frames.verdicts)),
        spot_check=spot_check_rows(a.spot_check),
        corrected=corrected_grid(a.variants, a.corrected),
        failed=records(a.variants[a.variants["status"] != "done"]),
        samples_json=script_json(sample_browser_data(a)),
        mitigations=mitigation_groups(a.variants, a.mitigations, gate_of_analysis(a) if gate is None else gate)
        if not a.mitigations.empty else [],
        mitigations_intro=MITIGATIONS_INTRO.replace("`", ""),  # Markdown code marks read as noise in HTML
    )
