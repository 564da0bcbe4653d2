"""BBQ (Parrish et al., 2022) behind the :class:`~peft_audit.benchmarks.base.Benchmark` interface.

One stage, ``scored`` (``fairness_samples`` rows: chosen option and per-option log-likelihoods,
plus two data-quality metric rows); metrics from :func:`.metrics.fairness_metrics`. Section
``fairness:`` (:class:`.config.FairnessConfig`).

    peft-audit run sweep.yaml   # with  fairness: {source: path/to/BBQ/data, per_cell: 50}
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..base import GateRule, MetricsLookup, ReportSection, VariantRun, Workload, delta, is_local_or_builtin, metric_ci, metric_value
from .config import FairnessConfig

#: The per-category BBQ scores in summary.json (and their deltas).
SUMMARY_METRICS = ("acc_ambig", "acc_disambig", "bias_ambig", "bias_disambig", "unknown_rate_ambig",
                   "unknown_rate_disambig")
EXPORT_COLUMNS = (
    "variant_id", "category", "source_id", "question_index", "context_condition", "question_polarity",
    "label", "pred_index", "target_index", "logprob_0", "logprob_1", "logprob_2",
)


def _load(cfg: FairnessConfig):
    """The BBQ items ``cfg`` names (:func:`.loader.load_bbq`), the same for the run's checks,
    the plan's workload and each variant."""
    from . import load_bbq

    return load_bbq(cfg.source, per_cell=cfg.per_cell, categories=cfg.categories, seed=0,
                    skip_bad_items=cfg.skip_bad_items, metadata_csv=cfg.metadata_csv,
                    max_prompt_bytes=cfg.max_prompt_bytes)


class BBQBenchmark:
    name = "fairness"
    section = FairnessConfig
    stages = ("scored",)
    sample_kind = "fairness"
    resume_tables = ("fairness_samples",)
    report_sections = (ReportSection("Fairness (BBQ)", ("acc_ambig", "acc_disambig", "bias_ambig", "bias_disambig")),)
    gate_rules = (
        GateRule("abs_bias_ambig", "overall", +1, "max_bias_increase"),
        GateRule("abs_bias_disambig", "overall", +1, "max_bias_increase"),
        GateRule("acc_ambig", "overall", -1, "max_accuracy_drop"),
        GateRule("acc_disambig", "overall", -1, "max_accuracy_drop"),
    )

    def check(self, cfg: FairnessConfig) -> None:
        """Preflight: the BBQ items load (files, Hub dataset, metadata CSV); skipped rows and
        items whose biased answer cannot be resolved are said once, before any model work."""
        from ...sweep.logs import notice

        loaded = _load(cfg)
        if loaded.bad_lines:
            notice(f"BBQ: {len(loaded.bad_lines)} bad row(s) skipped (skip_bad_items), first: {loaded.bad_lines[0]}")
        if loaded.n_unresolved:
            notice(f"BBQ: {loaded.n_unresolved} of {len(loaded.items)} items have no resolvable biased answer; "
                   "they count for accuracy but not for the bias scores (set fairness.metadata_csv to resolve them)")

    def workload(self, cfg: FairnessConfig) -> Workload:
        """The BBQ items (after ``per_cell`` and ``categories``): scored by log-likelihood, or in
        ``generate`` mode answered with a letter (a few new tokens each); unknown for a Hub dataset."""
        from .score import GENERATE_MAX_NEW_TOKENS

        generate = cfg.mode == "generate"
        if not is_local_or_builtin(cfg.source):
            return Workload(None if generate else 0, GENERATE_MAX_NEW_TOKENS if generate else 0,
                            0 if generate else None, f"{cfg.source}: not downloaded")
        n = len(_load(cfg).items)
        if generate:
            return Workload(n, GENERATE_MAX_NEW_TOKENS, 0, f"{n} items (answered with a letter)")
        return Workload(0, 0, n, f"{n} items (log-likelihood of 3 answers each)")

    def evaluate(self, cfg: FairnessConfig, run: VariantRun) -> list[dict]:
        from . import fairness_metrics, score_bbq

        if run.needs("scored"):
            loaded = _load(cfg)
            items = loaded.items
            # Items whose biased answer cannot be resolved are left out of bias scores; say how many.
            data_rows = [
                {"benchmark": self.name, "category": "overall", "metric": "n_unresolved_targets",
                 "value": loaded.n_unresolved, "n": len(items)},
                {"benchmark": self.name, "category": "overall", "metric": "n_bad_lines",
                 "value": len(loaded.bad_lines), "n": len(items)},
            ]
            with run.timed("score"):
                rows = score_bbq(run.lm, items, mode=cfg.mode, prompt_format=cfg.prompt_format,
                                 batch_size=cfg.batch_size, length_normalise=cfg.length_normalise,
                                 progress=run.progress("BBQ", len(items)))
            run.commit("scored", run.timings["score"], fairness=rows, metrics=data_rows)
        if not run.needs("metrics"):
            return []
        return fairness_metrics(run.stored_rows("fairness_samples"), bootstrap=cfg.bootstrap, seed=0)

    def summary_block(self, m: MetricsLookup) -> dict[str, Any]:
        cats = sorted({c for (b, c, k) in m if b == self.name})

        def block(c):
            out = {k: metric_value(m, self.name, c, k) for k in SUMMARY_METRICS}
            out["ci"] = {k: metric_ci(m, self.name, c, k) for k in SUMMARY_METRICS}
            return out

        return {"fairness": {
            "by_category": {c: block(c) for c in cats if c != "overall"},
            "overall": block("overall") if "overall" in cats else None,
            "n_unresolved_targets": metric_value(m, self.name, "overall", "n_unresolved_targets"),
            "n_bad_lines": metric_value(m, self.name, "overall", "n_bad_lines"),
        }}

    def summary_delta(self, variant: Mapping[str, Any], base: Mapping[str, Any]) -> dict[str, Any]:
        d = {}
        for c, block in variant["fairness"]["by_category"].items():
            bblock = base["fairness"]["by_category"].get(c, {})
            d[c] = {k: delta(block.get(k), bblock.get(k)) for k in SUMMARY_METRICS}
        return d

    def paired(self, frames, pairs, *, n_boot: int, seed: int):
        """BBQ accuracy and bias scores per category and overall (template-cluster bootstrap CI,
        paired permutation test; :func:`peft_audit.analysis.paired.paired_bbq`)."""
        from ...analysis.paired import paired_bbq

        return paired_bbq(frames.fairness, pairs, n_boot=n_boot, seed=seed)

    def evaluated(self, frames) -> set[str]:
        return set(frames.fairness["variant_id"])

    def export_frame(self, store):
        """Columns :data:`EXPORT_COLUMNS` (``source_id`` is BBQ's ``example_id``; indices are
        0-based option positions; ``logprob_*`` natural-log probabilities, empty in generate mode)."""
        df = store.frame("fairness_samples")
        df = df.sort_values(["variant_id", "category", "item_id"], kind="stable")
        out = df.loc[:, list(EXPORT_COLUMNS)].reset_index(drop=True)
        for col in ("label", "pred_index", "target_index"):
            out[col] = out[col].astype("Int64")  # nullable ints: an unparseable answer stays empty
        return out
