"""A worker process's start: library objects set aside from the garbage collector after the
thread settings, and what a job makes still collected."""

import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path


def test_worker_sets_library_objects_aside_after_its_thread_settings():
    code = textwrap.dedent("""
        import gc, os
        os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = "1"
        from peft_audit.sweep.worker import _set_aside_library_objects
        _set_aside_library_objects()
        import torch
        assert torch.get_num_threads() == 1, torch.get_num_threads()  # torch read the settings
        assert gc.get_freeze_count() > 100_000, gc.get_freeze_count()

        class Node:
            pass

        a, b = Node(), Node()
        a.other, b.other = b, a  # a cycle made after the freeze, as a job's model would be
        del a, b
        assert gc.collect() >= 2  # still collected
        print("ok")
    """)
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "ok"


def test_a_ray_task_sets_library_objects_aside_once_per_worker_process():
    """Ray reuses a CPU worker process for later tasks: the first task sets the library objects
    aside; a later one must not freeze what the first job left (it is collected instead)."""
    code = textwrap.dedent("""
        import gc
        from peft_audit.sweep.executors import ray as ray_executor

        jobs = []
        ray_executor.run_group = lambda *args: jobs.append(args)
        class Queue:
            put = None
        ray_executor._ray_task(None, "run", [], {}, {}, Queue(), lambda *a, **k: None)
        frozen = gc.get_freeze_count()
        assert frozen > 100_000, frozen

        class Node:
            pass

        a, b = Node(), Node()
        a.other, b.other = b, a  # a cycle left by the first job
        del a, b
        ray_executor._ray_task(None, "run", [], {}, {}, Queue(), lambda *a, **k: None)
        assert len(jobs) == 2
        assert gc.get_freeze_count() == frozen, (gc.get_freeze_count(), frozen)  # set aside once
        assert not [o for o in gc.get_objects() if type(o).__name__ == "Node"]  # collected after the job
        print("ok")
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "ok"


def test_a_worker_killed_mid_bar_leaves_no_semaphore_behind():
    """tqdm's default lock is a named semaphore under spawn: a worker killed after drawing a bar
    would leave it for the resource tracker to report ("leaked semaphore"). The worker's lock
    setting must keep the bars of transformers / datasets / TRL on a thread lock."""
    code = textwrap.dedent("""
        import multiprocessing as mp, os, signal, time

        def child(fixed, drawn):
            if fixed:
                from peft_audit.sweep.worker import progress_bars_lock_within_process
                progress_bars_lock_within_process()
            from tqdm.auto import tqdm
            for _ in tqdm(range(3)):
                pass
            drawn.send("drawn")
            time.sleep(60)

        if __name__ == "__main__":
            ctx = mp.get_context("spawn")
            for fixed in (False, True):
                # a pipe, not an Event: an Event is a semaphore of its own for the tracker to count
                wait, drawn = ctx.Pipe(duplex=False)
                p = ctx.Process(target=child, args=(fixed, drawn))
                p.start()
                assert wait.poll(60) and wait.recv() == "drawn"  # killed mid-run, after its bar
                os.kill(p.pid, signal.SIGKILL)
                p.join()
                print("fixed" if fixed else "default", flush=True)
                time.sleep(1)
    """)
    script = Path(tempfile.mkdtemp()) / "bars.py"
    script.write_text(code)
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")})
    text = out.stdout + out.stderr
    # one tracker serves both children and reports their total at the end: the default lock (the
    # control, so the test can fail) leaks one semaphore, the worker's lock none
    assert "There appear to be 1 leaked semaphore objects" in text, text[-2000:]
