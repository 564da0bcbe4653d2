"""The task-utility benchmark behind the :class:`~peft_audit.benchmarks.base.Benchmark` interface.

Stage ``utility.scored`` (one sample row per held-out row: its log-likelihoods); metrics from
:func:`.metrics.utility_metrics`, the paired comparison from :func:`.metrics.paired_utility`.
Section ``utility:`` (:class:`.config.UtilityConfig`). See the package docstring for the definitions.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..base import GateRule, MetricsLookup, ReportSection, VariantRun, Workload, metric_ci, metric_value
from .config import NAME, UtilityConfig
from .metrics import LOSS, PERPLEXITY, PREFERENCE_ACCURACY

SCORED = f"{NAME}.scored"
EXPORT_COLUMNS = ("variant_id", "sample_id", "category", "algo", "loss", "n_tokens", "logp", "logp_chosen",
                  "logp_rejected", "n_tokens_chosen", "n_tokens_rejected")


class UtilityBenchmark:
    name = NAME
    section = UtilityConfig
    stages = (SCORED,)
    sample_kind = NAME
    resume_tables = ("samples",)
    #: its items are each variant's own held-out rows: a variant without them (an adapter trained
    #: elsewhere, no task file) is "not measured" in the gate, not "evaluated nothing"
    items_per_variant = True
    report_sections = (
        ReportSection("Task utility: held-out loss", (LOSS, PERPLEXITY),
                      titles={LOSS: "Held-out loss, nats per response token, per task (lower is better)",
                              PERPLEXITY: "Held-out perplexity, per task (lower is better)"},
                      lower_is_better=frozenset({LOSS, PERPLEXITY}), scale=1.0,
                      note="How well each variant does the task its training data teaches: the mean token "
                           "negative log-likelihood of the responses of rows of that data it never trained on "
                           "(training.heldout_fraction, chosen by a hash of each row), teacher-forced after the "
                           "chat-formatted prompt, compared with its base on the same rows (paired bootstrap "
                           "interval). A repair that lowers harm but raises this loss costs task quality. A "
                           "variant without a number was not measured: an audited adapter without "
                           "utility.task_file, or an adapter trained before held-out splits."),
        ReportSection("Task utility: held-out preference accuracy", (PREFERENCE_ACCURACY,),
                      titles={PREFERENCE_ACCURACY: "Preference accuracy on held-out pairs, per task"},
                      note="DPO variants: the share of held-out preference pairs where the variant's implicit "
                           "reward margin over its base is positive (Rafailov et al. 2023; TRL's "
                           "rewards/accuracies); for the base, the share where it finds the chosen answer more "
                           "likely than the rejected one."),
    )
    #: lenient by default: a variant whose held-out loss rose by more than 0.5 nats (perplexity x1.65)
    #: has lost much of its task; a repair that costs less passes (``--limit utility.max_loss_increase=``)
    gate_rules = (GateRule(LOSS, "overall", +1, f"{NAME}.max_loss_increase", default=0.5, unit="nats"),)

    def check(self, cfg: UtilityConfig) -> None:
        """Preflight: a task file, if given, loads."""
        from .tasks import task_file_rows

        if cfg.task_file:
            task_file_rows(cfg.task_file)

    def workload(self, cfg: UtilityConfig) -> Workload:
        """Nothing counted: each trained variant scores its data's held-out rows (about 20, by
        log-likelihood, one pass each; its base the union), a few seconds next to its generation
        (23 s of the quickstart's 1,495 s), and the rows depend on each variant's training data."""
        return Workload(0, 0, 0, "held-out rows of each trained variant's own data (training.heldout_fraction), "
                                 "scored once by log-likelihood; small, not counted")

    def evaluate(self, cfg: UtilityConfig, run: VariantRun) -> list[dict]:
        from .metrics import utility_metrics
        from .score import score_rows
        from .tasks import variant_rows

        if run.needs(SCORED):
            is_base = run.adapter_path is None
            rows, reason = variant_rows(cfg, run.trained_on, run.adapter_path, is_base)
            if reason:
                from ...sweep.logs import notice

                notice(f"utility not measured for variant {run.variant_id}: {reason}")
            with run.timed("utility"):
                samples = score_rows(run.lm, rows, batch_size=cfg.batch_size,
                                     progress=run.progress("utility", len(rows)) if rows else None)
            run.commit(SCORED, run.timings.get("utility", 0.0), samples=samples)
        if not run.needs("metrics"):
            return []
        return utility_metrics(run.stored_samples(NAME))

    def summary_block(self, m: MetricsLookup) -> dict[str, Any]:
        """``{"utility": block or None}`` (None: not measured), block: ``heldout_loss``,
        ``perplexity``, ``preference_accuracy`` (None without rows of that kind), each with its
        ``<metric>_ci`` and ``<metric>_n``, and ``by_task``: the same values per task. Overall =
        every held-out row pooled; a base model's rows are the union of its variants' tasks."""
        metrics = (LOSS, PERPLEXITY, PREFERENCE_ACCURACY)
        cats = sorted({c for (b, c, k) in m if b == NAME and c != "overall"})
        if not cats:
            return {NAME: None}

        def values(category: str) -> dict[str, Any]:
            out: dict[str, Any] = {}
            for k in metrics:
                out[k] = metric_value(m, NAME, category, k)
                out[f"{k}_ci"] = metric_ci(m, NAME, category, k)
                out[f"{k}_n"] = (m.get((NAME, category, k)) or {}).get("n")
            return out

        return {NAME: {**values("overall"), "by_task": {c: values(c) for c in cats}}}

    def summary_delta(self, variant: Mapping[str, Any], base: Mapping[str, Any]) -> None:
        """None: a base model is scored on the union of its variants' tasks, so the difference of
        two summary blocks would compare different rows; the paired comparison (``peft-audit
        analyze``, the report) compares them on the same rows."""
        return None

    def paired(self, frames, pairs, *, n_boot: int, seed: int):
        """:func:`.metrics.paired_utility` on the run's utility items."""
        from .metrics import paired_utility

        return paired_utility(frames.items(NAME), pairs, n_boot=n_boot, seed=seed)

    def evaluated(self, frames) -> set[str]:
        """The fine-tuned variants with utility rows. Base models are left out: a base is scored on
        its variants' held-out rows, so an audited adapter without a task file lacks rows its base
        has by design, which is "not measured", not a failed evaluation."""
        items = frames.items(NAME)
        if items.empty:
            return set()
        bases = set(frames.variants.loc[frames.variants["method"] == "base", "id"])
        return set(items["variant_id"]) - bases

    def export_frame(self, store):
        """One row per (variant, held-out row): :data:`EXPORT_COLUMNS`."""
        import pandas as pd

        df = pd.DataFrame(store.samples(NAME))
        return df.reindex(columns=list(EXPORT_COLUMNS)).sort_values(["variant_id", "category", "sample_id"],
                                                                    kind="stable").reset_index(drop=True)
