"""The fault points of :mod:`peft_audit.faults`: inert unless armed, SIGKILL at the armed point
(the K-th time with ``NAME#K``), every point reached logged before the kill. The crash test that
uses them on the whole pipeline is tests/sweep/test_fault_injection.py."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from peft_audit import faults

SCRIPT = ("from peft_audit import faults\n"
          "for name in ['a', 'b', 'a', 'a']:\n"
          "    faults.point(name)\n"
          "print('survived', flush=True)\n")


def run(tmp_path, **env) -> tuple[subprocess.CompletedProcess, list[str]]:
    log = tmp_path / "points.log"
    env = {**{k: v for k, v in os.environ.items() if k not in (faults.FAULT_ENV, faults.LOG_ENV)},
           faults.LOG_ENV: str(log), **env}
    proc = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=60)
    lines = log.read_text().splitlines() if log.is_file() else []
    assert all(line.split(" ", 1)[0].isdigit() for line in lines)  # "PID NAME"
    return proc, [line.split(" ", 1)[1] for line in lines]


def test_unarmed_points_do_nothing(monkeypatch):
    monkeypatch.delenv(faults.FAULT_ENV, raising=False)
    monkeypatch.delenv(faults.LOG_ENV, raising=False)
    faults.point("store.generated.commit")  # this test process goes on


@pytest.mark.parametrize(("fault", "reached"), [
    ("a", ["a"]),
    ("b", ["a", "b"]),
    ("a#2", ["a", "b", "a"]),
    ("a#3", ["a", "b", "a", "a"]),
])
def test_armed_point_kills_with_sigkill_after_logging(tmp_path, fault, reached):
    proc, logged = run(tmp_path, **{faults.FAULT_ENV: fault})
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert "survived" not in proc.stdout
    assert logged == reached


@pytest.mark.parametrize("fault", ["a#4", "c", "c#1"])
def test_point_not_reached_that_often_lets_the_process_finish(tmp_path, fault):
    proc, logged = run(tmp_path, **{faults.FAULT_ENV: fault})
    assert proc.returncode == 0 and "survived" in proc.stdout, proc.stderr
    assert logged == ["a", "b", "a", "a"]
