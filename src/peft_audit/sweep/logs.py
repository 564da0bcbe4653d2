"""Where other libraries' output goes: ``RUN_DIR/logs/<variant>/<stage>.log``, not the terminal.

A variant's worker (a spawned process or a Ray task) runs transformers, peft, trl and datasets,
which print progress bars for loading and tokenising, loss dictionaries per training step and
``FutureWarning`` s. :class:`StageLogs` points the worker's file descriptors 1 and 2 at one log
file per stage (``train.log``, ``load.log``, ``generate.log``, ``judge.log``, ``bbq.log``, ...),
so whatever is printed, by Python or by C code, lands next to the run instead of burying the
tool's own progress. The terminal keeps the driver's progress and the notices a variant sends
in the tool's words (:func:`notice`). ``peft-audit run --verbose`` leaves the descriptors alone.

Files are appended to, each stage start headed by a line with the time and pid, so a resumed
run's log follows the interrupted one. The directory name is the variant's readable label,
made safe for a file name, then its id (``lora-sft-lr-1e-3-1-ep-3ae33679ed4b``): ``ls`` shows
which variant a folder belongs to, and the id keeps it unique.
"""

from __future__ import annotations

import os
import re
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

from ..shown_text import markup_safe

LOGS_DIR = "logs"


def describe_seconds(s: float | None, *, estimate: bool = False) -> str:
    """A duration as the terminal shows it: ``45 s``, ``12 min 05 s``, ``2 h 05 min``; with
    ``estimate``, no more precision than an estimate has (``45 s``, ``12 min``, ``2.1 h``).
    ``unknown`` for None. The one formatter of the driver, ``status`` and ``plan --estimate``."""
    if s is None:
        return "unknown"
    if s < 90:
        return f"{s:.0f} s"
    if estimate:
        return f"{s / 60:.0f} min" if s < 5400 else f"{s / 3600:.1f} h"
    s = int(round(s))
    return f"{s // 60} min {s % 60:02d} s" if s < 5400 else f"{s // 3600} h {s % 3600 // 60:02d} min"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-.").lower()[:80]


def variant_log_dir(run_dir: str | Path, vid: str, label: str) -> Path:
    """``RUN_DIR/logs/<label slug>-<id>``: the folder of one variant's stage logs."""
    slug = _slug(label)
    return Path(run_dir) / LOGS_DIR / (f"{slug}-{vid}" if slug else vid)


def stage_log_name(stage: str) -> str:
    """``generate`` -> ``generate.log``; ``HarmBench generate`` -> ``harmbench-generate.log``."""
    return f"{_slug(stage) or 'stage'}.log"


class StageLogs:
    """Send this process's stdout and stderr (file descriptors 1 and 2) to one file per stage.

    :meth:`switch` starts a stage's file; :meth:`close` restores the descriptors the process had
    (a Ray worker runs other tasks afterwards). Python's ``sys.stdout``/``sys.stderr`` objects
    are flushed first, so nothing buffered before the switch lands in the wrong file.
    """

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self._saved: tuple[int, int] | None = None
        self._file = None
        self.current: Path | None = None

    def switch(self, stage: str) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / stage_log_name(stage)
        if path == self.current:
            return path
        _flush()
        f = open(path, "ab", buffering=0)  # noqa: SIM115 (kept open while it is fd 1 and 2)
        f.write(f"===== {time.strftime('%Y-%m-%d %H:%M:%S')} pid {os.getpid()}: {stage} =====\n".encode())
        if self._saved is None:
            self._saved = (os.dup(1), os.dup(2))
        os.dup2(f.fileno(), 1)
        os.dup2(f.fileno(), 2)
        if self._file is not None:
            self._file.close()
        self._file, self.current = f, path
        return path

    def close(self) -> None:
        if self._saved is None:
            return
        _flush()
        os.dup2(self._saved[0], 1)
        os.dup2(self._saved[1], 2)
        for fd in self._saved:
            os.close(fd)
        self._saved = None
        if self._file is not None:
            self._file.close()
        self._file = self.current = None


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (AttributeError, ValueError, OSError):
            pass


class Notice(UserWarning):
    """A warning meant for the user (a dropped training example, a skipped category): shown
    once on the terminal in the tool's words even when other libraries' output goes to logs."""


def notice(text: str) -> None:
    """Warn the user through the driver's terminal (once per text), whatever the executor."""
    warnings.warn(text, Notice, stacklevel=2)


_SHOWN: set[str] = set()  # the notices shown by this run (cleared when a run starts)


def forget_notices() -> None:
    """A new run starts: every notice may be shown once again."""
    _SHOWN.clear()


def show_once(console, text: str, who: str | None = None) -> None:
    """Print a notice on the driver's ``console`` unless this process already showed that text."""
    if text not in _SHOWN:
        _SHOWN.add(text)
        shown = markup_safe(f"{who + ': ' if who else ''}{text}", multiline=True)
        console.print(f"[yellow]note[/]   {shown}", soft_wrap=True, highlight=False)


def route_notices(send: Callable[[str], None], other: Callable[[str], None] | None = None) -> Callable[[], None]:
    """Send every :class:`Notice` raised in this process to ``send`` (the driver prints it). Other
    warnings go to ``other`` as the text Python would print, or keep Python's handling (into the
    stage log of a worker) without it. Returns the function that undoes it."""
    previous = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, Notice):
            send(str(message))
        elif other is not None:
            other(warnings.formatwarning(message, category, filename, lineno, line))
        else:
            previous(message, category, filename, lineno, file, line)

    warnings.showwarning = show
    # "always": a notice repeated by a second variant in the same process is still sent; the
    # driver shows each text once.
    warnings.simplefilter("always", Notice)

    def undo() -> None:
        warnings.showwarning = previous

    return undo
