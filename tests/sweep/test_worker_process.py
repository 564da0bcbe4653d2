"""A worker process's start: library objects set aside from the garbage collector after the
thread settings, and what a job makes still collected."""

import os
import subprocess
import sys
import textwrap


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
