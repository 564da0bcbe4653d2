"""The Ray executor: one Ray task per job, on a local Ray instance or a cluster.

A job is one variant, or a group of variants that share one loaded base
(:mod:`peft_audit.sweep.groups`, the sweep's ``share_base``), as with the local executor. Each
task asks for ``num_gpus=1`` when the cluster has GPUs, else ``num_cpus=1``, and runs
:func:`peft_audit.sweep.worker.run_group`. Its stage messages stream to the driver through a
``ray.util.queue.Queue``; the driver alone writes the store, exactly as with the local
executor, so results are the same. Ray retries a task whose node died (pre-emption) per its
own ``max_retries`` rule; stage rows are keyed per sample, so a retried stage never duplicates
(a retried group redoes its members from the stages they had when it was handed out).

On a multi-node cluster, ``RUN_DIR`` must be on a filesystem all nodes share (trained
adapters are written there), and every node needs peft-audit installed in the same version.
``ray`` is an optional extra: ``pip install 'peft-audit[ray]'``.
"""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path

from .. import MissingDependencyError
from ..driver import Driver, console
from ..groups import take_group
from ..resources import WorkerResources
from ..worker import _release_memory, _set_aside_library_objects, preload_for, run_group

POLL_S = 0.5
INSTALL_HINT = "the ray executor needs Ray: pip install 'peft-audit[ray]'  (or: pip install 'ray[default]')"


def require_ray():
    """Import ray or raise :class:`MissingDependencyError` saying how to install it."""
    try:
        import ray
    except ImportError:
        raise MissingDependencyError(INSTALL_HINT) from None
    return ray


def _ray_task(cfg, run_dir: str, pvs, done_by, rows_by, queue, run_one, quiet: bool = True) -> None:
    """One job in a Ray worker process. Ray reuses a CPU worker for later tasks, so, as in the
    local executor's workers, the library objects are set aside from the garbage collector once
    per process (accelerate's ``gc.collect()`` at every training would walk them each time) and a
    finished job's objects are collected before the next."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    _set_aside_library_objects(preload_for(pvs))
    try:
        with WorkerResources() as resources:  # the task's backend and judges, closed when it ends
            run_group(cfg, run_dir, pvs, done_by, rows_by, queue.put, partial(run_one, resources=resources), quiet)
    finally:
        _release_memory()


class RayExecutor:
    def __init__(self, opts):
        self.opts = opts
        self.ray = require_ray()  # fail before any work if Ray is missing

    def _connect(self) -> None:
        ray = self.ray
        if ray.is_initialized():
            return  # e.g. a test or notebook that called ray.init() itself
        if self.opts.ray_address:
            ray.init(address=self.opts.ray_address, log_to_driver=self.opts.verbose)
        else:
            ray.init(include_dashboard=False, log_to_driver=self.opts.verbose)

    def run(self, cfg, run_dir: Path, todo, store, run_one) -> dict[str, float]:
        ray = self.ray
        from ray.util.queue import Empty, Queue

        self._connect()
        gpus = ray.cluster_resources().get("GPU", 0)
        # max_calls=1: a fresh worker process per GPU job, so its GPU memory is returned (Ray's own
        # default for GPU tasks, stated here because it matters). CPU workers are reused across
        # jobs, which saves the library imports each time.
        resources = {"num_gpus": 1, "max_calls": 1} if gpus else {"num_cpus": 1}
        console.print(f"Ray: {ray.cluster_resources().get('CPU', 0):g} CPUs, {gpus:g} GPUs; one task per variant "
                      f"or group sharing a base, with {resources}")
        task = ray.remote(**resources)(_ray_task)
        messages = Queue(actor_options={"num_cpus": 0})
        run_dir_s = str(Path(run_dir).resolve())

        def drain() -> None:
            while True:
                try:
                    driver.handle(messages.get_nowait())
                except Empty:
                    return

        with Driver(cfg, run_dir, store, todo, self.opts, "ray") as driver:
            refs: dict = {}
            pending = list(todo)
            try:
                # Submit in plan order (bases first); Ray queues what does not fit yet. Submission is
                # throttled to the cluster's slots so --max-hours can still stop new starts.
                slots = max(1, int(gpus) if gpus else int(ray.cluster_resources().get("CPU", 1)))
                while pending or refs:
                    while pending and len(refs) < slots and driver.may_start():
                        group = take_group(cfg, pending, driver.stages_done, slots, driver.failed_before)
                        prepared = {pv.id: driver.prepare(pv, grouped=len(group) > 1) for pv in group}
                        refs[task.remote(cfg, run_dir_s, group, {v: p[0] for v, p in prepared.items()},
                                         {v: p[1] for v, p in prepared.items()}, messages, run_one,
                                         not self.opts.verbose)] = list(prepared)
                    if pending and not driver.may_start():
                        pending.clear()
                    ready, _ = ray.wait(list(refs), num_returns=1, timeout=POLL_S) if refs else ([], [])
                    drain()
                    for ref in ready:
                        vids = refs.pop(ref)
                        try:
                            ray.get(ref)
                        except Exception as e:  # the task itself died (worker crash, lost node)
                            drain()
                            for vid in vids:
                                driver.lost(vid, f"Ray task failed: {type(e).__name__}: {str(e)[:500]}")
                        drain()
                        for vid in vids:
                            if vid not in driver.finished:
                                driver.lost(vid, "Ray task ended without reporting")
                    driver.heartbeat()
            except KeyboardInterrupt:
                for ref in refs:
                    ray.cancel(ref, force=True)
                driver.interrupted([vid for vids in refs.values() for vid in vids])
                raise
            finally:
                ray.kill(messages.actor)
            return driver.stage_seconds
