"""The body of one variant run away from the driver: in a fresh subprocess or a Ray task.

:func:`run_variant` evaluates one variant with the ``run_one`` it is handed (the pipeline's
:func:`peft_audit.pipeline.run_one`, failure isolation included) and sends every stage to the driver through ``put`` (see
:mod:`peft_audit.sweep.messages`); its last message is ``("finished", vid, status, timings)``.
It never opens the store.

:func:`subprocess_main` is the entry point of the local executor's worker process, which
serves one job after another on one job slot: Python, torch, transformers, peft and trl are
imported once per worker, not once per variant, and its backend and judges are built once
(:class:`~peft_audit.sweep.resources.WorkerResources`, closed when the worker ends). A job is one
variant, or a group of variants of one base evaluated on one loaded base (:func:`run_group`). A watchdog
thread ends the process when its driver disappears (``kill -9`` of the driver), so no orphan
keeps training while a resumed run redoes the variant.
"""

from __future__ import annotations

import importlib
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from .. import faults
from .logs import StageLogs, route_notices, variant_log_dir
from .messages import Message, MessageSink
from .resources import WorkerResources

WATCHDOG_INTERVAL_S = 1.0


def run_variant(cfg, run_dir: str | Path, pv, done_stages: set[str], stored_rows: dict[str, list[dict]],
                put: Callable[[Message], None], run_one: Callable, quiet: bool = True) -> str:
    """Run one variant with ``run_one``, streaming its stages through ``put``; returns its status
    ('done' or 'failed'; 'trained' after the training half of a group's work, which sends no
    ``finished``).

    Each stage that starts is announced to the driver (``("progress", vid, stage, total)``, then
    ``("advance", vid, n)``) and, when ``quiet``, gets its own log file for everything printed
    meanwhile (:class:`~peft_audit.sweep.logs.StageLogs`). Notices
    (:func:`peft_audit.sweep.logs.notice`) go to the driver as ``("notice", vid, text)``.
    """
    logs = StageLogs(variant_log_dir(run_dir, pv.id, pv.display)) if quiet else None
    progress = stage_progress(put, pv.id, logs)
    if logs is not None:
        logs.switch("variant")  # what is printed before the first stage starts (or instead of it)
    undo = route_notices(lambda text: put(("notice", pv.id, text)))
    try:
        sink = MessageSink(put, stored_rows)
        status, timings = run_one(cfg, Path(run_dir), pv, sink, set(done_stages), progress)
    finally:
        undo()
        if logs is not None:
            logs.close()
    if status != "trained":
        put(("finished", pv.id, status, timings))
    return status


def run_group(cfg, run_dir: str | Path, pvs: list, done_by: dict[str, set[str]],
              rows_by: dict[str, dict[str, list[dict]]], put: Callable[[Message], None], run_one: Callable,
              quiet: bool = True) -> None:
    """Run variants of one base that share one loaded base model
    (:func:`peft_audit.sweep.groups.share_base`): each trains first, then the base loads once with
    every adapter attached, then each is evaluated on it, its generation batches shared with
    the members still to come. Every variant still gets its own stages, logs, notices and
    ``finished`` message, and a failure ends only its own variant. A group of one is
    :func:`run_variant`."""
    from functools import partial

    from .groups import share_base

    if len(pvs) == 1:
        pv = pvs[0]
        run_variant(cfg, run_dir, pv, done_by[pv.id], rows_by[pv.id], put, run_one, quiet)
        return
    trained, ready = {}, []
    for pv in pvs:
        if pv.spec.is_base():
            ready.append(pv)
            continue

        def train(*args, _pv=pv, **kw):
            status, timings = run_one(*args, train_only=True, **kw)
            trained[_pv.id] = timings
            return status, timings

        if run_variant(cfg, run_dir, pv, done_by[pv.id], rows_by[pv.id], put, train, quiet) == "trained":
            done_by[pv.id] = done_by[pv.id] | {"trained"}
            ready.append(pv)
    # the one base load, logged with the first member's 'load' stage
    logs = StageLogs(variant_log_dir(run_dir, ready[0].id, ready[0].display)) if quiet and ready else None
    if logs is not None:
        logs.switch("load")
    undo = route_notices(lambda text: put(("notice", pvs[0].id, text)))
    try:
        shared, members = share_base(cfg, Path(run_dir), ready)
    finally:
        undo()
        if logs is not None:
            logs.close()
    for pv in ready:
        member = shared if pv.id in members else None
        run_variant(cfg, run_dir, pv, done_by[pv.id], rows_by[pv.id], put,
                    partial(run_one, shared=member, earlier=trained.get(pv.id)), quiet)
        if member is not None:
            member.release(pv.id)
    del shared


def stage_progress(put: Callable[[Message], None], vid: str, logs: StageLogs | None = None):
    """The :data:`~peft_audit.benchmarks.base.ProgressFactory` of variant ``vid``: a stage that
    starts is announced through ``put`` (``("progress", vid, stage, total)``, then
    ``("advance", vid, n)``) and, with ``logs``, gets its own log file. ``put`` is a worker's
    pipe, or the driver's own ``handle`` for a variant run in the driver's process."""
    def progress(stage: str, total: int | None) -> Callable[[int], None]:
        if logs is not None:
            logs.switch(stage)
        put(("progress", vid, stage, total))
        return lambda n: put(("advance", vid, int(n)))

    return progress


def _watch_parent(parent_pid: int) -> None:
    while True:
        if os.getppid() != parent_pid:
            os._exit(70)  # driver gone: stop at once, the resumed run redoes this variant
        time.sleep(WATCHDOG_INTERVAL_S)


def subprocess_main(worker: Callable, conn, parent_pid: int, threads: int | None = None,
                    gpu: str | None = None, quiet: bool = True, preload: tuple[str, ...] = ()) -> None:
    """Entry point of a spawned worker process: watchdog, then one variant after another.

    ``conn`` is this worker's own duplex pipe to the driver. The driver sends a job,
    ``(cfg, run_dir, pvs, done_by, rows_by, run_one)``: one variant, or a group that shares one
    loaded base (:func:`run_group`), with each one's stages done and their rows by variant id,
    and the pipeline's variant runner; this process runs
    ``worker(cfg, run_dir, pvs, done_by, rows_by, send, run_one, quiet)``, which ends with a
    ``finished`` message per variant; then it waits for the next job. ``None`` or a closed pipe
    ends it. The worker may start before the driver has a job for it (the local executor starts
    it ahead of the run's checks); it imports its libraries meanwhile, ``preload`` too (module
    names, e.g. TRL when the sweep trains), and sets them aside (:func:`_set_aside_library_objects`).
    ``send`` pickles and writes one message synchronously (under a lock, in case a stage is
    ever sent from a thread), so when the worker returns every message has left the process.

    ``quiet`` sends other libraries' output to the variant's stage logs (not ``--verbose``).
    ``threads`` caps torch's intra-op threads so ``--jobs N`` workers share the cores instead of
    each claiming all of them; ``gpu`` (a CUDA device index) makes only that GPU visible.
    """
    threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True).start()
    # The driver alone handles Ctrl-C (a terminal sends SIGINT to the whole process group) and
    # stops workers with SIGTERM, which exits through Python's own shutdown, so the locks a
    # library made (tqdm, datasets) are released and no "leaked semaphore" warning is printed.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    progress_bars_lock_within_process()
    # Both are read by torch when it is first imported (just below): no torch before them.
    if threads:
        os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(threads)
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu
    _set_aside_library_objects(preload)
    lock = threading.Lock()

    def send(msg: Message) -> None:
        with lock:
            conn.send(msg)

    resources = WorkerResources()
    try:
        while True:
            try:
                job = conn.recv()
            except EOFError:
                return
            if job is None:
                return
            cfg, run_dir, pvs, done_by, rows_by, run_one = job
            faults.new_unit()  # a fault point counts per job (one variant, or a group), whichever worker runs it
            worker(cfg, run_dir, pvs, done_by, rows_by, send, partial(run_one, resources=resources), quiet)
            _release_memory()
    finally:
        resources.close()
        conn.close()


def progress_bars_lock_within_process() -> None:
    """Give tqdm (the bars of transformers, datasets and TRL) a thread lock instead of its default
    multiprocessing RLock, which under the spawn start method is a named semaphore registered with
    the resource tracker: a worker that is killed before its shutdown runs (a SIGTERM that waits
    behind a long native call, then the driver's SIGKILL) leaves it behind, and the tracker warns
    of a "leaked semaphore" at the run's end. A worker's bars go to its own stage logs, so no
    other process writes beside them."""
    from tqdm import tqdm

    tqdm.set_lock(threading.RLock())


_set_aside = False  # whether this process has set its library objects aside (once per process)


def preload_for(variants) -> tuple[str, ...]:
    """Modules a worker imports before its first job besides torch, transformers and peft: TRL
    and datasets when any of ``variants`` trains (~1.5 s, then not on the first training's path,
    and set aside from the garbage collector with the rest)."""
    return ("trl", "datasets") if any(not pv.spec.is_base() and not pv.spec.adapter for pv in variants) else ()


def _set_aside_library_objects(preload: tuple[str, ...] = ()) -> None:
    """Import torch, transformers and peft (after the thread and GPU settings above, which they
    read on import; every job imports them anyway) and move the objects that exist now out of
    the cyclic garbage collector's reach (``gc.freeze``, Python's documented way to stop
    scanning long-lived objects). Each full collection walked their ~380,000 objects: 0.3 s per
    ``gc.collect()``, which accelerate runs at the start of every training (3.8 s over
    sweep12's 12) and this worker between jobs; 0.03 s after this. Only what exists now is set
    aside, before any model: models, caches and everything a job makes are collected as before.
    ``preload`` names further modules to import first (:func:`preload_for`). Once per process: a
    later call (a Ray worker's next task) would freeze a finished job's leftovers too, so it does
    nothing."""
    import gc

    global _set_aside
    if _set_aside:
        return
    _set_aside = True

    try:
        import peft  # noqa: F401
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except Exception:  # noqa: BLE001 -- the first job meets the same error and records it, traceback and all
        return
    for name in preload:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 -- as above: the job that needs it records the error
            pass
    gc.collect()
    gc.freeze()


def _release_memory() -> None:
    """Between variants: collect the last variant's model and hand cached GPU memory back."""
    import gc

    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()
