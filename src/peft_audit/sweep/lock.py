"""One run per run directory: an exclusive lock held by the process that writes its store.

``RUN_DIR/run.lock`` is locked with ``fcntl.flock`` for as long as ``peft-audit run`` / ``audit``
works on the directory, and holds the holder's pid, host, start time and command line. A second
run on the same directory fails at once with :class:`RunDirBusy`, naming the holder (the CLI
exits 2). The operating system releases the lock when its holder dies, even by ``kill -9``, so a
lock file left by a dead run is stale by construction and is simply taken over; the file's
content is only information for the message.

On network file systems that do not support ``flock`` (some NFS mounts) locking raises
``OSError``; then the content decides: a lock written by a live process on this host, or by any
other host less than :data:`STALE_AFTER_S` ago without being released, is respected.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path

LOCK_FILE = "run.lock"
STALE_AFTER_S = 24 * 3600.0


class RunDirBusy(RuntimeError):
    """Another live run holds the run directory."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RunDirLock:
    """Context manager: hold ``RUN_DIR/run.lock`` exclusively or raise :class:`RunDirBusy`."""

    def __init__(self, run_dir: str | Path):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_FILE
        self._fh = None

    def _busy(self, holder: dict) -> RunDirBusy:
        who = (f"pid {holder.get('pid', '?')} on host {holder.get('host', '?')}, started "
               f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(holder.get('started', 0)))}")
        cmd = holder.get("command")
        return RunDirBusy(
            f"{self.run_dir} is in use by another peft-audit run ({who}"
            + (f": {cmd}" if cmd else "") + "). Wait for it to finish, or stop it, then run again; "
            "`peft-audit status " + str(self.run_dir) + "` shows its progress")

    def _read_holder(self) -> dict:
        try:
            return json.loads(self.path.read_text() or "{}")
        except (OSError, ValueError):
            return {}

    def acquire(self) -> "RunDirLock":
        import fcntl

        self.run_dir.mkdir(parents=True, exist_ok=True)
        fh = open(self.path, "a+", encoding="utf-8")
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.close()
            raise self._busy(self._read_holder()) from None
        except OSError:  # no flock on this file system: judge by the recorded holder
            holder = self._read_holder()
            if holder and not self._stale(holder):
                fh.close()
                raise self._busy(holder) from None
        me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(),
              "command": " ".join(sys.argv)}
        fh.seek(0)
        fh.truncate()
        fh.write(json.dumps(me))
        fh.flush()
        self._fh = fh
        return self

    @staticmethod
    def _stale(holder: dict) -> bool:
        if holder.get("host") == socket.gethostname():
            return not _pid_alive(int(holder.get("pid", 0) or 0))
        return time.time() - float(holder.get("started", 0)) > STALE_AFTER_S

    def release(self) -> None:
        if self._fh is None:
            return
        import fcntl

        try:
            self._fh.seek(0)
            self._fh.truncate()  # an empty lock file: nobody holds it
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)
        except OSError:
            pass
        finally:
            self._fh.close()
            self._fh = None

    def __enter__(self) -> "RunDirLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
