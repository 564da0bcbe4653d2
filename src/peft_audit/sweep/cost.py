"""What a sweep will cost, estimated from the config alone (no model is loaded).

Units: optimizer steps per trained variant, and per evaluated variant each enabled benchmark's
:class:`~peft_audit.benchmarks.base.Workload` (prompts answered by generation up to
``max_new_tokens``, items scored by log-likelihood), which the benchmark counts itself
(``Benchmark.workload``), so a plug-in benchmark is counted like the built-in ones. Steps follow
the trainers' own rule: ``max_steps`` when set, otherwise
``epochs * ceil(examples / (batch_size * grad_accum))`` (Hugging Face ``Trainer``: one optimizer
step per ``batch_size * grad_accum`` examples, the last partial batch included). Counts that need
a network download (a Hub training set or benchmark) are ``None`` and printed as unknown.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..benchmarks.base import Workload
from ..config import SweepConfig, benchmark_sections
from ..shown_text import NAME_MAX, markup_safe
from .plan import PlannedVariant, variant_labels


@dataclass
class PlanCost:
    variants: int
    bases: int
    trained: int  # variants whose adapter this sweep trains
    given_adapters: int  # variants that evaluate an existing adapter
    train_steps: dict[str, int | None] = field(default_factory=dict)  # variant id -> steps
    #: per evaluated variant, each enabled benchmark's work; a benchmark without a ``workload``
    #: method is absent from it and listed in ``uncounted``
    workloads: dict[str, Workload] = field(default_factory=dict)
    uncounted: list[str] = field(default_factory=list)

    @property
    def total_train_steps(self) -> int | None:
        steps = list(self.train_steps.values())
        return None if any(s is None for s in steps) else sum(steps)  # type: ignore[arg-type]

    def generated_tokens(self) -> int:
        """New tokens one variant's evaluation generates at most (every answer runs to its
        benchmark's ``max_new_tokens``); an unknown count (:meth:`unknown`) adds nothing."""
        return sum((w.generations or 0) * w.max_new_tokens for w in self.workloads.values())

    def scored_items(self) -> int:
        """Items one variant's evaluation scores by log-likelihood; an unknown count adds nothing."""
        return sum(w.scored_items or 0 for w in self.workloads.values())

    def unknown(self) -> list[str]:
        """The benchmarks whose counts need a download (and are not counted)."""
        return [name for name, w in self.workloads.items() if w.generations is None or w.scored_items is None]

    def model_judges(self) -> list[str]:
        """The judges that run a model of their own, whose time an estimate leaves out."""
        return list(dict.fromkeys(j for w in self.workloads.values() for j in w.judges))

    #: Base evaluations saved by evaluating each base model once: every adapter variant is
    #: compared with its base, which would otherwise be evaluated once per variant.
    base_evals_reused: int = 0


def train_steps(examples: int | None, epochs: int, batch_size: int, grad_accum: int, max_steps: int | None) -> int | None:
    """Optimizer steps of one training run (see module docstring); None if examples unknown."""
    if max_steps:
        return max_steps
    if examples is None:
        return None
    return epochs * max(1, math.ceil(examples / (batch_size * grad_accum)))


def _count_training_examples(t, algo: str, seed: int) -> int | None:
    if not t.data.startswith("builtin") and not Path(t.data).is_file():
        # A Hub dataset: counting it would download it; `max_examples` bounds it if given.
        return None
    from ..training import load_training_data

    return len(load_training_data(t, algo, seed=seed).rows)


def estimate_cost(cfg: SweepConfig, plan: list[PlannedVariant]) -> PlanCost:
    """Estimate the work of ``plan`` (see module docstring)."""
    bases = [pv for pv in plan if pv.spec.is_base()]
    trained = [pv for pv in plan if not pv.spec.is_base() and not pv.spec.adapter]
    cost = PlanCost(
        variants=len(plan), bases=len(bases), trained=len(trained),
        given_adapters=sum(1 for pv in plan if pv.spec.adapter),
    )
    examples: dict[tuple, int | None] = {}
    for pv in trained:
        s = pv.spec
        t = cfg.training_for(s)  # the sweep's training section with the variant's own changes
        key = (s.algo, s.seed, t.model_dump_json())
        if t.max_steps is None and key not in examples:
            examples[key] = _count_training_examples(t, s.algo, s.seed)
        n = examples.get(key)
        cost.train_steps[pv.id] = train_steps(n, s.epochs, t.batch_size, t.grad_accum, t.max_steps)
    with_variants = {pv.base_id for pv in plan if pv.base_id}
    cost.base_evals_reused = max(0, (len(plan) - len(bases)) - len(with_variants))
    for benchmark, section in benchmark_sections(cfg):
        count = getattr(benchmark, "workload", None)
        if count is None:
            cost.uncounted.append(benchmark.name)
            continue
        try:
            cost.workloads[benchmark.name] = count(section)
        except ImportError:  # an optional module this installation lacks: unknown, not a failed plan
            cost.workloads[benchmark.name] = Workload(None, 0, None, "a module it needs is not installed")
    return cost


def render_plan(plan: list[PlannedVariant], cost: PlanCost, console, *, jobs: int = 1,
                groups: list[list[PlannedVariant]] | None = None) -> None:
    """Print the variant table, the cost summary and, for ``jobs`` variants at once on the local
    executor, the threads each job gets, with rich; ``groups`` (the local executor's jobs,
    :func:`peft_audit.sweep.groups.take_group`) adds which variants share one loaded base."""
    from rich.table import Table

    from .executors.local import threads_per_job

    t = Table(title=f"{cost.variants} variants ({cost.bases} base, {cost.trained} to train, "
                    f"{cost.given_adapters} given adapters)")
    # The readable label first (method, algo, lr, epochs and what else tells variants apart, or
    # the config's `label`), then what the label leaves out.
    for col in ("variant", "id", "base", "args", "train steps", "training changes"):
        t.add_column(col, overflow="fold", no_wrap=col in ("id", "train steps"))
    labels = variant_labels([{**pv.spec.model_dump(), "id": pv.id} for pv in plan])
    for pv in plan:
        s = pv.spec
        steps = cost.train_steps.get(pv.id)
        # config text, escaped: rich would read `[red]` in a label as markup; names kept short
        t.add_row(
            markup_safe(labels[pv.id]), pv.id,
            markup_safe(s.base_model if not s.adapter else f"{s.base_model} + {s.adapter}", limit=NAME_MAX),
            markup_safe(", ".join(f"{k}={v}" for k, v in s.method_args.items()) or "–", limit=NAME_MAX),
            "–" if pv.id not in cost.train_steps else ("unknown" if steps is None else str(steps)),
            markup_safe(", ".join(f"{k}={v}" for k, v in s.training.items()) or "–", limit=NAME_MAX),
        )
    console.print(t)

    def n(x: int | None) -> str:
        return "unknown" if x is None else str(x)

    evaluated = cost.variants
    total_steps = cost.total_train_steps
    console.print(f"train steps: {n(total_steps)} in total over {cost.trained} adapters")
    for name, w in cost.workloads.items():
        parts = []
        if w.generations != 0:
            parts.append(f"generations in total: {n(None if w.generations is None else evaluated * w.generations)} "
                         f"(up to {w.max_new_tokens} new tokens each)")
        if w.scored_items != 0:
            parts.append(f"scored in total: {n(None if w.scored_items is None else evaluated * w.scored_items)}")
        console.print(f"{name} per variant: {w.detail or 'unknown'}; " + "; ".join(parts), soft_wrap=True, highlight=False)
    if cost.uncounted:
        console.print(f"not counted (the benchmark declares no workload): {', '.join(cost.uncounted)}", highlight=False)
    console.print(f"base evaluations reused: {cost.base_evals_reused} "
                  f"({cost.bases} base evaluation(s) serve {cost.variants - cost.bases} adapter variant(s))")
    cores = os.cpu_count() or 1
    threads = threads_per_job(jobs, cores)
    if threads is None:
        console.print(f"jobs: 1 at a time (local executor), using all {cores} CPU cores (torch's default threads)")
    else:
        console.print(f"jobs: {jobs} at once (local executor), {threads} CPU thread(s) each "
                      f"(OMP_NUM_THREADS/MKL_NUM_THREADS) on {cores} cores")
    shared = [g for g in groups or [] if len(g) > 1]
    if shared:
        parts = []
        for g in shared:
            kinds = [pv.spec.method for pv in g]
            parts.append(" + ".join(f"{kinds.count(k)} {k}" for k in dict.fromkeys(kinds)))
        console.print(f"shared bases (share_base): {len(shared)} group(s) of variants evaluated on one loaded base: "
                      + "; ".join(parts), soft_wrap=True)
