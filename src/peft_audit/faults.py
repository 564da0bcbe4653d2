"""Fault-injection points for crash tests (the failpoints of FoundationDB or TiKV, reduced to one).

The pipeline calls :func:`point` at the places where a crash is worth testing: before, inside
and after each stage's store transaction, after each training step, generation batch, scoring
batch and judged chunk, and in the driver. ``tests/sweep/test_fault_injection.py`` kills a run
at each of them and checks that the resumed run ends with the same results as an uninterrupted
one. Two environment variables, read at each call (so a forked process can be armed after its
imports), drive them; without them a point costs one dictionary lookup:

* ``PEFT_AUDIT_FAULT=NAME`` or ``NAME#K``: the process kills itself with SIGKILL (``kill -9``:
  no ``finally`` block, no ``atexit``, no flush) the first (K-th) time it reaches point NAME;
* ``PEFT_AUDIT_FAULT_LOG=FILE``: every point reached appends a line ``PID NAME`` to FILE, written
  before the kill, so a test sees where each process was and where it died.

Point names: ``driver.variant_running``, ``store.<stage>.begin`` / ``.commit`` (inside the
transaction, before COMMIT) / ``.committed``, ``train.step``, ``train.saved`` (adapter complete,
before its atomic rename), ``generate.batch``, ``score.batch``, ``judge.chunk``,
``report.markdown_written``.
"""

from __future__ import annotations

import os
import signal

#: The environment variables that arm the points (see the module docstring).
FAULT_ENV = "PEFT_AUDIT_FAULT"
LOG_ENV = "PEFT_AUDIT_FAULT_LOG"

_reached: dict[str, int] = {}  # point -> times reached in this process (only while armed)


def new_unit() -> None:
    """Start counting afresh: a worker process calls this before each variant it runs, so
    ``NAME#K`` means the K-th time within one variant, as when each variant had its own process."""
    _reached.clear()


def point(name: str) -> None:
    """A named fault point: kill this process with SIGKILL if ``PEFT_AUDIT_FAULT`` names this
    point (and, with ``#K``, this is the K-th time it is reached); otherwise return at once."""
    fault, log = os.environ.get(FAULT_ENV), os.environ.get(LOG_ENV)
    if not fault and not log:
        return
    _reached[name] = n = _reached.get(name, 0) + 1
    if log:
        fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, f"{os.getpid()} {name}\n".encode())  # one write: lines of processes never mix
        finally:
            os.close(fd)
    if fault in (name, f"{name}#{n}"):
        os.kill(os.getpid(), signal.SIGKILL)
