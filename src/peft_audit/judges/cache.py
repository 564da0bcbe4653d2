"""A persistent judgment cache (SQLite), so re-running a judge on the same answers sends no
request. Keyed by sha256 over (judge, model, rubric version, prompt, response); values are the
verdict fields only (no request headers, so never an API key). Safe to use from several threads.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from pathlib import Path

from .base import Verdict


def cache_key(judge: str, model: str, rubric_version: str, prompt: str, response: str) -> str:
    """sha256 hex digest of the JSON list of the five parts (unambiguous separators)."""
    blob = json.dumps([judge, model, rubric_version, prompt, response], ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class JudgmentCache:
    """``get(key) -> Verdict | None`` and ``put(key, verdict)`` over a SQLite file."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(self.path, timeout=60, check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("CREATE TABLE IF NOT EXISTS judgments (key TEXT PRIMARY KEY, verdict TEXT NOT NULL)")

    def get(self, key: str) -> Verdict | None:
        with self._lock:
            row = self._conn.execute("SELECT verdict FROM judgments WHERE key=?", (key,)).fetchone()
        return Verdict(**json.loads(row[0])) if row else None

    def put(self, key: str, verdict: Verdict) -> None:
        payload = {k: getattr(verdict, k) for k in ("label", "score", "category", "rationale", "raw")}
        with self._lock:
            self._conn.execute("INSERT OR REPLACE INTO judgments VALUES (?, ?)", (key, json.dumps(payload)))

    def close(self) -> None:
        self._conn.close()
