"""The one CSV dialect the tool writes: every CSV reads back row for row.

Responses hold line breaks of every kind. pandas' ``to_csv`` ends rows with ``"\\n"`` and quotes
only fields containing a character of that terminator, so a field with a bare carriage return
went out unquoted and split its row when read back (a judged 602-row file came back as 604
rows). Ending rows with ``"\\r\\n"`` (RFC 4180) makes the csv module quote any field holding
``\\r`` or ``\\n``, and pandas and the csv module then read the file back row for row.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import IO

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
