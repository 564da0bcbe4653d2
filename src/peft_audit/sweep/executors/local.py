"""The local executor: variants run in worker processes on this machine, ``--jobs N`` at once.

Each job slot has one worker (a ``spawn`` process) that runs one job after another, so the
libraries are imported and the judges built once per worker, not once per variant (in the
quickstart that was ~5 s of each variant's wall time). A job is one variant, or a base model and
LoRA variants of it that share one loaded base (:mod:`peft_audit.sweep.groups`). A crash (segfault, out-of-memory kill)
takes down only the variant that worker was running: the driver records it as failed, and a
fresh worker takes the slot's next variant. Each worker streams its finished stages over its
own pipe; only the driver (this process) writes the store. One pipe per worker, not one shared
``multiprocessing.Queue``: a shared queue has one write lock for all workers, and a worker
killed while its feeder thread holds that lock (``kill -9``, out-of-memory kill, ``os._exit``)
leaves every other worker blocked forever on its last message, and the sweep with them.

With several GPUs and ``--jobs N``, job slot k sees only GPU ``k mod #GPUs`` (through
``CUDA_VISIBLE_DEVICES``), so N jobs spread over the GPUs. Bases come first in the plan, so
they start first; a variant does not wait for its base to
finish (its evaluation does not depend on the base's results), which keeps ``--jobs`` busy.
``RunOptions.in_process`` runs variants in this process instead (debugging, tests).

The workers start before the run's checks (:meth:`LocalExecutor.prestart`): a worker's imports
(torch, transformers, peft, and TRL when the sweep trains: ~4-6 s on a small CPU) overlap the
driver's own imports, checks and run preparation instead of following them. A worker that gets
no job (the checks failed, nothing is left to run) is stopped when the run ends.
"""

from __future__ import annotations

import multiprocessing as mp
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from multiprocessing.connection import Connection, wait
from pathlib import Path

from ..driver import Driver
from ..resources import WorkerResources
from ..worker import preload_for, run_group, stage_progress, subprocess_main

POLL_S = 0.5


def threads_per_job(jobs: int, cores: int | None = None) -> int | None:
    """Torch/OpenMP/MKL threads each of ``jobs`` local workers gets: ``cores // jobs`` (at least
    1), so N workers share the cores instead of each spinning up one thread per core; ``None``
    for a single job, which keeps torch's default (every core). ``cores`` defaults to
    ``os.cpu_count()``."""
    if jobs <= 1:
        return None
    return max(1, (cores if cores is not None else (os.cpu_count() or 1)) // jobs)


def visible_gpus(device: str) -> list[str]:
    """CUDA devices to spread jobs over: ``CUDA_VISIBLE_DEVICES`` if set, else every GPU torch
    sees; none when the config pins a device (``cpu``, ``mps``, ``cuda:N``)."""
    if device not in ("auto", "cuda"):
        return []
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [d.strip() for d in env.split(",") if d.strip()]
    import torch

    return [str(i) for i in range(torch.cuda.device_count())]


def gpu_for_slot(slot: int, gpus: list[str]) -> str | None:
    """Round-robin: job slot ``slot`` gets ``gpus[slot % len(gpus)]`` (None without GPUs)."""
    return gpus[slot % len(gpus)] if gpus else None


class LocalExecutor:
    def __init__(self, opts, worker: Callable = run_group):
        self.opts = opts
        self.worker = worker  # a module-level function (picklable by name for spawn)
        self._started: dict[int, _Slot] = {}  # job slot -> worker started ahead of the run (prestart)

    def prestart(self, cfg) -> None:
        """Start each job slot's worker now, before the run's checks and preparation, which
        then overlap the workers' imports (module docstring). The workers wait for their first
        job; :meth:`close` stops those that never get one."""
        from ..plan import expand

        if self.opts.in_process or self._started:
            return
        try:
            plan = expand(cfg, validate=False)
        except Exception:  # noqa: BLE001 -- the run's checks report it, with their message
            return
        for k in range(min(max(1, self.opts.jobs), len(plan))):  # no more workers than variants
            self._started[k] = self._start_worker(cfg, k, preload_for(plan))

    def close(self) -> None:
        """Stop the workers :meth:`prestart` started that no run took over (a failed check, a run
        directory locked by another run): terminated, as they hold no work."""
        started, self._started = self._started, {}
        _terminate(started.values())
        for slot in started.values():
            if slot.conn is not None:
                slot.conn.close()

    def run(self, cfg, run_dir: Path, todo, store, run_one) -> dict[str, float]:
        with Driver(cfg, run_dir, store, todo, self.opts, "local") as driver:
            if self.opts.in_process:
                self._run_in_process(driver, cfg, run_dir, todo, store, run_one)
            else:
                self._run_subprocesses(driver, cfg, run_dir, todo, run_one)
            return driver.stage_seconds

    def _start_worker(self, cfg, k: int, preload: tuple[str, ...] = ()) -> "_Slot":
        """Spawn job slot ``k``'s worker: ``cores // jobs`` threads, its GPU, its own pipe."""
        jobs = max(1, self.opts.jobs)
        gpus = visible_gpus(cfg.device) if jobs > 1 else []
        ctx = mp.get_context("spawn")
        conn, child = ctx.Pipe(duplex=True)
        proc = ctx.Process(target=subprocess_main, name=f"peft-audit-worker-{k}",
                           args=(self.worker, child, os.getpid(), threads_per_job(jobs), gpu_for_slot(k, gpus),
                                 not self.opts.verbose, preload))
        proc.start()
        child.close()  # the worker holds the only other end: EOF when it exits
        return _Slot(proc, conn)

    def _run_in_process(self, driver: Driver, cfg, run_dir: Path, todo, store, run_one) -> None:
        with WorkerResources() as resources:  # this process is the worker: its backend and judges
            self._run_jobs_in_process(driver, cfg, run_dir, todo, store, partial(run_one, resources=resources))

    def _run_jobs_in_process(self, driver: Driver, cfg, run_dir: Path, todo, store, run_one) -> None:
        from ..groups import take_group

        pending = list(todo)
        while pending and driver.may_start():
            group = take_group(cfg, pending, driver.stages_done, failed=driver.failed_before)
            prepared = {pv.id: driver.prepare(pv, grouped=len(group) > 1) for pv in group}
            try:
                if len(group) > 1:  # messages to the driver's own handler, as from a worker
                    self.worker(cfg, str(run_dir), group, {v: p[0] for v, p in prepared.items()},
                                {v: p[1] for v, p in prepared.items()}, driver.handle, run_one, False)
                    continue
                pv = group[0]
                # In this process: the driver's own terminal, so no descriptor is redirected.
                status, timings = run_one(cfg, Path(run_dir), pv, store, prepared[pv.id][0],
                                          stage_progress(driver.handle, pv.id))
            except KeyboardInterrupt:
                driver.interrupted([pv.id for pv in group])
                raise
            driver.finish(pv.id, status, timings)

    def _run_subprocesses(self, driver: Driver, cfg, run_dir: Path, todo, run_one) -> None:
        from ..groups import take_group

        pending = list(todo)
        # job slot -> its worker (each GPU serves one slot at a time); those prestart() started first
        slots: dict[int, _Slot] = self._started
        self._started = {}
        jobs = max(1, self.opts.jobs)
        preload = preload_for(todo)

        try:
            while pending or any(sl.vids for sl in slots.values()):
                for k in range(jobs):
                    if not pending or not driver.may_start():
                        break
                    slot = slots.get(k)
                    if slot is None:
                        slot = slots[k] = self._start_worker(cfg, k, preload)
                    if not slot.vids and slot.conn is not None:
                        group = take_group(cfg, pending, driver.stages_done, jobs, driver.failed_before)
                        prepared = {pv.id: driver.prepare(pv, grouped=len(group) > 1) for pv in group}
                        try:
                            slot.conn.send((cfg, str(run_dir), group, {v: p[0] for v, p in prepared.items()},
                                            {v: p[1] for v, p in prepared.items()}, run_one))
                            slot.vids = [pv.id for pv in group]
                            slot.jobs += 1
                        except OSError:  # the idle worker died: a fresh one takes the variants
                            pending[:0] = group
                            slot.conn.close()
                            slot.conn = None
                if pending and not driver.may_start():
                    pending.clear()
                for slot in slots.values():  # nothing left for an idle worker: let it go
                    if not slot.vids and slot.conn is not None and not pending:
                        if slot.jobs:
                            _stop(slot)
                        else:  # started ahead and never needed: it may still be importing
                            slot.proc.terminate()
                waitables = [sl.conn for sl in slots.values() if sl.conn is not None]
                ready = wait(waitables + [sl.proc.sentinel for sl in slots.values()], timeout=POLL_S)
                for slot in slots.values():
                    if slot.conn is not None and slot.conn in ready:
                        self._read(driver, slot)
                for k, slot in list(slots.items()):
                    if slot.proc.is_alive():
                        continue
                    slot.proc.join()
                    # Everything it sent is in its pipe: read to EOF before judging how it ended.
                    while slot.conn is not None:
                        self._read(driver, slot)
                    for vid in slot.vids:
                        if vid not in driver.finished:
                            driver.lost(vid, f"worker process exited with code {slot.proc.exitcode} before "
                                             "reporting (crash or out-of-memory kill?)")
                    del slots[k]
                driver.heartbeat()
        except BaseException as e:
            # Ctrl-C, SIGTERM or a bug in the driver: no worker may outlive it (they are not
            # daemons, so the interpreter would wait for them at exit).
            _terminate(slots.values())
            if isinstance(e, KeyboardInterrupt):
                driver.interrupted([v for sl in slots.values() for v in sl.vids if v not in driver.finished])
            raise
        finally:
            for slot in slots.values():
                if not slot.jobs and slot.proc.is_alive():
                    slot.proc.terminate()  # started ahead and never needed (nothing to run)
                if slot.conn is not None:
                    slot.conn.close()
            for slot in slots.values():
                slot.proc.join(timeout=10)

    @staticmethod
    def _read(driver: Driver, slot: "_Slot") -> None:
        """Apply one message from ``slot``'s pipe; at EOF (or a message cut off by a kill) close it.
        The ``finished`` message of the last of the slot's variants leaves the slot idle."""
        try:
            msg = slot.conn.recv()
        except (EOFError, OSError):
            slot.conn.close()
            slot.conn = None
            return
        driver.handle(msg)
        if slot.vids and all(v in driver.finished for v in slot.vids):
            slot.vids = []


@dataclass
class _Slot:
    """One job slot's worker: its process, the driver's end of its pipe (None once closed) and
    the variants of the job it is running (a group sharing one base, or one; empty when idle)."""

    proc: mp.process.BaseProcess
    conn: Connection | None
    vids: list[str] = field(default_factory=list)
    stopping: bool = False
    jobs: int = 0  # jobs sent to it


def _terminate(slots) -> None:
    """Stop the workers of ``slots`` now: SIGTERM, then SIGKILL for one still alive after 10 s."""
    slots = list(slots)
    for slot in slots:
        slot.proc.terminate()
    for slot in slots:
        slot.proc.join(timeout=10)
        if slot.proc.is_alive():
            slot.proc.kill()


def _stop(slot: _Slot) -> None:
    """Tell an idle worker there is no more work (it exits; its pipe then reads EOF)."""
    if slot.conn is None or slot.vids or slot.stopping:
        return
    try:
        slot.conn.send(None)
    except OSError:
        pass
    slot.stopping = True
