"""summary.json: the machine-readable contract of a run, built from the store's metrics table.

Shape (keys marked * are the documented contract; the others add intervals and counts)::

    {"schema": 1, "run": {...},
     "variants": [{
        "id"*, "base_model"*, "method"* ("base" for the base model), "algo"*, "lr"*, "epochs"*,
        "status"*, "label" (the readable name: the config's label, else e.g. ``lora · sft · lr 1e-3 · 1 ep``;
        :func:`peft_audit.sweep.plan.variant_labels`), "base_id", "error",
        "safety"*: {"overall"*, "overall_ci": [lo, hi], "by_category"*: {key: score},
                    "ci_by_category": {key: [lo, hi]}, "n_by_category": {key: n},
                    "incoherent": n, "unscored": n (combined verdict), "by_judge": {judge: overall},
                    "unscored_share_by_judge": {judge: share} (judge refusals included),
                    "failed_share_by_judge": {judge: share} (label unscored only: what the gate bounds),
                    "judge_refused_by_judge": {judge: n}},
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
    """Rich table of variants: status, safety overall (CI), delta, each judge's unscored share,
    over-refusal, BBQ overall."""
    from rich.console import Console
    from rich.table import Table

    with open_existing(run_dir) as store:
        summary = build_summary(store)
    t = Table(title=str(run_dir))
    for col in ("variant", "id", "status", "safety (95% CI)", "Δ safety", "unscored by judge", "over-refusal",
                "BBQ acc amb/dis", "bias amb/dis"):
        t.add_column(col)

    def f(x, pct=True):
        return "–" if x is None else (f"{100 * x:.1f}" if pct else f"{x:+.3f}")

    for v in summary["variants"]:
        s = v["safety"]
        ci = s.get("overall_ci") or [None, None]
        fo = (v["fairness"] or {}).get("overall") or {}
        d = (v.get("delta_vs_base") or {}).get("safety", {}).get("overall")
        status = v["status"] if v["status"] != "failed" else f"[red]failed[/]: {(v['error'] or '')[:60]}"
        t.add_row(
            v["label"], v["id"], status,
            f"{f(s['overall'])} [{f(ci[0])}, {f(ci[1])}]" if s["overall"] is not None else "–",
            "–" if d is None else f"{100 * d:+.1f}",
            _unscored_by_judge(s),
            f((v.get("over_refusal") or {}).get("refusal_rate")),
            f"{f(fo.get('acc_ambig'))}/{f(fo.get('acc_disambig'))}",
            f"{f(fo.get('bias_ambig'), False)}/{f(fo.get('bias_disambig'), False)}",
        )
    Console().print(t)


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
