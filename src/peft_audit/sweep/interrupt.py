"""Stopping a sweep by signal: Ctrl-C (SIGINT) and SIGTERM end it the same orderly way.

Inside :func:`stop_signals`, SIGTERM raises :class:`Stopped` (a ``KeyboardInterrupt``) in the
main thread, as SIGINT already does, so one path handles both: executors terminate their
workers, the variants that were running are marked ``interrupted`` (a resumed run redoes them
from their last finished stage), and the command line prints how to resume and exits with the
shell's convention for death by that signal, 128 + signal number (130 for SIGINT, 143 for SIGTERM).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class Stopped(KeyboardInterrupt):
    """The sweep was stopped by a signal; ``exit_code`` is 128 + its number."""

    def __init__(self, signum: int = signal.SIGINT):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.exit_code = 128 + signum


def exit_code_of(e: KeyboardInterrupt) -> int:
    return getattr(e, "exit_code", 128 + signal.SIGINT)


@contextmanager
def stop_signals() -> Iterator[None]:
    """Turn SIGTERM into :class:`Stopped` while the block runs (main thread only; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _raise(signum, frame):
        raise Stopped(signum)

    old = signal.signal(signal.SIGTERM, _raise)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)
