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


def cache_key(judge: str, *parts: str) -> str:
    """sha256 hex digest of the JSON list ``[judge, *parts]`` (unambiguous separators); for the
    llm judge the parts are (model, rubric version, prompt, response)."""
    blob = json.dumps([judge, *parts], ensure_ascii=False)
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


class CachedJudge:
    """Any judge behind a :class:`JudgmentCache`: cached verdicts are served, the rest are asked
    of the judge in one batch, and verdicts with a safe value are stored (an ``unscored`` or
    ``judge_refused`` one is asked again next time).

    The key is ``cache_key(judge.name, *judge.cache_parts, prompt, response)``: a judge opts in by
    having ``cache_parts`` (what identifies its verdicts besides the pair: model, rubric version),
    so a changed model or rubric never gets old answers. Other attributes are the judge's.
    """

    def __init__(self, inner, cache: JudgmentCache):
        self.inner = inner
        self.cache = cache
        self.name = inner.name

    def __getattr__(self, attr: str):
        return getattr(self.__dict__["inner"], attr)

    def _key(self, prompt: str, response: str) -> str:
        return cache_key(self.inner.name, *self.inner.cache_parts, prompt, response)

    def judge(self, prompt: str, response: str) -> Verdict:
        return self.judge_batch([(prompt, response)])[0]

    def judge_batch(self, pairs) -> list[Verdict]:
        pairs = list(pairs)
        keys = [self._key(*p) for p in pairs]
        out: list[Verdict | None] = [self.cache.get(k) for k in keys]
        todo = [i for i, v in enumerate(out) if v is None]
        if todo:
            for i, v in zip(todo, self.inner.judge_batch([pairs[i] for i in todo])):
                out[i] = v
                if v.safe is not None:
                    self.cache.put(keys[i], v)
        return out  # type: ignore[return-value]
