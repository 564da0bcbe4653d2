"""The audit pipeline: for each variant, train -> generate -> judge -> score -> metrics.

This module orchestrates; every number is computed by the benchmark, judge and analysis
modules it calls. A variant's stages are committed to the store one by one (see
:mod:`peft_audit.store`), so an interrupted run resumes at the first missing stage, and a
trained adapter on disk (with its provenance file) is reused rather than retrained.

A variant that raises is recorded as ``failed`` with its error and traceback; the others go on.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console

from .benchmarks.base import ProgressFactory, StageSink, VariantRun, check_prompts_fit
from .config import SweepConfig, benchmark_sections
from .shown_text import markup_safe
from .store import Store, adapter_dir_for, results_path
from .sweep.logs import LOGS_DIR, forget_notices, route_notices, show_once
from .sweep.options import RunOptions
from .sweep.plan import PlannedVariant, eval_protocol_hash, expand, legacy_protocol_hash
from .sweep.resources import WorkerResources

if TYPE_CHECKING:
    from .models.shared_base import SharedBase

__all__ = ["RunOptions", "RunResult", "evaluate_variant", "prepare_run", "run_one", "run_sweep"]

console = Console(stderr=True)



@dataclass
class RunResult:
    run_dir: Path
    done: int = 0
    failed: int = 0
    skipped: int = 0
    stage_seconds: dict[str, float] = field(default_factory=dict)
    wall_seconds: float = 0.0


def _no_progress(description: str, total: int | None) -> Callable[[int], None]:
    return lambda n: None


# ---------------------------------------------------------------------------------------------
# One variant
# ---------------------------------------------------------------------------------------------
@contextmanager
def _timed(timings: dict[str, float], stage: str):
    t0 = time.perf_counter()
    yield
    timings[stage] = timings.get(stage, 0.0) + time.perf_counter() - t0


def evaluate_variant(
    cfg: SweepConfig,
    run_dir: Path,
    pv: PlannedVariant,
    done_stages: set[str],
    sink: StageSink,
    progress: ProgressFactory = _no_progress,
    *,
    shared: SharedBase | None = None,
    train_only: bool = False,
    earlier: dict[str, float] | None = None,
    resources: WorkerResources | None = None,
) -> dict[str, float]:
    """Run the missing stages of one variant, committing each to ``sink``. Returns stage seconds.

    ``train_only`` stops after the adapter is trained (the first half of a group's work, see
    :mod:`peft_audit.sweep.groups`); ``shared`` is the group's loaded base
    (:class:`~peft_audit.models.shared_base.SharedBase`) the variant is evaluated on, instead
    of loading its own; ``earlier`` holds stage seconds the variant already spent (its training
    in a group), which the returned seconds include. ``resources`` are the worker's backend and
    judges (:class:`~peft_audit.sweep.resources.WorkerResources`); without them the variant gets
    its own, closed when it ends. Raises whatever a stage raises; the caller records the failure.
    """
    if resources is None:
        with WorkerResources() as own:
            return evaluate_variant(cfg, run_dir, pv, done_stages, sink, progress, shared=shared,
                                    train_only=train_only, earlier=earlier, resources=own)
    from .models import load_base
    from .models.backends import BackendSettings
    from .models.kernels import configure
    from .training.provenance import PROVENANCE_FILE, read_provenance

    configure(cfg.kernels)  # in the worker itself: a Ray node's, a local worker started before the config was read

    spec = pv.spec
    timings: dict[str, float] = dict(earlier or {})
    benchmarks = benchmark_sections(cfg)
    # 'trained', then each enabled benchmark's stages, then the variant's shared 'metrics' stage.
    needs_eval = not {"metrics", *(st for b, _ in benchmarks for st in b.stages)} <= done_stages

    # -- train ------------------------------------------------------------------------------
    adapter_path: Path | None = None
    if spec.adapter:
        from .adapters.compat import check_compatibility
        from .adapters.hub import resolve_adapter

        adapter_path = resolve_adapter(spec.adapter)
        compat = check_compatibility(adapter_path, spec.base_model, force=cfg.force_adapters,
                                     trust_remote_code=cfg.trust_remote_code)
        if not compat.ok:
            raise ValueError(f"adapter {spec.adapter} does not fit base {spec.base_model}: " + "; ".join(compat.reasons))
    elif not spec.is_base():
        adapter_path = adapter_dir_for(run_dir, pv.id)
        repairs_weights = spec.repair is not None and _repair_builds(spec.repair.method)
        if not (adapter_path / PROVENANCE_FILE).is_file() and repairs_weights:
            from .mitigations import build_repair

            progress("repair", None)
            with _timed(timings, "train"):
                provenance = build_repair(cfg, run_dir, spec, adapter_path)
            sink.update_variant(pv.id, adapter_path=str(adapter_path), metadata={"provenance": provenance})
            sink.commit_stage(pv.id, "trained", timings["train"])
        elif not (adapter_path / PROVENANCE_FILE).is_file():
            from .training import train_adapter

            progress("train", None)
            with _timed(timings, "train"):
                base = load_base(spec.base_model, device=cfg.device, trust_remote_code=cfg.trust_remote_code,
                                 load_in=cfg.training.load_in)
                result = train_adapter(
                    base.model, base.tokenizer, spec=spec, training=cfg.training_for(spec), out_dir=adapter_path,
                    base_fingerprint=base.resolved.fingerprint, device=base.device, show_progress=False,
                )
                del base
            sink.update_variant(pv.id, adapter_path=str(adapter_path), metadata={"provenance": result.provenance})
            sink.commit_stage(pv.id, "trained", timings["train"])
        elif "trained" not in done_stages:
            prov = read_provenance(adapter_path)
            sink.update_variant(pv.id, adapter_path=str(adapter_path), metadata={"provenance": prov})
            sink.commit_stage(pv.id, "trained", 0.0)
    if not needs_eval or train_only:
        return timings

    # -- load ---------------------------------------------------------------------------------
    progress("load", None)
    backend = resources.backend(BackendSettings.of(cfg))
    with _timed(timings, "load"):
        lm = backend.load(spec.base_model, adapter_path, shared=shared, member=pv.id)
    if shared is not None:
        timings["load"] += shared.bill_load()  # the group's one load, counted for its first member

    # -- benchmarks: each runs its missing stages through the variant's backend -----------------
    run = VariantRun(pv.id, Path(run_dir), lm, done_stages, sink,
                     judges=lambda section: resources.judges(section, run_dir), progress=progress, timings=timings,
                     trained_on=trained_on(cfg, pv), adapter_path=adapter_path)
    try:
        metric_rows: list[dict] = []
        for benchmark, section in benchmarks:
            metric_rows += benchmark.evaluate(section, run)
        if "metrics" not in done_stages:
            sink.commit_stage(pv.id, "metrics", 0.0, metrics=metric_rows)
    finally:
        lm.close()
        del run, lm
    return timings


def trained_on(cfg: SweepConfig, pv: PlannedVariant) -> tuple:
    """``(algo, training settings)`` of the data ``pv`` is trained on in this run; for a base
    model, of every distinct training of its variants (:attr:`VariantRun.trained_on`)."""
    def trains(p: PlannedVariant) -> bool:
        return not p.spec.is_base() and not p.spec.adapter

    if trains(pv):
        return ((pv.spec.algo, cfg.training_for(pv.spec)),)
    if not pv.spec.is_base():
        return ()
    seen = {}
    for p in expand(cfg, validate=False):
        if p.base_id == pv.id and trains(p):
            training = cfg.training_for(p.spec)
            seen.setdefault((p.spec.algo, training.model_dump_json()), (p.spec.algo, training))
    return tuple(seen.values())


def _repair_builds(method: str) -> bool:
    """Whether repair ``method`` writes the adapter itself (a weight repair) instead of training."""
    from .mitigations import get_mitigation

    return get_mitigation(method).build is not None


# ---------------------------------------------------------------------------------------------
# The sweep
# ---------------------------------------------------------------------------------------------
def prepare_run(cfg: SweepConfig, run_dir: Path, *, config_path: Path | None = None) -> tuple[Store, list[PlannedVariant]]:
    """Create/open the run directory, check its evaluation protocol, register every variant."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    store = Store(results_path(run_dir))
    protocol = eval_protocol_hash(cfg)
    stored = store.get_meta("eval_protocol")
    if stored is not None and stored != protocol and stored == legacy_protocol_hash(cfg):
        store.set_meta("eval_protocol_v1", stored)  # written before identities left defaults out: same protocol
    elif stored is not None and stored != protocol:
        raise ValueError(
            f"{run_dir} holds results made with different evaluation settings (benchmark sections or "
            f"eval_dtype; protocol {stored}, "
            f"this config {protocol}); use a new --out directory so results are never mixed"
        )
    store.set_meta("eval_protocol", protocol)
    store.set_meta("config", cfg.model_dump(mode="json"))
    if config_path:
        store.set_meta("config_path", str(config_path))
    plan = expand(cfg)
    for pv in plan:
        store.register_variant(pv.id, spec=pv.spec.model_dump(mode="json"), config=pv.payload, base_id=pv.base_id)
    return store, plan


def run_sweep(cfg: SweepConfig, run_dir: Path, opts: RunOptions = RunOptions(), *,
              config_path: Path | None = None, before: Callable[[Path], None] | None = None) -> RunResult:
    """Run (or resume) a sweep into ``run_dir`` and write summary.json and the reports.

    Before anything is written or any model loads, every check ``peft-audit plan`` makes is made
    and each enabled benchmark loads its data and builds its judges (:func:`preflight`), so a
    typo costs seconds, not a model load, and never pins the run directory to broken settings.
    The run holds the directory's lock (:class:`~peft_audit.sweep.lock.RunDirLock`) throughout.
    SIGINT and SIGTERM raise ``KeyboardInterrupt`` (:mod:`peft_audit.sweep.interrupt`); running
    variants are then marked ``interrupted``. ``before(run_dir)`` runs under the lock, after the
    checks and before the run is prepared (``audit`` records its adapters' outcomes there).
    """
    from .sweep.executors import get_executor
    from .sweep.interrupt import stop_signals
    from .sweep.lock import RunDirLock

    run_dir = Path(run_dir)
    forget_notices()
    undo_notices = route_notices(lambda text: show_once(console, text))
    with stop_signals():
        # Optional extras (Ray, MLflow) and every input are checked before anything is written.
        executor = get_executor(opts)
        if opts.mlflow:
            from .tracking import require_mlflow

            require_mlflow()
        try:
            # the local executor's workers import their libraries while this process checks
            getattr(executor, "prestart", lambda cfg: None)(cfg)
            preflight(cfg)
            with RunDirLock(run_dir):
                if before is not None:
                    before(run_dir)
                return _run_locked(cfg, run_dir, opts, config_path, executor)
        finally:
            getattr(executor, "close", lambda: None)()  # workers started ahead that no run took over
            undo_notices()


def preflight(cfg: SweepConfig) -> None:
    """Every check ``peft-audit plan`` makes (variant expansion, method arguments; the data its
    cost estimate reads is loaded here in full), each base model's name (a file that exists, an
    alias, a Hub id's form; nothing downloaded), whether the device computes in an
    ``eval_dtype`` other than auto, the training data of the variants that train, each
    enabled benchmark's ``check`` (its data loads, its judges build), and that its prompts fit a
    local base model's context (:func:`_check_prompts_fit`). Raises the first problem; reads
    nothing from the run directory."""
    from .models.resolve import check_model_name

    plan = expand(cfg)
    for name in sorted({pv.spec.base_model for pv in plan}):
        check_model_name(name)
    if cfg.eval_dtype != "auto":  # torch is imported here only then
        from .models.device import resolve_dtype, select_device

        try:
            device = select_device(cfg.device)
        except ValueError:  # not on this machine (a Ray driver without the workers' GPUs): they check it
            device = None
        if device is not None:
            resolve_dtype(cfg.eval_dtype, device)
    from .models.backends import check_backend

    check_backend(cfg.backend)
    trains: dict[tuple[str, str], tuple] = {}  # (algo, settings) -> (a variant, its training settings)
    for pv in plan:
        if not pv.spec.is_base() and not pv.spec.adapter:
            training = cfg.training_for(pv.spec)
            trains.setdefault((pv.spec.algo, training.model_dump_json()), (pv, training))
    if trains:
        from .training.data import load_training_data

        for pv, training in trains.values():
            try:
                load_training_data(training, pv.spec.algo, seed=0)
            except (ValueError, FileNotFoundError) as e:
                if not pv.spec.training:
                    raise
                raise type(e)(f"variant {pv.id} ({pv.display}): {e}") from None
    for benchmark, section in benchmark_sections(cfg):
        check = getattr(benchmark, "check", None)
        if check is not None:
            check(section)
    _check_prompts_fit(cfg, plan)


def _check_prompts_fit(cfg: SweepConfig, plan: list[PlannedVariant]) -> None:
    """Each generating benchmark's prompts fit each local base model's context with that
    benchmark's ``max_new_tokens`` (its tokenizer and config are read, no weights). Models not in
    a local directory are checked per variant, once loaded, before they answer."""
    from types import SimpleNamespace

    from .models.backends.transformers import TransformersModel
    from .models.resolve import check_model_name

    generating = [(b, s) for b, s in benchmark_sections(cfg) if hasattr(b, "prompts")]
    local = sorted({pv.spec.base_model for pv in plan if check_model_name(pv.spec.base_model) == "dir"})
    if not generating or not local:
        return
    from transformers import AutoConfig

    from .models.load import load_tokenizer

    for name in local:
        path = Path(name).expanduser()
        config = AutoConfig.from_pretrained(path, trust_remote_code=cfg.trust_remote_code)
        lm = TransformersModel(SimpleNamespace(config=config), load_tokenizer(path, trust_remote_code=cfg.trust_remote_code))
        for benchmark, section in generating:
            check_prompts_fit(lm, benchmark.prompts(section), section, benchmark.name)


def _run_locked(cfg: SweepConfig, run_dir: Path, opts: RunOptions, config_path: Path | None, executor) -> RunResult:
    from .report import finish_run
    from .summary import SUMMARY_FILE, write_summary

    t_start = time.perf_counter()
    store, plan = prepare_run(cfg, run_dir, config_path=config_path)
    todo = []
    for pv in plan:
        row = store.variant(pv.id)
        if row["status"] == "done":
            continue
        if row["status"] == "failed" and not opts.retry_failed:
            continue
        if row["status"] == "skipped":
            continue
        todo.append(pv)
    console.print(
        f"[bold]{cfg.name}[/]: {len(plan)} variants, {len(plan) - len(todo)} already finished or skipped, "
        f"{len(todo)} to run -> {markup_safe(run_dir)}", soft_wrap=True, highlight=False
    )
    try:
        stage_seconds = executor.run(cfg, run_dir, todo, store, run_one)
    except KeyboardInterrupt:
        store.close()
        raise

    t_report = time.perf_counter()
    write_summary(store, run_dir / SUMMARY_FILE)
    verdict = finish_run(run_dir) if opts.verbose else _quietly(run_dir, "report", lambda: finish_run(run_dir))
    stage_seconds["report"] = time.perf_counter() - t_report
    counts = store.status_counts()
    result = RunResult(
        run_dir, done=counts.get("done", 0), failed=counts.get("failed", 0), skipped=counts.get("skipped", 0),
        stage_seconds=stage_seconds, wall_seconds=time.perf_counter() - t_start,
    )
    _print_end(result, verdict, logs=not opts.verbose)
    store.close()
    return result


def run_one(cfg: SweepConfig, run_dir: Path, pv: PlannedVariant, sink: StageSink, done_stages: set[str],
            progress: ProgressFactory = _no_progress, *, shared: SharedBase | None = None, train_only: bool = False,
            earlier: dict[str, float] | None = None,
            resources: WorkerResources | None = None) -> tuple[str, dict[str, float]]:
    """Evaluate one variant with failure isolation: any exception is recorded on the variant
    (status ``failed``, error, traceback) and does not propagate. Returns (status, timings);
    with ``train_only`` (see :func:`evaluate_variant`, also for ``shared``, ``earlier`` and
    ``resources``) the status is ``trained`` on success and the variant stays ``running``."""
    sink.update_variant(pv.id, status="running", error=None, traceback=None)
    try:
        timings = evaluate_variant(cfg, run_dir, pv, done_stages, sink, progress, shared=shared, train_only=train_only,
                                   earlier=earlier, resources=resources)
    except KeyboardInterrupt:
        sink.update_variant(pv.id, status="interrupted")
        raise
    except Exception as e:  # isolation by design: record and continue with the next variant
        sink.update_variant(pv.id, status="failed", error=f"{type(e).__name__}: {e}", traceback=traceback.format_exc())
        # The driver says it failed on the terminal; the traceback goes with the stage's log.
        traceback.print_exc()
        return "failed", {}
    if train_only:
        return "trained", timings
    sink.update_variant(pv.id, status="done", timings=timings)
    return "done", timings


def _quietly(run_dir: Path, stage: str, work: Callable[[], Any]) -> Any:
    """Run ``work`` in the driver with library warnings (statsmodels on a tiny sweep, ...) written
    to ``RUN_DIR/logs/<stage>.log`` instead of the terminal; the tool's own notices still show."""
    log = Path(run_dir) / LOGS_DIR / f"{stage}.log"

    def to_log(text: str) -> None:
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "a", encoding="utf-8") as f:
            f.write(text)

    undo = route_notices(lambda text: show_once(console, text), other=to_log)
    try:
        return work()
    finally:
        undo()


def _print_end(result: RunResult, verdict: list[str], *, logs: bool = True) -> None:
    """The run's last lines: counts and time per stage on one line (and where other libraries'
    output went, unless ``--verbose`` showed it), then the verdict."""
    times = " · ".join(f"{stage} {s:.0f} s" for stage, s in result.stage_seconds.items() if s >= 0.5)
    where = f"; other libraries' output: {markup_safe(result.run_dir / LOGS_DIR)}/" if logs else ""
    console.print(f"done {result.done} · failed {result.failed} · skipped {result.skipped} variants in "
                  f"{result.wall_seconds:.0f} s ({times}){where}", soft_wrap=True)
    for line in verdict:
        console.print(line, soft_wrap=True)
