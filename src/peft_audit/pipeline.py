"""The audit pipeline: for each variant, train -> generate -> judge -> score -> metrics.

This module orchestrates; every number is computed by the benchmark, judge and analysis
modules it calls. A variant's stages are committed to the store one by one (see
:mod:`peft_audit.store`), so an interrupted run resumes at the first missing stage, and a
trained adapter on disk (with its provenance file) is reused rather than retrained.

A variant that raises is recorded as ``failed`` with its error and traceback; the others go on.
"""

from __future__ import annotations

import json
import time
import traceback
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from rich.console import Console

from .config import SweepConfig
from .store import Store, results_path
from .sweep.options import RunOptions
from .sweep.plan import PlannedVariant, eval_protocol_hash, expand

__all__ = ["RunOptions", "RunResult", "evaluate_variant", "prepare_run", "run_one", "run_sweep"]

console = Console(stderr=True)

STAGES = ("trained", "generated", "judged", "scored", "metrics")
PROVENANCE_FILE = "peft_audit_provenance.json"


@dataclass
class RunResult:
    run_dir: Path
    done: int = 0
    failed: int = 0
    skipped: int = 0
    stage_seconds: dict[str, float] = field(default_factory=dict)
    wall_seconds: float = 0.0


class StageSink(Protocol):
    """Where a variant's finished stages go: the store itself (in-process), or a channel to the
    driver process, which alone writes (subprocess and Ray executors)."""

    def commit_stage(self, vid: str, stage: str, seconds: float, **rows: Any) -> None: ...

    def update_variant(self, vid: str, **fields: Any) -> None: ...


ProgressFactory = Callable[[str, int], Callable[[int], None]]


def _no_progress(description: str, total: int) -> Callable[[int], None]:
    return lambda n: None


# ---------------------------------------------------------------------------------------------
# One variant
# ---------------------------------------------------------------------------------------------
@contextmanager
def _timed(timings: dict[str, float], stage: str):
    t0 = time.perf_counter()
    yield
    timings[stage] = timings.get(stage, 0.0) + time.perf_counter() - t0


def adapter_dir_for(run_dir: Path, vid: str) -> Path:
    return Path(run_dir) / "adapters" / vid


def evaluate_variant(
    cfg: SweepConfig,
    run_dir: Path,
    pv: PlannedVariant,
    done_stages: set[str],
    sink: StageSink,
    progress: ProgressFactory = _no_progress,
) -> dict[str, float]:
    """Run the missing stages of one variant, committing each to ``sink``. Returns stage seconds.

    Raises whatever a stage raises; the caller records the failure.
    """
    from .models import attach_adapter, load_base

    spec = pv.spec
    timings: dict[str, float] = {}
    needs_eval = not {"generated", "judged", "scored", "metrics"} <= done_stages

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
        if not (adapter_path / PROVENANCE_FILE).is_file():
            from .training import train_adapter

            with _timed(timings, "train"):
                base = load_base(spec.base_model, device=cfg.device, trust_remote_code=cfg.trust_remote_code,
                                 load_in=cfg.training.load_in)
                result = train_adapter(
                    base.model, base.tokenizer, spec=spec, training=cfg.training, out_dir=adapter_path,
                    base_fingerprint=base.resolved.fingerprint, device=base.device, show_progress=False,
                )
                del base
            sink.update_variant(pv.id, adapter_path=str(adapter_path), metadata={"provenance": result.provenance})
            sink.commit_stage(pv.id, "trained", timings["train"])
        elif "trained" not in done_stages:
            prov = json.loads((adapter_path / PROVENANCE_FILE).read_text())
            sink.update_variant(pv.id, adapter_path=str(adapter_path), metadata={"provenance": prov})
            sink.commit_stage(pv.id, "trained", 0.0)
    if not needs_eval:
        return timings

    # -- load ---------------------------------------------------------------------------------
    with _timed(timings, "load"):
        loaded = load_base(spec.base_model, device=cfg.device, trust_remote_code=cfg.trust_remote_code)
        if adapter_path is not None:
            loaded = attach_adapter(loaded, adapter_path)
    model, tok = loaded.model, loaded.tokenizer
    metric_rows: list[dict] = []
    # Rows made by this call; a stage already committed earlier is read back instead.
    samples = verdicts = rows = None

    # -- safety -------------------------------------------------------------------------------
    if cfg.safety.enabled:
        from .benchmarks import safety as sb
        from .judges import build_judges

        prompts = sb.load_safety_prompts(cfg.safety, seed=0)
        if cfg.safety.over_refusal:
            prompts = prompts + sb.over_refusal_prompts()
        if "generated" not in done_stages:
            with _timed(timings, "generate"):
                samples = sb.generate_responses(
                    model, tok, prompts, cfg=cfg.safety, progress=progress("generate", len(prompts))
                )
            sink.commit_stage(pv.id, "generated", timings["generate"], safety=samples)
        if "judged" not in done_stages or "metrics" not in done_stages:
            samples = _stored_rows(run_dir, "safety_samples", pv.id, sink, fallback=samples)
        if "judged" not in done_stages:
            with _timed(timings, "judge"):
                judges = build_judges(cfg.safety, cache_path=Path(run_dir) / "judge_cache.sqlite")
                verdicts = sb.judge_responses(samples, judges, cfg=cfg.safety,
                                              progress=progress("judge", len(samples)))
            sink.commit_stage(pv.id, "judged", timings["judge"], verdicts=verdicts)
        if "metrics" not in done_stages:
            verdicts = _stored_rows(run_dir, "verdicts", pv.id, sink, fallback=verdicts)
            metric_rows += sb.safety_metrics(samples, verdicts)

    # -- fairness -----------------------------------------------------------------------------
    if cfg.fairness.enabled:
        from .benchmarks import fairness as fb

        if "scored" not in done_stages:
            fc = cfg.fairness
            loaded_items = fb.load_bbq(
                fc.source, per_cell=fc.per_cell, categories=fc.categories, seed=0,
                skip_bad_items=fc.skip_bad_items, metadata_csv=fc.metadata_csv,
            )
            items = loaded_items.items
            # Items whose biased answer cannot be resolved are left out of bias scores; say how many.
            data_rows = [
                {"benchmark": "fairness", "category": "overall", "metric": "n_unresolved_targets",
                 "value": loaded_items.n_unresolved, "n": len(items)},
                {"benchmark": "fairness", "category": "overall", "metric": "n_bad_lines",
                 "value": len(loaded_items.bad_lines), "n": len(items)},
            ]
            with _timed(timings, "score"):
                rows = fb.score_bbq(
                    model, tok, items, mode=fc.mode, prompt_format=fc.prompt_format, batch_size=fc.batch_size,
                    length_normalise=fc.length_normalise, progress=progress("BBQ", len(items)),
                )
            sink.commit_stage(pv.id, "scored", timings["score"], fairness=rows, metrics=data_rows)
        if "metrics" not in done_stages:
            rows = _stored_rows(run_dir, "fairness_samples", pv.id, sink, fallback=rows)
            metric_rows += fb.fairness_metrics(rows, bootstrap=cfg.fairness.bootstrap, seed=0)

    if "metrics" not in done_stages:
        sink.commit_stage(pv.id, "metrics", 0.0, metrics=metric_rows)
    del model, loaded
    return timings


def _stored_rows(run_dir: Path, table: str, vid: str, sink: StageSink, fallback):
    """Rows of an earlier stage: from this process if it just made them, else from the store."""
    if fallback is not None:
        return fallback
    # A worker's MessageSink serves the rows the driver sent; only in-process runs read the file.
    store = sink if hasattr(sink, "rows") else Store(results_path(run_dir))
    return store.rows(table, vid)


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
    if stored is not None and stored != protocol:
        raise ValueError(
            f"{run_dir} holds results made with different safety/fairness settings (protocol {stored}, "
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
              config_path: Path | None = None) -> RunResult:
    """Run (or resume) a sweep into ``run_dir`` and write summary.json and the reports."""
    from .report import write_reports
    from .summary import SUMMARY_FILE, write_summary
    from .sweep.executors import get_executor

    t_start = time.perf_counter()
    run_dir = Path(run_dir)
    # Optional extras (Ray, MLflow) are checked before anything is written.
    executor = get_executor(opts)
    if opts.mlflow:
        from .tracking import require_mlflow

        require_mlflow()
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
        f"{len(todo)} to run -> {run_dir}"
    )
    stage_seconds = executor.run(cfg, run_dir, todo, store, run_one)

    t_report = time.perf_counter()
    write_summary(store, run_dir / SUMMARY_FILE)
    write_reports(run_dir, formats=["md", "html"])
    stage_seconds["report"] = time.perf_counter() - t_report
    counts = store.status_counts()
    result = RunResult(
        run_dir, done=counts.get("done", 0), failed=counts.get("failed", 0), skipped=counts.get("skipped", 0),
        stage_seconds=stage_seconds, wall_seconds=time.perf_counter() - t_start,
    )
    _print_times(result)
    store.close()
    return result


def run_one(cfg: SweepConfig, run_dir: Path, pv: PlannedVariant, sink: StageSink, done_stages: set[str],
            progress: ProgressFactory = _no_progress) -> tuple[str, dict[str, float]]:
    """Evaluate one variant with failure isolation: any exception is recorded on the variant
    (status ``failed``, error, traceback) and does not propagate. Returns (status, timings)."""
    sink.update_variant(pv.id, status="running", error=None, traceback=None)
    try:
        timings = evaluate_variant(cfg, run_dir, pv, done_stages, sink, progress)
    except KeyboardInterrupt:
        sink.update_variant(pv.id, status="pending")
        raise
    except Exception as e:  # isolation by design: record and continue with the next variant
        sink.update_variant(pv.id, status="failed", error=f"{type(e).__name__}: {e}", traceback=traceback.format_exc())
        console.print(f"[red]variant {pv.id} ({pv.display}) failed:[/] {type(e).__name__}: {e}")
        return "failed", {}
    sink.update_variant(pv.id, status="done", timings=timings)
    return "done", timings


def _print_times(result: RunResult) -> None:
    from rich.table import Table

    t = Table(title=f"Wall time per stage ({result.run_dir})")
    t.add_column("stage")
    t.add_column("seconds", justify="right")
    for stage, s in result.stage_seconds.items():
        t.add_row(stage, f"{s:.1f}")
    t.add_row("[bold]total[/]", f"[bold]{result.wall_seconds:.1f}[/]")
    console.print(t)
    console.print(f"done={result.done} failed={result.failed} skipped={result.skipped}")
