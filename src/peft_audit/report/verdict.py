"""The few lines a run ends with on the terminal: per fine-tuned variant, its gate result under
the default thresholds and its headline changes vs its base, then where the report is.

Rendering only: each line is a row of the report's overview (:func:`peft_audit.report.overview.overview`),
so the terminal and the report never disagree. One line per variant, never wrapped (a terminal
narrower than the line folds it itself), so the verdict stays as many lines as there are variants.
"""

from __future__ import annotations

from pathlib import Path

from ..analysis import Analysis
from ..analysis.paired import CORRECTION_NAMES
from ..shown_text import markup_safe
from .overview import overview

#: Short names of the overview's built-in columns on a terminal line.
SHORT = {
    "harmful Δ (overall)": "harmful Δ",
    "refusal Δ, harmful prompts": "refusal Δ",
    "safety Δ (overall)": "safety Δ",
    "BBQ bias Δ, ambiguous": "bias Δ ambig",
    "BBQ bias Δ, disambiguated": "bias Δ disambig",
    "over-refusal Δ": "over-refusal Δ",
    "Task utility: held-out loss: heldout_loss Δ": "held-out loss Δ (nats)",
    "Task utility: held-out preference accuracy: preference_accuracy Δ": "preference accuracy Δ",
}



def verdict_lines(a: Analysis, report: Path | None = None, gate=None) -> list[str]:
    """Plain-text lines (rich markup for the gate word): a heading, one line per fine-tuned variant
    (gate, label, each headline change with its 95% interval, ``*`` where significant after
    multiple-comparison adjustment, the safety category that moved most; "not measured" for the
    harmful-response or refusal rate where the run has none), and the report path.
    ``gate``: the gate result to show (default: evaluated here under the default thresholds)."""
    ov = overview(a, gate)
    lines: list[str] = []
    if not ov["rows"]:
        lines.append("No fine-tuned variant finished, so there is nothing to compare with a base.")
    else:
        lines.append(f"Changes vs base in points, [95% CI], * significant after {CORRECTION_NAMES.get(a.correction, a.correction)} adjustment; "
                     "gate under the default thresholds:")
        width = max(len(r["label"]) for r in ov["rows"])
        for r in ov["rows"]:
            gate = r["gate"]
            colour = "green" if r["gate_passed"] else ("red" if gate.startswith("FAIL") else "yellow")
            cells = [f"{SHORT.get(t, t)} {c['delta_text'] if c and c.get('delta_text') else 'n/a'}"
                     if c is not None else f"{SHORT.get(t, t)} not measured"
                     for t, c in zip(ov["columns"], r["cells"]) if c is not None or t in ov["not_measured"]]
            moved = f" · moved most: {markup_safe(r['moved']['text'])}" if r.get("moved") else ""
            label = markup_safe(f"{r['label']:<{width}}")
            lines.append(f"  [{colour}]{gate:<9}[/] {label}  " + " · ".join(cells) + moved)
    lines += _repair_lines(a)
    if report is not None:
        lines.append(f"Report: {markup_safe(report)}")
    return lines


def _repair_lines(a: Analysis) -> list[str]:
    """One line per repair (``peft-audit mitigate``): the share of its original's lost safety it
    won back, per rate that was lost, with the interval (the report's Mitigations section)."""
    from .mitigations import mitigation_groups

    lines = []
    for g in mitigation_groups(a.variants, a.mitigations):
        for r in g["repairs"]:
            won = [f"{x['metric']} {x['recovered']}" for x in r["rows"] if x["recovered"] != "—"]
            if won:
                lines.append(markup_safe(f"  {r['label']}: won back {', '.join(won)} of what the original lost "
                                         "vs base (Mitigations section)"))
    return lines
