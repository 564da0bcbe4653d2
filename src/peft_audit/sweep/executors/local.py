"""The local executor: each variant in a fresh subprocess on this machine, ``--jobs N`` at once.

A fresh (``spawn``) process per variant returns all its memory to the system when the variant
ends, and a crash (segfault, out-of-memory kill) takes only that variant down: the driver
records it as failed and goes on. Workers stream their finished stages over a
``multiprocessing`` queue; only the driver (this process) writes the store.

With several GPUs and ``--jobs N``, job slot k sees only GPU ``k mod #GPUs`` (through
``CUDA_VISIBLE_DEVICES``), so N jobs spread over the GPUs. Bases come first in the plan, so
they start first; a variant does not wait for its base to
finish (its evaluation does not depend on the base's results), which keeps ``--jobs`` busy.
``RunOptions.in_process`` runs variants in this process instead (debugging, tests).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue as queue_mod
from collections.abc import Callable
from pathlib import Path

from ..driver import Driver
from ..worker import run_variant, subprocess_main

POLL_S = 0.5


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
    def __init__(self, opts, worker: Callable = run_variant):
        self.opts = opts
        self.worker = worker  # a module-level function (picklable by name for spawn)

    def run(self, cfg, run_dir: Path, todo, store, run_one) -> dict[str, float]:
        with Driver(cfg, run_dir, store, todo, self.opts, "local") as driver:
            if self.opts.in_process:
                self._run_in_process(driver, cfg, run_dir, todo, store, run_one)
            else:
                self._run_subprocesses(driver, cfg, run_dir, todo, run_one)
            return driver.stage_seconds

    def _run_in_process(self, driver: Driver, cfg, run_dir: Path, todo, store, run_one) -> None:
        for pv in todo:
            if not driver.may_start():
                break
            done, _ = driver.prepare(pv)
            try:
                status, timings = run_one(cfg, Path(run_dir), pv, store, done)
            except KeyboardInterrupt:
                driver.interrupted([pv.id])
                raise
            driver.finish(pv.id, status, timings)

    def _run_subprocesses(self, driver: Driver, cfg, run_dir: Path, todo, run_one) -> None:
        ctx = mp.get_context("spawn")
        messages = ctx.Queue()
        pending = list(todo)
        running: dict[str, mp.process.BaseProcess] = {}
        slots: dict[str, int] = {}  # variant id -> job slot, so each GPU serves one job at a time
        jobs = max(1, self.opts.jobs)
        threads = max(1, (os.cpu_count() or 1) // jobs) if jobs > 1 else None
        gpus = visible_gpus(cfg.device) if jobs > 1 else []
        try:
            while pending or running:
                while pending and len(running) < jobs and driver.may_start():
                    pv = pending.pop(0)
                    done, rows = driver.prepare(pv)
                    slot = min(set(range(jobs)) - set(slots.values()))
                    proc = ctx.Process(
                        target=subprocess_main, name=f"peft-audit-{pv.id}",
                        args=(self.worker, run_one, cfg, str(run_dir), pv, done, rows, messages, os.getpid(),
                              threads, gpu_for_slot(slot, gpus)),
                    )
                    proc.start()
                    running[pv.id] = proc
                    slots[pv.id] = slot
                if pending and not driver.may_start():
                    pending.clear()
                self._drain(driver, messages, timeout=POLL_S)
                for vid, proc in list(running.items()):
                    if proc.is_alive():
                        continue
                    proc.join()
                    # Its feeder thread flushed before exit: read everything it sent first.
                    self._drain(driver, messages, timeout=0.05, until_empty=True)
                    if vid not in driver.finished:
                        driver.lost(vid, f"worker process exited with code {proc.exitcode} before reporting "
                                         "(crash or out-of-memory kill?)")
                    del running[vid]
                    del slots[vid]
                driver.heartbeat()
        except KeyboardInterrupt:
            for proc in running.values():
                proc.terminate()
            for proc in running.values():
                proc.join(timeout=10)
            driver.interrupted(list(running))
            raise
        finally:
            messages.close()

    @staticmethod
    def _drain(driver: Driver, messages, timeout: float, until_empty: bool = False) -> None:
        try:
            driver.handle(messages.get(timeout=timeout))
            while True:
                driver.handle(messages.get(timeout=0.05 if until_empty else 0.0) if until_empty
                              else messages.get_nowait())
        except queue_mod.Empty:
            return
