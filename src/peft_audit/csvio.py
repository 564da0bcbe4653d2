"""The one CSV dialect the tool writes: every CSV reads back row for row.

Responses hold line breaks of every kind. pandas' ``to_csv`` ends rows with ``"\\n"`` and quotes
only fields containing a character of that terminator, so a field with a bare carriage return
went out unquoted and split its row when read back (a judged 602-row file came back as 604
rows). Ending rows with ``"\\r\\n"`` (RFC 4180) makes the csv module quote any field holding
``\\r`` or ``\\n``, and pandas and the csv module then read the file back row for row.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import IO, Any

from .textio import InputFileError, read_text

#: Writer options for pandas ``to_csv`` and for ``csv.writer`` / ``csv.DictWriter``.
CSV_DIALECT: dict = {"lineterminator": "\r\n", "quoting": csv.QUOTE_MINIMAL}


def write_frame_csv(df, path: Path) -> Path:
    """Write a DataFrame (no index) to ``path`` in :data:`CSV_DIALECT`; returns ``path``."""
    df.to_csv(path, index=False, **CSV_DIALECT)
    return Path(path)


def csv_writer(f: IO[str]):
    """A ``csv.writer`` in :data:`CSV_DIALECT` (open ``f`` with ``newline=""``)."""
    return csv.writer(f, **CSV_DIALECT)


def csv_dict_writer(f: IO[str], fieldnames, **kwargs):
    """A ``csv.DictWriter`` in :data:`CSV_DIALECT` (open ``f`` with ``newline=""``)."""
    return csv.DictWriter(f, fieldnames=fieldnames, **CSV_DIALECT, **kwargs)


class CSVFormatError(InputFileError):
    """A CSV file the tool cannot read as a table; the message names the file and line."""


def read_csv_records(source: str | Path, *, text: str | None = None, what: str = "CSV file", header: bool = True,
                     field_limit: int | None = None,
                     limit_key: str | None = None) -> tuple[list[str], list[tuple[str, Any]]]:
    """The records of a CSV file (or of ``text``, named ``source`` in errors) as
    ``(header, [(location, record)])``; ``location`` is ``file:N``, N the record's first line.

    With ``header`` each record is a dict keyed by the header row's names, else a list of fields.
    UTF-8 with or without a byte-order mark (:func:`peft_audit.textio.read_text`); blank lines
    are skipped. Raises :class:`CSVFormatError` naming the line for a record with more or fewer
    fields than the header (with ``header``), an empty or repeated header name, a field over
    ``field_limit`` characters (``limit_key``: the setting that raises it; None: no limit) and
    any other csv error (an unclosed quote). An empty file gives ``([], [])``.
    """
    if text is None:
        text = read_text(source, what)
    text = text.removeprefix("\ufeff")
    consumed: list[tuple[int, str]] = []  # (line number, text) of each physical line the parser read

    def lines():
        for number, line in enumerate(io.StringIO(text, newline=""), 1):
            consumed.append((number, line))
            yield line

    # The limit is the csv module's, process-wide: set for this read only.
    previous = csv.field_size_limit(_C_LONG_MAX if field_limit is None else field_limit)
    reader = csv.reader(lines())
    records: list[tuple[str, Any]] = []
    names: list[str] = []
    done = 0
    try:
        for fields in reader:
            # A quoted field may span lines and blank lines are skipped: name the record's first line.
            start = next((n for n, line in consumed[done:] if line.strip()), consumed[-1][0])
            done = len(consumed)
            loc = f"{source}:{start}"
            if not fields or (len(fields) == 1 and not fields[0].strip() and '"' not in consumed[-1][1]):
                continue  # a blank line
            if header and not names:
                names = [f.strip() for f in fields]
                _check_header(names, loc)
                continue
            if header:
                if len(fields) != len(names):
                    raise CSVFormatError(
                        f"{loc}: {len(fields)} fields, but the header names {len(names)}; quote fields that hold "
                        "commas or line breaks, and give every row all the header's columns")
                records.append((loc, dict(zip(names, fields))))
            else:
                records.append((loc, fields))
    except csv.Error as e:
        loc = f"{source}:{next((n for n, line in consumed[done:] if line.strip()), consumed[-1][0] if consumed else 1)}"
        if "field larger than field limit" in str(e):
            how = f"raise {limit_key}" if limit_key else "shorten it"
            raise CSVFormatError(f"{loc}: a field is longer than {field_limit} characters; {how}") from None
        raise CSVFormatError(f"{loc}: not readable as CSV ({e}); check the quoting") from None
    finally:
        csv.field_size_limit(previous)
    return names, records


# csv.field_size_limit takes a C long
_C_LONG_MAX = 2**31 - 1


def _check_header(names: list[str], loc: str) -> None:
    seen: set[str] = set()
    for i, name in enumerate(names, 1):
        if not name:
            raise CSVFormatError(f"{loc}: header field {i} is empty; every column needs a name")
        if name in seen:
            raise CSVFormatError(f"{loc}: column {name!r} appears twice in the header; rename one")
        seen.add(name)
