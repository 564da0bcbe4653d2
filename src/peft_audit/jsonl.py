"""JSON Lines: the one reader every data loader uses (training data, prompts, BBQ, labels).

Blank lines are skipped; each other line must be one JSON value. Errors name ``where:line``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any


class JSONLineError(ValueError):
    """One line that is not valid JSON (or not an object, where objects are required)."""


def parse_lines(lines: Iterable[str], where: str) -> Iterator[tuple[str, Any]]:
    """``(location, value)`` per non-blank line, location ``where:N`` (1-based). A line that is
    not JSON gives a :class:`JSONLineError` as its value instead of raising, so a loader that
    skips bad lines can go on; :func:`read_jsonl` raises it."""
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        loc = f"{where}:{n}"
        try:
            yield loc, json.loads(line)
        except json.JSONDecodeError as e:
            yield loc, JSONLineError(f"{loc}: not valid JSON ({e.msg} at column {e.colno})")


def read_jsonl(source: str | Path, *, text: str | None = None) -> list[dict[str, Any]]:
    """The objects of a JSONL file (or of ``text``, named ``source`` in errors). Raises
    :class:`JSONLineError` naming the line when one is not a JSON object."""
    if text is None:
        from .textio import read_text

        pairs = list(parse_lines(read_text(source).splitlines(), str(source)))
    else:
        pairs = list(parse_lines(text.splitlines(), str(source)))
    rows = []
    for loc, value in pairs:
        if isinstance(value, JSONLineError):
            raise value
        if not isinstance(value, dict):
            raise JSONLineError(f"{loc}: each line must be a JSON object, got {type(value).__name__}")
        rows.append(value)
    return rows
