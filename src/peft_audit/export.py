"""Per-sample export of a run's results store for re-analysis elsewhere (R, pandas, Stata).

    peft-audit export runs/quickstart --samples fairness --out bbq_items.csv
    peft-audit export runs/quickstart --samples safety --out responses.parquet

One row per (variant, item); each benchmark defines its columns (its ``export_frame``):
fairness in :mod:`peft_audit.benchmarks.fairness.benchmark`, safety in
:mod:`peft_audit.benchmarks.safety.benchmark`. The format follows the extension: ``.csv`` or
``.parquet`` (needs pyarrow).
"""

from __future__ import annotations

from pathlib import Path

from .benchmarks.registry import benchmark_for_samples
from .config import RepairSpec
from .csvio import write_frame_csv
from .store import Store
from .textio import atomic_output
from .sweep.plan import variant_labels


def samples_frame(store: Store, kind: str):
    """The export table of the benchmark whose sample kind is ``kind``, as a pandas DataFrame
    (columns present even when empty), with ``variant_label`` (the variant's readable name),
    ``repair_of`` and ``repair`` (a repaired variant's original and how; empty otherwise) after
    ``variant_id``. ValueError naming the valid kinds for another ``kind``."""
    df = benchmark_for_samples(kind).export_frame(store)
    # the readable name next to the id, so a table opened elsewhere says which variant a row is
    rows = store.variants()
    names = variant_labels(rows)
    at = list(df.columns).index("variant_id") + 1 if "variant_id" in df else 0
    df.insert(at, "variant_label", df["variant_id"].map(names) if "variant_id" in df else [])
    # a repaired variant's provenance (peft-audit mitigate): the id of the variant it repairs, and how
    specs = {r["id"]: r["spec"] for r in rows}
    for i, (col, get) in enumerate((("repair_of", lambda s: s.get("repair_of")),
                                    ("repair", lambda s: RepairSpec.model_validate(s["repair"]).text()
                                     if s.get("repair") else None))):
        df.insert(at + 1 + i, col, df["variant_id"].map(lambda v: get(specs.get(v) or {})) if "variant_id" in df else [])
    return df


def export_samples(store: Store, kind: str, out: Path) -> Path:
    """Write the ``kind`` ("fairness" | "safety") samples of ``store`` to ``out`` (.csv or
    .parquet, chosen by extension). Returns ``out``. Raises ValueError for another extension
    or kind, and when the store holds no samples of that kind (nothing to export)."""
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in (".csv", ".parquet"):
        raise ValueError(f"--out {out}: use a .csv or .parquet file name")
    df = samples_frame(store, kind)
    if df.empty:
        raise ValueError(f"{store.path}: no {kind} samples to export (has the run scored that benchmark?)")
    return write_table(df, out)


def write_table(df, out: Path) -> Path:
    """Write ``df`` as .csv, .jsonl or .parquet, chosen by the extension of ``out``; the one
    table writer of the per-item exports and of ``peft-audit judge``. ValueError for another
    extension, or for .parquet without pyarrow."""
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in (".csv", ".jsonl", ".parquet"):
        raise ValueError(f"{out}: unsupported output type {suffix!r}; use .csv, .jsonl or .parquet")
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(out) as tmp:
        if suffix == ".csv":
            write_frame_csv(df, tmp)
        elif suffix == ".jsonl":
            df.to_json(tmp, orient="records", lines=True, force_ascii=False)
        else:
            try:
                df.to_parquet(tmp, index=False)
            except ImportError:
                raise ValueError("Parquet export needs pyarrow: pip install 'peft-audit[parquet]'") from None
    return out
