"""The :class:`Benchmark` interface: what one evaluation benchmark owns, and what it is given.

A benchmark is one module (or folder) plus one line in :mod:`.registry`. It owns

* its config section: a :class:`BenchmarkSection` subclass, found in the sweep file under the
  benchmark's name (``safety:``, ``fairness:``, ...) and validated with the rest of the file;
* its data loading, and the model work it needs (generate, or log-likelihood scoring), done in
  :meth:`Benchmark.evaluate` through the :class:`VariantRun` the pipeline hands it, whose
  ``lm`` is the variant as its backend serves it
  (:class:`peft_audit.models.backends.base.LanguageModel`: the only part of ``models`` a
  benchmark sees);
* which judges it uses (``VariantRun.judges``, built once per worker process);
* its stages (markers in the store; a resumed run redoes only the missing ones) and its
  metric rows with intervals;
* what one variant's evaluation costs (:meth:`Benchmark.workload`, for ``plan`` and its estimate);
* its block in ``summary.json`` (:meth:`Benchmark.summary_block`), its gate rules
  (:attr:`Benchmark.gate_rules`), its report sections (:attr:`Benchmark.report_sections`) and its
  per-item export (:meth:`Benchmark.export_frame`).

A plug-in benchmark keeps its per-item rows in the store's generic ``samples`` table
(``run.commit(stage, s, samples=[{"benchmark", "sample_id", "category", "payload": {...}}])``,
read back with :meth:`VariantRun.stored_samples`; the analysis sees them as
``RunFrames.items(name)``), compares variants with their base through
:func:`peft_audit.analysis.paired.paired_item_scores`, and names its own stages and metrics.
New benchmarks default to ``enabled: false``, so registering one changes no existing run.

The pipeline only loops: first ``benchmark.check(section)`` for each enabled benchmark, before
any model loads (optional: load the data, build the judges), then per variant
``metric_rows += benchmark.evaluate(section, run)``, then it commits the variant's ``metrics`` stage.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence, Sized
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, Protocol

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from ..models.backends.base import Generation, LanguageModel
from ..textio import DEFAULT_MAX_PROMPT_BYTES

if TYPE_CHECKING:
    import pandas as pd

    from ..judges.base import Judge
    from ..store import Store
    from ..training.config import TrainingConfig

#: ``progress(stage, total)`` announces that a stage starts (``total`` units of work, None when
#: unknown) and returns ``advance(n)``; the executor shows it and starts the stage's log file.
ProgressFactory = Callable[[str, "int | None"], Callable[[int], None]]

#: (benchmark, category, metric) -> a metrics-table row (dict with value, ci_low, ci_high, n).
MetricsLookup = Mapping[tuple[str, str, str], Mapping[str, Any]]


#: Responses a benchmark hands its judges at once: one progress update (and one fault point) each.
JUDGE_CHUNK = 32


def num(x: Any) -> float | None:
    """A stored metric value as a float; None for missing or NaN (summary.json has no NaN)."""
    if x is None:
        return None
    x = float(x)
    return None if math.isnan(x) else x


def metric_value(m: MetricsLookup, benchmark: str, category: str, metric: str) -> float | None:
    r = m.get((benchmark, category, metric))
    return num(r["value"]) if r else None


def metric_ci(m: MetricsLookup, benchmark: str, category: str, metric: str) -> list[float | None] | None:
    r = m.get((benchmark, category, metric))
    return [num(r["ci_low"]), num(r["ci_high"])] if r else None


def delta(a: float | None, b: float | None) -> float | None:
    """Variant minus base; None when either is undefined."""
    return None if a is None or b is None else a - b


#: A benchmark's ``batch_size``: rows per forward pass, or ``"auto"``: sized from the device's
#: free memory (:mod:`peft_audit.models.batching`). Never part of a result's identity.
def _batch_size(value: Any) -> int | str:
    if value == "auto" or (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
        return value
    raise ValueError(f"batch_size must be a positive integer or 'auto', got {value!r}")


BatchSizeSetting = Annotated[int | Literal["auto"], BeforeValidator(_batch_size)]
BATCH_SIZE_HELP = ("Rows per batch, or 'auto': as many as the device's free memory holds, up to the device's cap "
                   "(peft_audit.models.batching); a batch that runs out of memory is retried at half the size")


class BenchmarkSection(BaseModel):
    """Base of every benchmark's config section. Unknown keys are errors; sections are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: see peft_audit.identity. ``enabled`` is in the protocol as the presence of the section.
    NOT_RESULTS: ClassVar[frozenset[str]] = frozenset({"enabled", "max_prompt_bytes"})
    IDENTITY_V1: ClassVar[frozenset[str]] = frozenset()
    #: The fields a version-1 run directory's protocol hash covered (full dump), to recognise it.
    PROTOCOL_V1_FIELDS: ClassVar[frozenset[str] | None] = None
    #: False for a benchmark enabled by default that only adds results of its own: at its default
    #: settings it is left out of the run's protocol (sweep.plan.eval_protocol_hash), so run
    #: directories made before it was registered still resume (their variants just lack it).
    IN_PROTOCOL_AT_DEFAULTS: ClassVar[bool] = True

    enabled: bool = Field(True, description="Evaluate this benchmark")
    max_prompt_bytes: int = Field(
        DEFAULT_MAX_PROMPT_BYTES, ge=1, description="Refuse, in the run's checks, a prompt (or any field of a "
        "CSV source) longer than this many bytes, naming its file and line")


class PromptTooLongError(ValueError):
    """A prompt that does not fit the model's context with the answer's tokens; names file and line."""


def check_prompts_fit(lm: LanguageModel, prompts: Sequence[Any], cfg: BenchmarkSection, section: str) -> None:
    """Every prompt (its ``.prompt``, read at ``.where``), as the chat input with
    ``cfg.system_prompt``, must leave ``cfg.max_new_tokens`` of the model's context
    (:meth:`~peft_audit.models.backends.base.LanguageModel.first_overlong`), else
    :class:`PromptTooLongError` names its file and line. Nothing is checked when the context is unknown."""
    system_prompt, max_new = getattr(cfg, "system_prompt", None), cfg.max_new_tokens  # type: ignore[attr-defined]
    hit = lm.first_overlong([p.prompt for p in prompts], system_prompt=system_prompt, max_new_tokens=max_new)
    if hit is not None:
        i, n, context = hit
        where = getattr(prompts[i], "where", "") or f"{section} prompt {i + 1}"
        raise PromptTooLongError(
            f"{where}: prompt of {n} tokens (chat template included) plus {section}.max_new_tokens {max_new} "
            f"exceeds the model's context of {context} tokens; shorten the prompt, remove it, or lower "
            f"{section}.max_new_tokens")


class StageSink(Protocol):
    """Where a variant's finished stages go: the store itself (in-process), or a channel to the
    driver process, which alone writes (subprocess and Ray executors)."""

    def commit_stage(self, vid: str, stage: str, seconds: float, **rows: Any) -> None: ...

    def update_variant(self, vid: str, **fields: Any) -> None: ...


@dataclass(frozen=True)
class GateRule:
    """One check of the deployment gate: ``direction * delta > limit`` is a violation.

    ``metric`` is a metric of the paired comparison (analysis.paired), ``category`` either
    ``"overall"`` or ``"per-category"`` (every category but overall), ``direction`` -1 when a drop
    is bad and +1 when a rise is bad. ``threshold`` names the limit: a
    :class:`peft_audit.gate.GateThresholds` field (the built-in benchmarks'), or a key of the
    benchmark's own, e.g. ``xstest.max_full_refusal_increase``, whose limit is ``default`` unless
    the user sets it (``peft-audit gate RUN --limit KEY=VALUE``). ``unit`` is how its deltas and
    limit are shown: ``pts`` (a proportion, times 100) or another unit shown as is (``nats``).
    """

    metric: str
    category: str
    direction: int
    threshold: str
    default: float | None = None
    unit: str = "pts"

#: Store.commit_stage keyword -> the table its rows land in (where the two differ).
_TABLE_OF = {"safety": "safety_samples", "fairness": "fairness_samples"}


@dataclass(frozen=True)
class ReportSection:
    """A section of the report: a heading and one score grid per paired metric (variants x
    categories, change vs base with its interval; :func:`peft_audit.report.tables.score_grid`).

    ``titles`` names each metric's grid (default: the metric's name); metrics in
    ``lower_is_better`` colour a rise red (e.g. a refusal rate on safe prompts); ``note`` is a
    paragraph under the heading (what the numbers mean, where the data came from); ``scale`` the
    factor its numbers are shown at (100: a proportion in percentage points; 1: e.g. a loss in nats).
    """

    title: str
    metrics: tuple[str, ...]
    titles: Mapping[str, str] = field(default_factory=dict)
    lower_is_better: frozenset[str] = frozenset()
    note: str = ""
    scale: float = 100.0


@dataclass
class VariantRun:
    """Everything a benchmark is given to evaluate one variant: the variant as its backend serves
    it (``lm``), its judges and where its stages go.

    ``done_stages`` are the stages already in the store; ``stored_rows(table)`` returns rows of
    an earlier stage (this process's, else the store's / the driver's); ``commit`` writes a stage
    and its rows in one transaction; ``timed(name)`` adds wall seconds to ``timings[name]``.
    """

    variant_id: str
    run_dir: Path
    #: the variant as its backend serves it (generation, log-likelihoods, chat template)
    lm: LanguageModel
    done_stages: set[str]
    sink: StageSink
    #: a benchmark section -> the judges its ``judges`` specs name, built once per worker
    judges: Callable[[BenchmarkSection], "list[Judge]"]
    progress: ProgressFactory
    timings: dict[str, float] = field(default_factory=dict)
    #: ``(algo, TrainingConfig)`` of the task data this variant was trained on here: one for a
    #: variant the run trains, one per distinct training of its variants for a base model, none
    #: for an audited adapter (the utility benchmark measures each on that data's held-out rows)
    trained_on: "tuple[tuple[str, TrainingConfig], ...]" = ()
    #: the adapter directory the variant loads (None for a base model)
    adapter_path: Path | None = None
    _made: dict[str, list[dict]] = field(default_factory=dict)

    def needs(self, stage: str) -> bool:
        return stage not in self.done_stages

    def generate(self, prompts: list[str], *, system_prompt: str | None = None, max_new_tokens: int = 256,
                 batch_size: int | str = "auto", progress: Callable[[int], None] | None = None) -> list[Generation]:
        """Greedy chat completions of this variant through its backend
        (:meth:`~peft_audit.models.backends.base.LanguageModel.generate`)."""
        return self.lm.generate(prompts, system_prompt=system_prompt, max_new_tokens=max_new_tokens,
                                batch_size=batch_size, progress=progress)

    def check_prompts_fit(self, prompts: Sequence[Any], cfg: BenchmarkSection, section: str) -> None:
        """:func:`check_prompts_fit` on this variant: before it generates, so that the variant
        fails before any answer."""
        check_prompts_fit(self.lm, prompts, cfg, section)

    @contextmanager
    def timed(self, name: str) -> Iterator[None]:
        """Add the block's wall seconds to ``timings[name]``; for a member of a group, corrected
        by its share of the mixed batches it ran or took answers from inside the block
        (:meth:`~peft_audit.models.backends.base.LanguageModel.take_time_shift`)."""
        self.lm.take_time_shift()  # a shift from before the block is not the block's
        t0 = time.perf_counter()
        yield
        shift = self.lm.take_time_shift()
        self.timings[name] = self.timings.get(name, 0.0) + time.perf_counter() - t0 + shift

    def commit(self, stage: str, seconds: float, **rows: list[dict]) -> None:
        """Write ``stage`` with its rows (keywords of :meth:`peft_audit.store.Store.commit_stage`).
        Stage names are unique per variant across benchmarks: a plug-in prefixes its own
        (``xstest.generated``)."""
        self.sink.commit_stage(self.variant_id, stage, seconds, **rows)
        for keyword, table_rows in rows.items():
            table = _TABLE_OF.get(keyword, keyword)
            if table == "samples":  # shared by every plug-in benchmark: keep the others' rows
                mine = {r["benchmark"] for r in table_rows}
                kept = [r for r in self._made.get("samples", []) if r["benchmark"] not in mine]
                self._made["samples"] = kept + list(table_rows)
            else:
                self._made[table] = list(table_rows)

    def stored_samples(self, benchmark: str) -> list[dict]:
        """This variant's rows of ``benchmark`` in the generic ``samples`` table, each as
        ``{sample_id, category, **payload}`` (what a plug-in benchmark committed with
        ``run.commit(stage, seconds, samples=[{benchmark, sample_id, category, payload}])``;
        list ``"samples"`` in its ``resume_tables``)."""
        import json

        out = []
        for r in self.stored_rows("samples"):
            if r["benchmark"] != benchmark:
                continue
            payload = r["payload"] if isinstance(r["payload"], dict) else json.loads(r["payload"])
            out.append({"sample_id": str(r["sample_id"]), "category": r["category"], **payload})
        return out

    def stored_rows(self, table: str) -> list[dict]:
        """Rows of ``table`` for this variant: made by this process if it just made them, else
        from the driver (a worker's MessageSink) or the store (in-process runs)."""
        if table in self._made:
            return self._made[table]
        if hasattr(self.sink, "rows"):
            return self.sink.rows(table, self.variant_id)
        from ..store import Store, results_path

        with Store(results_path(self.run_dir)) as store:
            return store.rows(table, self.variant_id)


class Benchmark(Protocol):
    """One evaluation benchmark (see the module docstring for what it owns)."""

    #: registry key, config section key, and ``benchmark`` value of its stored rows
    name: str
    #: its config section model
    section: type[BenchmarkSection]
    #: the store stages it commits before the variant's shared ``metrics`` stage
    stages: tuple[str, ...]
    #: the ``peft-audit export --samples`` kind it answers to
    sample_kind: str
    #: deployment-gate rules over its paired comparisons
    gate_rules: tuple[GateRule, ...]
    #: its sections in report.md / report.html
    report_sections: tuple[ReportSection, ...]
    #: store tables it reads back through ``VariantRun.stored_rows`` when resuming (the driver
    #: sends their rows to a worker that continues after a finished stage)
    resume_tables: tuple[str, ...]

    def check(self, cfg: BenchmarkSection) -> None:
        """Optional. Load the data and build the judges ``cfg`` names, raising a clear error, so
        that a run fails in seconds before any model loads (the pipeline's ``preflight``)."""
        ...

    def prompts(self, cfg: BenchmarkSection) -> list[Any]:
        """Optional, for a benchmark that generates: the prompts it sends, each with ``.prompt``
        and ``.where`` (file:line), its section having ``max_new_tokens`` (and ``system_prompt``).
        The run's checks then refuse one that does not fit a local base model's context."""
        ...

    def evaluate(self, cfg: BenchmarkSection, run: VariantRun) -> list[dict]:
        """Run the missing stages through ``run.lm`` (committing each through ``run.commit``) and
        return this benchmark's metric rows (``[]`` when the ``metrics`` stage is already done)."""
        ...

    def summary_block(self, metrics: MetricsLookup) -> dict[str, Any]:
        """This benchmark's keys in a variant's ``summary.json`` block, from its metric rows."""
        ...

    def summary_delta(self, variant: Mapping[str, Any], base: Mapping[str, Any]) -> dict[str, Any] | None:
        """Its entry in ``delta_vs_base`` (variant minus base) from two summary blocks, or None."""
        ...

    def paired(self, frames: Any, pairs: "pd.DataFrame", *, n_boot: int, seed: int) -> "pd.DataFrame":
        """Its paired comparisons, variant vs base, for every (variant_id, base_id) of ``pairs``:
        rows of ``analysis.paired.PAIRED_COLUMNS`` with raw p-values (the caller adjusts them per
        (benchmark, metric) family). ``frames`` is the run's ``analysis.data.RunFrames``."""
        ...

    def evaluated(self, frames: Any) -> set[str]:
        """Ids of the variants that have results of this benchmark (the gate fails a variant
        that lacks results its base has)."""
        ...

    #: Optional (default False). True for a benchmark whose items are each variant's own (task
    #: utility: the variant's held-out training rows): a variant without results, or a base scored
    #: only on its variants' rows, is then "not measured" in the gate rather than a benchmark that
    #: evaluated nothing (which is a violation).
    items_per_variant: bool

    def measured(self, frames: Any) -> dict[str, tuple[set[str], str]]:
        """Optional. For a paired metric that a variant with this benchmark's results may still
        lack (the harmful-response rate where no harm judge was configured): metric -> (ids of the
        variants that have it, why a variant may not). The gate then says the metric was not
        measured (a violation when the base has it and the variant not) instead of staying silent."""
        ...

    def export_frame(self, store: "Store") -> "pd.DataFrame":
        """One row per (variant, item) for ``peft-audit export --samples <sample_kind>``."""
        ...

    def workload(self, cfg: BenchmarkSection) -> Workload:
        """Optional. The model work one variant's evaluation needs (:class:`Workload`), for
        ``peft-audit plan`` and ``plan --estimate``; a benchmark without it is listed there as
        not counted."""
        ...


@dataclass(frozen=True)
class Workload:
    """The model work of evaluating one variant on a benchmark, counted from its config section
    alone, for ``peft-audit plan`` and its wall-time estimate (no model loads, nothing downloads).

    ``generations`` prompts are answered by greedy generation, up to ``max_new_tokens`` new
    tokens each; ``scored_items`` items are scored by log-likelihood (BBQ's unit: the three answer
    options of one item). A count is None where counting would need a download (a Hub dataset).
    ``detail`` says what the counts are made of (printed by ``plan``); ``judges`` names the judges
    that run a model of their own (:func:`model_judges`), whose time the estimate leaves out."""

    generations: int | None = 0
    max_new_tokens: int = 0
    scored_items: int | None = 0
    detail: str = ""
    judges: tuple[str, ...] = ()


def is_local_or_builtin(source: str) -> bool:
    """Whether a benchmark's ``source`` can be read without a download (``builtin`` or a path)."""
    return source == "builtin" or Path(source).expanduser().exists()


def generation_workload(cfg: Any, load: Callable[[], Sized], *, unit: str = "prompts", judges: Any = None) -> Workload:
    """The :class:`Workload` of a benchmark that answers each of its items by generation:
    ``len(load())`` items (``load`` reads the data; it is not called for a ``cfg.source`` that
    would need a download) up to ``cfg.max_new_tokens`` each, judged by ``judges`` (default
    ``cfg.judges``)."""
    judges = model_judges(cfg.judges if judges is None else judges)
    if not is_local_or_builtin(cfg.source):
        return Workload(None, cfg.max_new_tokens, 0, f"{cfg.source}: not downloaded", judges)
    n = len(load())
    return Workload(n, cfg.max_new_tokens, 0, f"{n} {unit}", judges)


def model_judges(specs) -> tuple[str, ...]:
    """The judges of ``specs`` that run a model (a guard or field classifier, an LLM endpoint,
    the ``harm`` probe on the bundled model's first layers), as ``name (model)``: their time is
    not part of a calibrated estimate. Rule-based judges (``refusal``, ``keyword``) cost next to
    nothing and are not listed."""
    return tuple(f"{s.name} ({getattr(s, 'model', 'bundled SmolLM2, first layers')})" for s in specs
                 if s is not None and s.name not in ("refusal", "keyword"))
