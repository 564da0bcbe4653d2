"""JSON Lines: the one reader every data loader uses (training data, prompts, BBQ, labels).

Blank lines are skipped; each other line must be one JSON value. Errors name ``where:line``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from .textio import InputFileError, read_text


class JSONLineError(InputFileError):
    """One line that is not valid JSON (or not an object, where objects are required)."""


def parse_lines(lines: Iterable[str], where: str) -> Iterator[tuple[str, Any]]:
    """``(location, value)`` per non-blank line, location ``where:N`` (1-based). A line that is
    not JSON gives a :class:`JSONLineError` as its value instead of raising, so a loader that
    skips bad lines can go on; :func:`read_jsonl` raises it."""
    for n, line in enumerate(lines, 1):
        if n == 1:
            line = line.removeprefix("\ufeff")  # a byte-order mark, as some editors write
        if not line.strip():
            continue
        loc = f"{where}:{n}"
        try:
            yield loc, json.loads(line)
        except json.JSONDecodeError as e:
            yield loc, JSONLineError(f"{loc}: not valid JSON ({e.msg} at column {e.colno})")


def read_jsonl(source: str | Path, *, text: str | None = None, what: str = "file") -> list[dict[str, Any]]:
    """The objects of a JSONL file (or of ``text``, named ``source`` in errors). Raises
    :class:`JSONLineError` naming the line when one is not a JSON object."""
    return [row for _, row in read_records(source, text=text, what=what)]


def read_records(source: str | Path, *, text: str | None = None, what: str = "file") -> list[tuple[str, dict[str, Any]]]:
    """:func:`read_jsonl` with each object's location, ``(file:N, object)``. UTF-8 with or without
    a byte-order mark; blank lines skipped; :class:`JSONLineError` naming the line of the first
    line that is not JSON or not an object (an array, a string, a number, null)."""
    if text is None:
        text = read_text(source, what)
    rows = []
    # split at "\n" only: str.splitlines also splits at U+2028 and others, which JSON strings may hold
    for loc, value in parse_lines(text.split("\n"), str(source)):
        if isinstance(value, JSONLineError):
            raise value
        if not isinstance(value, dict):
            raise JSONLineError(f"{loc}: each line must be a JSON object, got {_json_kind(value)}")
        rows.append((loc, value))
    return rows


def _json_kind(value: Any) -> str:
    """The JSON name of a parsed value's type (an array, not a Python list)."""
    names = {list: "an array", str: "a string", bool: "true/false", int: "a number", float: "a number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def read_json_list(source: str | Path, *, what: str = "file") -> list[tuple[str, dict[str, Any]]]:
    """``(location, object)`` of a .json file holding one list of objects; location ``file item N``.
    :class:`JSONLineError` naming the line of bad JSON, or saying the file is not such a list."""
    try:
        data = json.loads(read_text(source, what))
    except json.JSONDecodeError as e:
        raise JSONLineError(f"{source}:{e.lineno}: not valid JSON ({e.msg} at column {e.colno})") from None
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise JSONLineError(f"{source}: a .json {what} must hold a list of objects; use .jsonl for one object per line")
    return [(f"{source} item {i}", row) for i, row in enumerate(data, 1)]
