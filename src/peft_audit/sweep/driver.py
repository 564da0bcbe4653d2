"""The driver side of every executor: the one process that writes the store.

An executor decides *where* variants run; the :class:`Driver` does the rest the same way for
all of them: prepares each variant (a resumed or ``--retry-failed`` one gets the rows of its
finished stages and redoes only the missing ones), applies worker messages to the store in order, records a
worker that died without reporting as ``failed``, enforces the ``--max-hours`` budget (no new
variant starts after it; running ones finish), keeps a heartbeat in the store for
``peft-audit status``, shows live progress, and logs finished variants to MLflow.

The terminal is the driver's alone: one bar for the sweep and one per running variant (its
readable label, the stage it is in, that stage's progress and ETA), a line per finished
variant, and each notice a worker sends (:func:`peft_audit.sweep.logs.notice`) once. Other
libraries' output is in ``RUN_DIR/logs/`` (:mod:`peft_audit.sweep.logs`).
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from .. import faults
from ..shown_text import markup_safe
from ..store import Store
from .logs import describe_seconds, show_once, variant_log_dir
from .messages import Message, apply_message, stored_rows_for
from .plan import PlannedVariant, variant_labels

HEARTBEAT_S = 5.0
console = Console(stderr=True)


class Driver:
    def __init__(self, cfg, run_dir: Path, store: Store, todo: list[PlannedVariant], opts, executor: str):
        self.cfg, self.run_dir, self.store, self.opts = cfg, Path(run_dir), store, opts
        self.todo = list(todo)
        self.by_id = {pv.id: pv for pv in todo}
        # named as in the report: among every variant of the run, not only those left to do
        self.labels = variant_labels(store.variants())
        self.deadline = time.time() + opts.max_hours * 3600 if opts.max_hours else None
        self.budget_reported = False
        self.started: dict[str, float] = {}
        self.grouped: set[str] = set()  # variants handed out in a group (see prepare)
        self.finished: dict[str, str] = {}
        self.stage_seconds: dict[str, float] = {}
        self.tracker = None
        if opts.mlflow:
            from ..tracking import MlflowTracker

            self.tracker = MlflowTracker(self.run_dir, experiment=cfg.name)
        self._last_beat = 0.0
        self.store.set_meta("executor", {"name": executor, "jobs": opts.jobs if executor == "local" else None})
        self._progress: Progress | None = None
        self._task = None
        self._stage_task: dict[str, Any] = {}  # variant id -> its bar while it runs

    # ----- lifecycle --------------------------------------------------------------------------
    def __enter__(self) -> "Driver":
        self._progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TextColumn("ETA"), TimeRemainingColumn(), console=console, transient=False,
        )
        self._progress.__enter__()
        self._task = self._progress.add_task(self._describe(), total=len(self.todo))
        self.heartbeat(force=True)
        return self

    def __exit__(self, *exc) -> None:
        self.store.set_meta("driver", {**self._driver_info(), "finished_at": time.time()})
        if self._progress:
            self._progress.__exit__(*exc)

    def _driver_info(self) -> dict[str, Any]:
        return {"pid": os.getpid(), "host": socket.gethostname(), "heartbeat": time.time()}

    def heartbeat(self, force: bool = False) -> None:
        now = time.time()
        if force or now - self._last_beat >= HEARTBEAT_S:
            self.store.set_meta("driver", self._driver_info())
            self._last_beat = now

    # ----- scheduling -----------------------------------------------------------------------
    def may_start(self) -> bool:
        """False once the --max-hours budget is spent (said once)."""
        if self.deadline is not None and time.time() > self.deadline:
            if not self.budget_reported:
                console.print("[yellow]--max-hours budget reached: no new variants are started; "
                              "running ones finish. Run the same command again to continue.[/]")
                self.budget_reported = True
            return False
        return True

    def stages_done(self, pv: PlannedVariant) -> set[str]:
        """The stages of ``pv`` already in the store."""
        return set(self.store.stages_done(pv.id))

    def failed_before(self, pv: PlannedVariant) -> bool:
        """Whether ``pv`` is recorded as failed (a ``--retry-failed`` run retries it)."""
        return self.store.variant(pv.id)["status"] == "failed"

    def prepare(self, pv: PlannedVariant, *, grouped: bool = False) -> tuple[set[str], dict[str, list[dict]]]:
        """Mark ``pv`` running and return (stages already done, rows of those stages).
        ``grouped``: ``pv`` is one of a group of variants run one after another on one loaded
        base (:mod:`peft_audit.sweep.groups`), all handed out now; its wall time is then the sum
        of its own stages, not the time since now, which would count the others'."""
        # A failed variant retried with --retry-failed keeps its committed stages: each was
        # written whole in one transaction, so e.g. a judge outage redoes only the judging, on
        # the stored responses, without generating them again.
        done = set(self.store.stages_done(pv.id))
        self.store.update_variant(pv.id, status="running", error=None, traceback=None)
        faults.point("driver.variant_running")
        self.started[pv.id] = time.time()
        if grouped:
            self.grouped.add(pv.id)
        self._refresh()
        return done, stored_rows_for(self.store, pv.id, done)

    # ----- messages -------------------------------------------------------------------------
    def handle(self, msg: Message) -> None:
        kind = msg[0]
        if kind == "progress":
            self.stage_started(msg[1], msg[2], msg[3])
        elif kind == "advance":
            self.stage_advanced(msg[1], msg[2])
        elif kind == "notice":
            self.notice(msg[1], msg[2])
        else:
            apply_message(self.store, msg)
        if kind == "finished":
            _, vid, status, timings = msg
            self.finish(vid, status, timings)
        self.heartbeat()

    def finish(self, vid: str, status: str, timings: dict[str, float]) -> None:
        if vid in self.finished:
            return
        self.finished[vid] = status
        for k, v in timings.items():
            self.stage_seconds[k] = self.stage_seconds.get(k, 0.0) + v
        walls = self.store.get_meta("variant_wall_seconds", {})
        walls[vid] = (sum(timings.values()) if vid in self.grouped
                      else time.time() - self.started.get(vid, time.time()))
        self.store.set_meta("variant_wall_seconds", walls)
        if status == "done" and self.tracker is not None:
            self.tracker.log_variant(self.store.variant(vid), self.store.rows("metrics", vid))
        self._end_stage(vid)
        if status == "done":
            console.print(f"[green]done[/]   {markup_safe(self.label(vid))} in {describe_seconds(walls[vid])}  ({_stage_text(timings)})",
                          soft_wrap=True, highlight=False)
        else:
            error = self.store.variant(vid).get("error") or "no error recorded"
            console.print(f"[red]failed[/] {markup_safe(self.label(vid))}: {markup_safe(error, multiline=True)}\n"
                          f"       log: {markup_safe(self.log_dir(vid))}",
                          soft_wrap=True, highlight=False)
        if self._progress is not None:
            self._progress.advance(self._task)
        self._refresh()

    def lost(self, vid: str, reason: str) -> None:
        """A worker ended without its 'finished' message (crash, OOM kill, lost node)."""
        if vid in self.finished:
            return
        self.store.update_variant(vid, status="failed", error=reason, traceback=None)
        self.finish(vid, "failed", {})

    def interrupted(self, running: list[str]) -> None:
        """Ctrl-C or SIGTERM: variants that were running are marked ``interrupted``; the next run
        resumes them from their last finished stage."""
        for vid in running:
            if vid not in self.finished:
                self.store.update_variant(vid, status="interrupted")

    # ----- display --------------------------------------------------------------------------
    def label(self, vid: str) -> str:
        return self.labels.get(vid, vid)

    def log_dir(self, vid: str) -> Path:
        return variant_log_dir(self.run_dir, vid, self.by_id[vid].display)

    def stage_started(self, vid: str, stage: str, total: int | None) -> None:
        if self._progress is None:
            return
        self._end_stage(vid)
        self._stage_task[vid] = self._progress.add_task(f"  {markup_safe(self.label(vid))}: {markup_safe(stage)}", total=total)

    def stage_advanced(self, vid: str, n: int) -> None:
        if self._progress is not None and vid in self._stage_task:
            self._progress.advance(self._stage_task[vid], n)

    def _end_stage(self, vid: str) -> None:
        task = self._stage_task.pop(vid, None)
        if task is not None and self._progress is not None:
            self._progress.remove_task(task)

    def notice(self, vid: str, text: str) -> None:
        """A worker's warning for the user: shown once per text, whichever variant sends it (and
        not again if the preflight already said it)."""
        show_once(console, text, self.label(vid))

    def _describe(self) -> str:
        done = sum(1 for s in self.finished.values() if s == "done")
        failed = sum(1 for s in self.finished.values() if s == "failed")
        running = len(set(self.started) - set(self.finished))
        return f"variants: done {done} · failed {failed} · running {running}"

    def _refresh(self) -> None:
        if self._progress is not None:
            self._progress.update(self._task, description=self._describe())


def _stage_text(timings: dict[str, float]) -> str:
    """``train 41 s · generate 67 s · BBQ 20 s``: the stages that took half a second or more."""
    shown = [f"{k} {v:.0f} s" for k, v in timings.items() if v >= 0.5]
    return " · ".join(shown) or "nothing left to do"
