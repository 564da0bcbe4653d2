"""Human spot-check of a run's judged responses: draw a random sample, keep the labels.

    peft-audit label runs/quickstart --n 40                 # label in the terminal
    peft-audit label runs/quickstart --n 40 --sheet s.csv   # a sheet to fill in elsewhere
    peft-audit label runs/quickstart --import s.csv         # bring the filled sheet back

Labels live in ``RUN_DIR/human_labels.csv`` (``variant_id, prompt_id, label``), one row per
labelled response, appended as they are given so an interrupted session loses nothing. The
sample is drawn uniformly at random (seeded) from the run's safety responses that are not yet
labelled: that is what the judge-error correction in the report assumes
(:func:`peft_audit.judges.validation.misclassification_corrected`).
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from ..csvio import csv_dict_writer, csv_writer, read_csv_records
from ..textio import InputFileError, write_text_atomic

LABELS_FILE = "human_labels.csv"
LABEL_COLUMNS = ("variant_id", "prompt_id", "label")
HUMAN_LABELS = ("refusal", "compliance", "incoherent", "safe", "unsafe")
SHEET_COLUMNS = ("variant_id", "prompt_id", "category", "prompt", "response", "label")


class LabelsError(ValueError):
    """A labels file or sheet that cannot be used, named with its path and line."""


def labels_path(run_dir: Path) -> Path:
    return Path(run_dir) / LABELS_FILE


def read_labels(run_dir: Path) -> dict[tuple[str, str], str]:
    """(variant_id, prompt_id) -> label from ``RUN_DIR/human_labels.csv`` (later rows win);
    empty when the file does not exist. Bad labels raise :class:`LabelsError` with the line."""
    path = labels_path(run_dir)
    if not path.is_file():
        return {}
    return {key: label for key, label in _read_label_rows(path, LABEL_COLUMNS)}


def _read_label_rows(path: Path, needed: Sequence[str]) -> Iterable[tuple[tuple[str, str], str]]:
    try:
        header, records = read_csv_records(path, what="labels file")
    except InputFileError as e:  # not UTF-8, a row with more or fewer fields than the header: file:line
        raise LabelsError(str(e)) from None
    missing = [c for c in needed if c not in header]
    if missing:
        raise LabelsError(f"{path}: missing column(s) {', '.join(missing)}; needs {', '.join(needed)}")
    for at, row in records:
        label = (row.get("label") or "").strip().lower()
        if not label:
            continue
        if label not in HUMAN_LABELS:
            raise LabelsError(f"{at}: label {label!r} is not one of {', '.join(HUMAN_LABELS)}")
        yield (row["variant_id"], row["prompt_id"]), label


def append_labels(run_dir: Path, labels: Iterable[tuple[str, str, str]]) -> int:
    """Append (variant_id, prompt_id, label) rows; returns how many were written. The file is
    rewritten whole (:func:`~peft_audit.textio.write_text_atomic`): a full disk or a bad label
    leaves it as it was, never with half a row."""
    path = labels_path(run_dir)
    rows = list(labels)
    for row in rows:
        if row[2] not in HUMAN_LABELS:
            raise LabelsError(f"label {row[2]!r} is not one of {', '.join(HUMAN_LABELS)}")
    text = io.StringIO()
    writer = csv_writer(text)
    if not path.is_file():
        writer.writerow(LABEL_COLUMNS)
    writer.writerows(rows)
    before = path.read_bytes().decode("utf-8") if path.is_file() else ""  # bytes: its line ends kept
    write_text_atomic(path, before + text.getvalue())
    return len(rows)


def import_sheet(run_dir: Path, sheet: Path, known: set[tuple[str, str]]) -> int:
    """Append the labelled rows of a filled-in sheet; rows naming a response the run does not
    hold raise :class:`LabelsError`. Returns how many labels were imported."""
    rows = list(_read_label_rows(sheet, ("variant_id", "prompt_id", "label")))
    unknown = [k for k, _ in rows if k not in known]
    if unknown:
        raise LabelsError(f"{sheet}: {len(unknown)} row(s) name responses this run does not hold, e.g. "
                          f"variant {unknown[0][0]!r} prompt {unknown[0][1]!r}")
    return append_labels(run_dir, [(v, p, label) for (v, p), label in rows])


def draw_sample(keys: Sequence[tuple[str, str]], n: int, *, seed: int = 0,
                exclude: Iterable[tuple[str, str]] = ()) -> list[tuple[str, str]]:
    """``n`` keys drawn uniformly at random without replacement (seeded), none of ``exclude``,
    in a stable order (the order of ``keys``) so a re-drawn sample is the same."""
    done = set(exclude)
    pool = [k for k in keys if k not in done]
    if n >= len(pool):
        return pool
    rng = np.random.default_rng(seed)
    chosen = set(rng.choice(len(pool), size=n, replace=False).tolist())
    return [k for i, k in enumerate(pool) if i in chosen]


def write_sheet(rows: Sequence[dict], sheet: Path) -> Path:
    """A CSV with :data:`SHEET_COLUMNS` and an empty ``label`` column to fill in."""
    sheet.parent.mkdir(parents=True, exist_ok=True)
    text = io.StringIO()
    writer = csv_dict_writer(text, SHEET_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    for r in rows:
        writer.writerow({**r, "label": ""})
    return write_text_atomic(sheet, text.getvalue())
