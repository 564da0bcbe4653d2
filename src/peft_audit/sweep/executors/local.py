"""The local executor: each variant in a fresh subprocess on this machine, ``--jobs N`` at once.

A fresh (``spawn``) process per variant returns all its memory to the system when the variant
ends, and a crash (segfault, out-of-memory kill) takes only that variant down: the driver
records it as failed and goes on. Each worker streams its finished stages over its own pipe;
only the driver (this process) writes the store. One pipe per worker, not one shared
``multiprocessing.Queue``: a shared queue has one write lock for all workers, and a worker
killed while its feeder thread holds that lock (``kill -9``, out-of-memory kill, ``os._exit``)
leaves every other worker blocked forever on its last message, and the sweep with them.

With several GPUs and ``--jobs N``, job slot k sees only GPU ``k mod #GPUs`` (through
``CUDA_VISIBLE_DEVICES``), so N jobs spread over the GPUs. Bases come first in the plan, so
they start first; a variant does not wait for its base to
finish (its evaluation does not depend on the base's results), which keeps ``--jobs`` busy.
``RunOptions.in_process`` runs variants in this process instead (debugging, tests).
"""

from __future__ import annotations

import multiprocessing as mp
import os
from collections.abc import Callable
from multiprocessing.connection import wait
from pathlib import Path

from ..driver import Driver
from ..worker import run_variant, subprocess_main

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
        pending = list(todo)
        running: dict[str, mp.process.BaseProcess] = {}
        pipes: dict[str, object] = {}  # variant id -> read end of its worker's pipe (until EOF)
        slots: dict[str, int] = {}  # variant id -> job slot, so each GPU serves one job at a time
        jobs = max(1, self.opts.jobs)
        threads = threads_per_job(jobs)
        gpus = visible_gpus(cfg.device) if jobs > 1 else []
        try:
            while pending or running:
                while pending and len(running) < jobs and driver.may_start():
                    pv = pending.pop(0)
                    done, rows = driver.prepare(pv)
                    slot = min(set(range(jobs)) - set(slots.values()))
                    reader, writer = ctx.Pipe(duplex=False)
                    proc = ctx.Process(
                        target=subprocess_main, name=f"peft-audit-{pv.id}",
                        args=(self.worker, run_one, cfg, str(run_dir), pv, done, rows, writer, os.getpid(),
                              threads, gpu_for_slot(slot, gpus)),
                    )
                    proc.start()
                    writer.close()  # the worker holds the only write end: EOF when it exits
                    running[pv.id] = proc
                    pipes[pv.id] = reader
                    slots[pv.id] = slot
                if pending and not driver.may_start():
                    pending.clear()
                ready = wait(list(pipes.values()) + [p.sentinel for p in running.values()], timeout=POLL_S)
                for vid, reader in list(pipes.items()):
                    if reader in ready:
                        self._read(driver, vid, reader, pipes)
                for vid, proc in list(running.items()):
                    if proc.is_alive():
                        continue
                    proc.join()
                    # Everything it sent is in its pipe: read to EOF before judging how it ended.
                    while vid in pipes:
                        self._read(driver, vid, pipes[vid], pipes)
                    if vid not in driver.finished:
                        driver.lost(vid, f"worker process exited with code {proc.exitcode} before reporting "
                                         "(crash or out-of-memory kill?)")
                    del running[vid]
                    del slots[vid]
                driver.heartbeat()
        except BaseException as e:
            # Ctrl-C, SIGTERM or a bug in the driver: no worker may outlive it (they are not
            # daemons, so the interpreter would wait for them at exit).
            for proc in running.values():
                proc.terminate()
            for proc in running.values():
                proc.join(timeout=10)
                if proc.is_alive():
                    proc.kill()
            if isinstance(e, KeyboardInterrupt):
                driver.interrupted(list(running))
            raise
        finally:
            for reader in pipes.values():
                reader.close()

    @staticmethod
    def _read(driver: Driver, vid: str, reader, pipes: dict) -> None:
        """Apply one message from ``vid``'s pipe; at EOF (or a message cut off by a kill) close it."""
        try:
            msg = reader.recv()
        except (EOFError, OSError):
            reader.close()
            del pipes[vid]
            return
        driver.handle(msg)
