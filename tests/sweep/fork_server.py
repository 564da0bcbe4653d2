"""A fork server for the crash tests: imports the pipeline once, then runs each sweep attempt in
a forked child, so an attempt starts in milliseconds instead of the seconds that importing
torch, transformers and peft take.

It must run no torch operation itself: a forked child does not get the parent's OpenMP thread
pool back, so the first parallel op of a child of a parent that had one may hang. Each child
is the leader of its own process group; this server is a child subreaper (Linux), so workers
orphaned by a killed driver become its children and it can see when the last one is gone.

Protocol: one JSON object a line on stdin, one JSON reply a line on stdout.

    request  {"config": PATH, "run_dir": PATH, "in_process": bool, "fault": NAME[#K] | null,
              "trace": PATH, "log": PATH}
    replies  {"started": PID}, once forked (PID is also the attempt's process group), then
             {"pid": PID, "exit": int | null, "signal": int | null, "orphans": int, "orphans_s": float | null}

``exit`` is the child's exit status (0: the sweep returned), ``signal`` the signal that ended
it; ``orphans`` counts processes of its group that outlived it (workers whose driver was
killed), all gone ``orphans_s`` seconds after it, or killed by the server after
``ORPHAN_WAIT_S`` (then ``orphans_s`` is None). Every attempt runs with ``retry_failed``.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time

ORPHAN_WAIT_S = 20.0
PR_SET_CHILD_SUBREAPER = 36


def preload() -> None:
    """Import what a sweep imports lazily (no torch operation: see the module docstring)."""
    import peft  # noqa: F401
    import torch  # noqa: F401
    import transformers  # noqa: F401
    import transformers.models.llama.modeling_llama  # noqa: F401
    import trl  # noqa: F401

    import peft_audit.analysis  # noqa: F401
    import peft_audit.benchmarks.fairness  # noqa: F401
    import peft_audit.benchmarks.safety  # noqa: F401
    import peft_audit.judges.registry  # noqa: F401
    import peft_audit.models  # noqa: F401
    import peft_audit.pipeline  # noqa: F401
    import peft_audit.report  # noqa: F401
    import peft_audit.summary  # noqa: F401
    import peft_audit.sweep.executors.local  # noqa: F401
    import peft_audit.training  # noqa: F401
    import peft_audit.training.sft  # noqa: F401


def child(req: dict) -> None:
    """Run one attempt; never returns."""
    code = 1
    try:
        os.setpgid(0, 0)
        fd = os.open(req["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        from pathlib import Path

        from peft_audit import faults
        from peft_audit.config import load_config
        from peft_audit.pipeline import run_sweep
        from peft_audit.sweep.options import RunOptions

        os.environ.pop(faults.FAULT_ENV, None)
        if req["fault"]:
            os.environ[faults.FAULT_ENV] = req["fault"]
        os.environ[faults.LOG_ENV] = req["trace"]
        run_sweep(load_config(req["config"]), Path(req["run_dir"]),
                  RunOptions(in_process=req["in_process"], retry_failed=True))
        code = 0
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def reap_orphans(pgid: int) -> tuple[int, float | None]:
    """Wait for the processes left in group ``pgid`` (now children of this subreaper)."""
    t0, n = time.monotonic(), 0
    while True:
        try:
            pid, _ = os.waitpid(-pgid, os.WNOHANG)
        except ChildProcessError:
            return n, time.monotonic() - t0
        if pid:
            n += 1
            continue
        if time.monotonic() - t0 > ORPHAN_WAIT_S:
            os.killpg(pgid, signal.SIGKILL)
            while True:
                try:
                    os.waitpid(-pgid, 0)
                except ChildProcessError:
                    return n + 1, None
        time.sleep(0.05)


def main() -> None:
    import ctypes

    if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER) failed")
    preload()
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        req = json.loads(line)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            child(req)
        print(json.dumps({"started": pid}), flush=True)
        _, status = os.waitpid(pid, 0)
        orphans, orphans_s = reap_orphans(pid)
        print(json.dumps({"pid": pid, "exit": os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else None,
                          "signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
                          "orphans": orphans, "orphans_s": orphans_s}), flush=True)


if __name__ == "__main__":
    main()
