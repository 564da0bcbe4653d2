"""Which held-out rows a variant is measured on, and why none where it is not measured."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import UtilityConfig

#: the not-measured reason of an adapter audited here without a task file
AUDITED_REASON = "an audited adapter's task data is unknown; give utility.task_file (its held-out task rows)"


@dataclass(frozen=True)
class HeldoutRow:
    """One held-out row: ``sample_id`` (the first 16 hex characters of its
    :func:`~peft_audit.training.data.row_key`), ``category`` (its task: the training source, or
    ``task_file:<name>``), ``algo`` (sft: prompt/response or messages; dpo: prompt/chosen/rejected)."""

    sample_id: str
    category: str
    algo: str
    row: dict[str, Any]


def _rows(rows: list[dict], category: str, algo: str) -> list[HeldoutRow]:
    from ...training.data import row_key

    return [HeldoutRow(row_key(r)[:16], category, algo, r) for r in rows]


def task_file_rows(path: str) -> list[HeldoutRow]:
    """The rows of ``utility.task_file``: preference rows when it has ``chosen`` and ``rejected``
    columns, else prompt/response rows; ValueError naming the file and the columns it lacks."""
    from ...training.data import normalise_rows, read_local

    p = Path(path).expanduser()
    if not p.is_file():
        raise ValueError(f"utility.task_file: {p} not found; give a .jsonl/.json/.csv file with prompt/response "
                         "or prompt/chosen/rejected columns")
    located = read_local(p)
    where, raw = [at for at, _ in located], [row for _, row in located]
    algo = "dpo" if raw and {"chosen", "rejected"} <= set(raw[0]) else "sft"
    try:
        rows = normalise_rows(raw, algo, {}, f"utility.task_file {p}", where)
    except ValueError as e:
        raise ValueError(str(e).replace("Map them with training.columns", "Rename them")) from None
    return _rows(rows, f"task_file:{p.name}", algo)


def adapter_split(adapter_path: Path | None) -> tuple[bool, dict | None]:
    """(whether ``adapter_path`` holds a peft-audit provenance file, its held-out record or None)."""
    from ...training.provenance import PROVENANCE_FILE, read_provenance

    if adapter_path is None or not (Path(adapter_path) / PROVENANCE_FILE).is_file():
        return False, None
    return True, (read_provenance(adapter_path).get("dataset") or {}).get("heldout")


def variant_rows(cfg: UtilityConfig, trained_on: tuple, adapter_path: Path | None,
                 is_base: bool) -> tuple[list[HeldoutRow], str | None]:
    """The held-out rows a variant is measured on, and why it has none of its own task (None when
    it has them, or for a base model). ``trained_on`` and ``adapter_path`` as in
    :class:`~peft_audit.benchmarks.base.VariantRun`. An adapter trained here is measured on its
    data's held-out rows only when its provenance records the same split (``ids_sha256``): an
    adapter trained before held-out splits existed may have trained on every row."""
    from ...training.data import load_training_data

    rows: list[HeldoutRow] = []
    reasons: list[str] = []
    for algo, training in trained_on:
        data = load_training_data(training, algo, seed=0)
        if not data.heldout:
            reasons.append(f"no row of {data.source} was held out (training.heldout_fraction "
                           f"{training.heldout_fraction}; data with fewer than 2 x heldout_min_rows = "
                           f"{2 * training.heldout_min_rows} rows holds none out)")
            continue
        if not is_base:
            _, record = adapter_split(adapter_path)
            if record is None:
                reasons.append("its adapter was trained without a held-out split (its provenance records none: "
                               "trained before peft-audit held rows out), so it may have seen every row; "
                               "train it again in a new --out to measure its utility")
                continue
            if record.get("ids_sha256") != data.heldout_record["ids_sha256"]:
                reasons.append(f"its provenance records other held-out rows than {data.source} gives now (the data "
                               "or training.heldout_fraction changed since it was trained)")
                continue
        rows += _rows(data.heldout, data.source, algo)
    if not trained_on and not is_base:
        reasons.append(AUDITED_REASON)
    if cfg.task_file:
        rows += task_file_rows(cfg.task_file)
        reasons = []
    unique = list({r.sample_id: r for r in rows}.values())
    return unique, (None if is_base or not reasons else "; ".join(reasons))
