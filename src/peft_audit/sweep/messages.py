"""Stage messages: how a worker (subprocess or Ray task) hands its finished stages to the driver.

A worker never writes the store. It runs the ``run_one`` it was handed with a
:class:`MessageSink`, which turns each ``commit_stage`` / ``update_variant`` call into a plain
tuple and hands it to ``put`` (the send end of a worker's pipe, a Ray queue, or a list). The driver
applies the tuples to the store in the order they were sent with :func:`apply_message`, so a
stage lands in one store transaction exactly as in an in-process run.

Message shapes (all picklable builtins)::

    ("update_variant", vid, fields)            fields: dict for Store.update_variant
    ("commit_stage", vid, stage, seconds, rows) rows: dict table-keyword -> list of dicts
    ("finished", vid, status, timings)          last message of a worker: 'done' | 'failed'
    ("progress", vid, stage, total)             a stage starts (total units, or None); display only
    ("advance", vid, n)                         n more units of that stage done; display only
    ("notice", vid, text)                       a warning for the user, in the tool's words
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..store import Store

Message = tuple

#: Message kinds the driver shows and never writes to the store.
DISPLAY_ONLY = ("progress", "advance", "notice")


class MessageSink:
    """A :class:`peft_audit.pipeline.StageSink` that sends messages instead of writing.

    ``stored_rows`` maps a table name to the rows the driver already holds for this variant
    (needed when a resumed variant continues after a stage done in an earlier run); it is
    served by :meth:`rows`, so the worker never opens the store file.
    """

    def __init__(self, put: Callable[[Message], None], stored_rows: dict[str, list[dict]] | None = None):
        self._put = put
        self._stored = stored_rows or {}

    def commit_stage(self, vid: str, stage: str, seconds: float, **rows: Any) -> None:
        self._put(("commit_stage", vid, stage, float(seconds), {k: list(v) for k, v in rows.items()}))

    def update_variant(self, vid: str, **fields: Any) -> None:
        self._put(("update_variant", vid, dict(fields)))

    def rows(self, table: str, vid: str) -> list[dict]:
        if table not in self._stored:
            raise KeyError(
                f"worker for variant {vid} needs stored {table} rows the driver did not send; "
                "this is a bug in the executor (report it with the run directory)"
            )
        return self._stored[table]


def apply_message(store: Store, msg: Message) -> None:
    """Write one worker message into ``store`` (one transaction). 'finished' and the display-only
    kinds write nothing."""
    kind = msg[0]
    if kind == "commit_stage":
        _, vid, stage, seconds, rows = msg
        store.commit_stage(vid, stage, seconds, **rows)
    elif kind == "update_variant":
        _, vid, fields = msg
        store.update_variant(vid, **fields)
    elif kind not in ("finished", *DISPLAY_ONLY):
        raise ValueError(f"unknown worker message kind {kind!r}")


def resume_tables() -> tuple[str, ...]:
    """The tables every registered benchmark reads back when resuming, in registry order."""
    from ..benchmarks.registry import BENCHMARKS

    return tuple(dict.fromkeys(t for b in BENCHMARKS.values() for t in b.resume_tables))


def stored_rows_for(store: Store, vid: str, done_stages: set[str]) -> dict[str, list[dict]]:
    """Rows of earlier stages a resumed variant may need (empty when it starts from scratch)."""
    if not done_stages - {"trained"}:
        return {t: [] for t in resume_tables()}
    return {t: store.rows(t, vid) for t in resume_tables()}
