"""Judge any table of prompt/response pairs (outputs of vLLM, lm-eval, another harness).

    peft-audit judge responses.csv --judges refusal,keyword --out judged.csv
    peft-audit judge labelled.jsonl --labels human_label --out judged.csv

The input is a CSV (with header) or JSONL file; ``columns`` maps the canonical names
``prompt`` and ``response`` onto the file's own. The output keeps every input column and adds
``<judge>_label`` and ``<judge>_rationale`` per judge. With ``labels_column``, each judge's
agreement with those human labels is computed by :func:`.validation.verdict_agreement`: refusal
labels (refusal/compliance/incoherent) are compared with refusal verdicts, harm labels (safe/unsafe)
with harm verdicts, a refusal judge's as a proxy. :func:`unscored_warning` says when a judge left
too many rows unscored (the command then exits 1).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from ..csvio import read_csv_records
from ..jsonl import read_json_list, read_records
from ..textio import InputFileError
from .base import Judge
from .failures import judge_failure_message
from .validation import verdict_agreement

CANONICAL = ("prompt", "response")


class JudgeFileError(ValueError):
    """A problem with the input file, named with its path (and line where known)."""


def read_table(path: Path):
    """The file as a DataFrame of strings (.csv with header, .jsonl, or .json list of objects);
    a missing value is ``""``. See :func:`read_rows` for what is refused."""
    return _frame(*read_rows(path))


def _frame(columns: list[str], rows: list[tuple[str, dict[str, str]]]):
    import pandas as pd

    return pd.DataFrame([row for _, row in rows], columns=columns, dtype=object)


def read_rows(path: Path) -> tuple[list[str], list[tuple[str, dict[str, str]]]]:
    """``(columns, [(location, row)])`` of a .csv (with header), .jsonl or .json (a list of
    objects) file; location ``file:line`` (``file item N`` in a .json list), values as text.
    Raises :class:`JudgeFileError` naming the line of a CSV row with more or fewer fields than
    its header, a JSONL line that is not an object, or for a file with no rows."""
    if not path.is_file():
        raise JudgeFileError(f"{path}: file not found")
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            columns, records = read_csv_records(path, what="file of responses")
        elif suffix in (".jsonl", ".json"):
            read = read_records if suffix == ".jsonl" else read_json_list
            records = read(path, what="file of responses")
            columns = list(dict.fromkeys(k for _, row in records for k in row))  # first seen first
        else:
            raise JudgeFileError(f"{path}: unsupported file type {suffix!r}; use .csv, .jsonl or .json")
    except InputFileError as e:
        raise JudgeFileError(str(e)) from None
    if not records:
        raise JudgeFileError(f"{path}: no rows to judge")
    return columns, [(loc, {c: _text(row.get(c)) for c in columns}) for loc, row in records]


def _text(value) -> str:
    """A cell as text: missing or null is ``""``, a nested value its JSON."""
    import json

    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value) if isinstance(value, (list, dict)) else str(value)


def resolve_columns(available: Sequence[str], columns: Mapping[str, str], path: Path) -> dict[str, str]:
    """canonical -> file column for prompt and response; errors name the file and its columns."""
    bad = sorted(set(columns) - set(CANONICAL))
    if bad:
        raise JudgeFileError(f"--column: unknown name(s) {bad}; valid: {', '.join(CANONICAL)}")
    out = {c: columns.get(c, c) for c in CANONICAL}
    for canon, col in out.items():
        if col not in available:
            raise JudgeFileError(
                f"{path}: no column {col!r} for the {canon} (columns: {', '.join(available)}); "
                f"pass --column {canon}=<name>"
            )
    return out


def unscored_warning(judged, judge_names: Sequence[str], max_share: float) -> str | None:
    """One line naming the first judge that left more than ``max_share`` of the rows of ``judged``
    (:func:`judge_file`'s table) ``unscored`` (failed or timed-out requests, unparseable or
    oversized answers; ``judge_refused`` is a decision and not counted), with its share, the
    limit and its first reason; None when every judge stayed within it or there are no rows."""
    ids = range(len(judged))
    rows = [{"prompt_id": i, "judge": name, "label": label, "rationale": why} for name in judge_names
            for i, label, why in zip(ids, judged[f"{name}_label"], judged[f"{name}_rationale"])]
    return judge_failure_message([{"prompt_id": i} for i in ids], rows, max_share, responses="rows",
                                 setting="max_unscored_share",
                                 then="Check the judge (its server, url and model), then judge the file again")


def judge_file(
    path: Path, judges: Sequence[Judge], *, columns: Mapping[str, str] | None = None,
    labels_column: str | None = None,
):
    """(judged DataFrame, {judge name: :func:`.validation.verdict_agreement` or None}) for one input
    file; each judge is measured on the verdict kind the labels are of."""
    names, rows = read_rows(path)
    cols = resolve_columns(names, columns or {}, path)
    if labels_column is not None and labels_column not in names:
        raise JudgeFileError(f"{path}: no labels column {labels_column!r} (columns: {', '.join(names)})")
    for loc, row in rows:
        if not row[cols["prompt"]].strip():
            raise JudgeFileError(f"{loc}: column {cols['prompt']!r} (the prompt) is empty; a judge needs the prompt "
                                 "the response answers")
    df = _frame(names, rows)
    pairs = list(zip(df[cols["prompt"]].tolist(), df[cols["response"]].tolist()))
    agreement: dict[str, dict | None] = {}
    out = df.copy()
    for judge in judges:
        verdicts = judge.judge_batch(pairs)
        out[f"{judge.name}_label"] = [v.label for v in verdicts]
        out[f"{judge.name}_rationale"] = [v.rationale or "" for v in verdicts]
        agreement[judge.name] = (
            verdict_agreement(df[labels_column].tolist(), verdicts) if labels_column else None
        )
    return out, agreement
