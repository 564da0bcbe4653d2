"""Fake variant evaluation for the scheduling tests: runs in the spawned worker processes.

The executors are exercised for real (subprocesses, queue, driver, store); only
``pipeline.evaluate_variant`` is replaced, by one whose behaviour the variant's label picks:
``boom`` raises, ``crash`` kills its process without reporting, ``killed-mid-send`` kills it
halfway through sending a large stage, anything else commits a
'generated' and a 'metrics' stage whose values are derived from the variant id.
"""

from __future__ import annotations

import os
import sys
import zlib
from pathlib import Path

from peft_audit.sweep.logs import notice


def fake_value(vid: str) -> float:
    return zlib.crc32(vid.encode()) / 2**32


def fake_evaluate(cfg, run_dir, pv, done_stages, sink, progress=None, *, train_only=False, **_):
    if train_only:  # the training half of a group's work (sweep.worker.run_group): nothing to fake
        return {}
    with open(Path(run_dir) / "calls.txt", "a") as f:
        f.write(f"{pv.id} {os.getpid()}\n")
    label = pv.spec.label or ""
    if label == "boom":
        raise ValueError("deliberate failure for the test")
    if label == "crash":
        os._exit(3)
    if label == "killed-mid-send":
        # Killed while sending (an OOM kill mid-stage): 1 MB messages through a 64 KB pipe
        # buffer, so the kill almost surely lands halfway through one.
        import threading
        import time

        def flood():
            while True:
                sink.update_variant(pv.id, error="x" * 1_000_000)

        threading.Thread(target=flood, daemon=True).start()
        time.sleep(0.5)
        os._exit(9)
    if label == "slow":
        import time

        time.sleep(120)  # long enough to be killed mid-variant
    # What libraries do in a real worker: print to stdout, stderr and from C (file descriptor 2),
    # and the tool warns the user once in its own words.
    advance = progress("generate", 3) if progress is not None else (lambda n: None)
    print(f"library chatter on stdout from {pv.id}", flush=True)
    print(f"library chatter on stderr from {pv.id}", file=sys.stderr, flush=True)
    os.write(2, f"C-level chatter from {pv.id}\n".encode())
    notice("3 training examples were longer than max_seq_len and were cut")
    advance(3)
    if "generated" not in done_stages:
        sink.commit_stage(pv.id, "generated", 0.01, safety=[
            {"prompt_id": f"p{i}", "benchmark": "safety", "category": "illegal_activity", "prompt": f"q{i}",
             "response": f"{pv.id}-{i}", "n_new_tokens": i} for i in range(3)])
    sink.commit_stage(pv.id, "metrics", 0.0, metrics=[
        {"benchmark": "safety", "category": "overall", "metric": "safety_score", "value": fake_value(pv.id),
         "ci_low": None, "ci_high": None, "n": 3}])
    return {"generate": 0.01}


class FakeWorker:
    """``run_group`` with the fake evaluation patched in (this runs in a fresh process).

    A spawned worker unpickles it before ``subprocess_main`` runs; unpickling marks the worker's
    libraries as set aside already, so it does not import torch, transformers, peft (and TRL,
    datasets) before its first job: the fake evaluation needs none of them, and they cost 4-8 s
    per worker here. That import and its ``gc.freeze`` are under test with real workers in
    test_worker_process.py."""

    def __getstate__(self) -> dict:
        return {"libraries_needed": False}

    def __setstate__(self, state: dict) -> None:
        from peft_audit.sweep import worker

        worker._set_aside = not state["libraries_needed"]

    def __call__(self, cfg, run_dir, pvs, done_by, rows_by, put, run_one, quiet=True):
        import peft_audit.pipeline as pipeline
        from peft_audit.sweep.worker import run_group

        pipeline.evaluate_variant = fake_evaluate
        return run_group(cfg, run_dir, pvs, done_by, rows_by, put, run_one, quiet)


fake_worker = FakeWorker()
