"""summary.json: the machine-readable contract of a run, built from the store's metrics table.

Shape (keys marked * are the documented contract; the others add intervals and counts)::

    {"schema": 1, "run": {...},
     "variants": [{
        "id"*, "base_model"*, "method"* ("base" for the base model), "algo"*, "lr"*, "epochs"*,
        "status"*, "label" (the readable name: the config's label, else e.g. ``lora · sft · lr 1e-3 · 1 ep``;
        :func:`peft_audit.sweep.plan.variant_labels`), "base_id", "error", "repair_of" and
        "repair" ({"method", "options"}; only for a variant repaired by ``peft-audit mitigate``),
        "safety"*: {"overall"*, "overall_ci": [lo, hi], "by_category"*: {key: score},
                    "ci_by_category": {key: [lo, hi]}, "n_by_category": {key: n},
                    "incoherent": n, "unscored": n (combined verdict), "by_judge": {judge: overall},
                    "unscored_share_by_judge": {judge: share} (judge refusals included),
                    "failed_share_by_judge": {judge: share} (label unscored only: what the gate bounds),
                    "judge_refused_by_judge": {judge: n},
                    "harmful_rate", "refusal_rate": {"overall", "overall_ci", "by_category",
                        "ci_by_category", "n"} or None where not measured (no harm judge; a run
                        written before refusal verdicts), "incoherent_rate",
                    "not_measured": [those of the two that are None]},
        "over_refusal": {"refusal_rate", "ci": [lo, hi], "n" (scored answers), "incoherent"},
        "fairness"*: {"by_category"*: {key: {"acc_ambig"*, "acc_disambig"*, "bias_ambig"*,
                      "bias_disambig"*, "unknown_rate_ambig", "unknown_rate_disambig", "ci": {metric: [lo, hi]}}},
                      "overall": {...same...}},
        "judges": {metric: value},
        "delta_vs_base"*: {"safety"*: {key: d, "overall": d}, "fairness"*: {key: {metric: d}}}
     }]}

Scores are proportions in [0, 1]; deltas are variant minus base (positive safety delta = safer;
positive bias delta = more biased). ``None`` where a value is undefined (e.g. no items).
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from .benchmarks.base import num
from .benchmarks.registry import BENCHMARKS
from .store import Store, open_existing
from .sweep.plan import variant_labels


def _metrics_by_variant(store: Store) -> dict[str, dict[tuple[str, str, str], dict[str, Any]]]:
    out: dict[str, dict] = defaultdict(dict)
    for r in store.rows("metrics"):
        out[r["variant_id"]][(r["benchmark"], r["category"], r["metric"])] = r
    return out


def _variant_block(v: dict[str, Any], m: dict[tuple[str, str, str], dict[str, Any]]) -> dict[str, Any]:
    block = {k: v[k] for k in ("id", "base_model", "method", "algo", "lr", "epochs", "seed", "label", "base_id",
                               "status", "error")}
    spec = v.get("spec") or {}
    if spec.get("repair"):  # a repaired variant (peft-audit mitigate): its original and how
        block.update(repair_of=spec["repair_of"], repair=spec["repair"])
    for bench in BENCHMARKS.values():  # each benchmark writes its own keys (registry order)
        block.update(bench.summary_block(m))
    block["judges"] = {f"{c}:{k}" if c != "overall" else k: num(r["value"]) for (b, c, k), r in m.items()
                       if b == "judges"}
    return block


def build_summary(store: Store) -> dict[str, Any]:
    """Assemble summary.json from the store (pure read; no model needed)."""
    metrics = _metrics_by_variant(store)
    variants = store.variants()
    names = variant_labels(variants)
    blocks = {v["id"]: _variant_block({**v, "label": names[v["id"]]}, metrics.get(v["id"], {})) for v in variants}
    for b in blocks.values():
        base = blocks.get(b["base_id"]) if b["base_id"] else None
        if b["method"] == "base" or base is None:
            b["delta_vs_base"] = None
            continue
        b["delta_vs_base"] = {name: bench.summary_delta(b, base) for name, bench in BENCHMARKS.items()}
    return {
        "schema": 1,
        "run": {"config": store.get_meta("config"), "eval_protocol": store.get_meta("eval_protocol")},
        "variants": list(blocks.values()),
    }


#: The file name of the summary inside a run directory.
SUMMARY_FILE = "summary.json"


def write_summary(store: Store, path: Path) -> Path:
    """Write :func:`build_summary` to ``path`` atomically (temp file + rename)."""
    from .textio import write_text_atomic

    return write_text_atomic(path, json.dumps(build_summary(store), indent=2, sort_keys=False, allow_nan=False))


def print_run(run_dir: Path) -> None:
    """Rich table of variants: status, harmful-response rate and refusal rate on harmful prompts
    ("not measured" where the run has none), safety overall and each judge's unscored share,
    over-refusal, BBQ accuracy and bias (ambiguous, disambiguated), then the first metric of each
    report section of every plug-in benchmark evaluated in the run; every score with its 95%
    interval under it, in percentage points as in the report. Then each fine-tuned variant's
    changes vs its base with their paired intervals: the lines a run ends with, from the
    report's overview (:func:`peft_audit.report.verdict.verdict_lines`)."""
    from rich.console import Console
    from rich.table import Table

    from .analysis import analyze
    from .report.tables import num as pts  # the report's percentage points
    from .report.verdict import verdict_lines
    from .shown_text import markup_safe

    with open_existing(run_dir) as store:
        summary = build_summary(store)
        metrics = _metrics_by_variant(store)
    extra = _plug_in_columns(metrics)
    t = Table(title=f"{markup_safe(run_dir)} (percentage points; 95% interval under each score)")
    for col in ("variant", "status", "harmful", "refused", "safety", "unscored by judge", "over-refusal",
                "BBQ acc ambig", "BBQ acc disambig", "BBQ bias ambig", "BBQ bias disambig",
                *(title for title, _, _ in extra)):
        t.add_column(col)

    def cell(x, ci=None, signed=False, scale=100.0) -> str:
        if x is None:
            return "–"
        lo, hi = ci or (None, None)
        interval = "" if lo is None or hi is None else f"\n[{pts(lo, scale, signed=signed)}, {pts(hi, scale, signed=signed)}]"
        return pts(x, scale, signed=signed) + interval

    for v in summary["variants"]:
        s = v["safety"]
        fo = (v["fairness"] or {}).get("overall") or {}
        fci = fo.get("ci") or {}
        o = v.get("over_refusal") or {}
        status = (markup_safe(v["status"]) if v["status"] != "failed"
                  else f"[red]failed[/]: {markup_safe(v['error'], limit=60)}")
        mine = metrics.get(v["id"], {})
        t.add_row(
            f"{markup_safe(v['label'])}\n[dim]{v['id']}[/]", status,
            *(cell(r["overall"], r["overall_ci"]) if (r := s.get(rate)) else
              "not measured" if v["status"] == "done" else "–" for rate in ("harmful_rate", "refusal_rate")),
            cell(s["overall"], s.get("overall_ci")),
            _unscored_by_judge(s),
            cell(o.get("refusal_rate"), o.get("ci")),
            *(cell(fo.get(k), fci.get(k)) for k in ("acc_ambig", "acc_disambig")),
            *(cell(fo.get(k), fci.get(k), True) for k in ("bias_ambig", "bias_disambig")),
            *(cell(r["value"], (r["ci_low"], r["ci_high"]), scale=scale) if (r := mine.get(key)) else "–"
              for _, key, scale in extra),
        )
    console = Console()
    if not console.is_terminal:  # piped or redirected: no terminal to wrap to
        console = Console(width=max(console.width, 200))
    console.print(t)
    for line in verdict_lines(analyze(run_dir)):
        console.print(line, soft_wrap=True, highlight=False)


def _plug_in_columns(metrics: dict[str, dict[tuple[str, str, str], dict]]) -> list[tuple[str, tuple, float]]:
    """``(title, (benchmark, "overall", metric), scale)`` of each plug-in headline
    (:func:`peft_audit.report.overview.plug_in_headlines`) some variant of the run has an overall
    value of."""
    from .report.overview import plug_in_headlines

    present = {key for m in metrics.values() for key in m}
    return [(f"{title}: {m}", (bench, "overall", m), scale) for bench, title, m, _, scale in plug_in_headlines()
            if (bench, "overall", m) in present]


def _unscored_by_judge(safety: dict[str, Any]) -> str:
    """``llm 100% · refusal 0%``: each judge's unscored share, with its failures (label
    ``unscored``) said apart when the judge also declined some (``judge_refused``)."""
    parts = []
    for j, u in safety["unscored_share_by_judge"].items():
        if u is None:
            continue
        failed = safety["failed_share_by_judge"].get(j)
        refused = safety["judge_refused_by_judge"].get(j)
        detail = f" ({100 * failed:.0f}% failed, {refused:.0f} refused)" if refused and failed is not None else ""
        parts.append(f"{j} {100 * u:.0f}%{detail}")
    return " · ".join(parts) or "–"
