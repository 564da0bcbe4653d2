"""Machine-readable exports of the analysis tables: analysis.json, analysis/<table>.csv|.parquet."""

from __future__ import annotations

import json
from pathlib import Path

from ..analysis import Analysis
from ..csvio import write_frame_csv
from ..textio import atomic_output, write_text_atomic


def write_json(a: Analysis, path: Path) -> Path:
    """All tables as lists of records (NaN -> null), plus the correction used."""
    doc = {"correction": a.correction,
           "tables": {name: json.loads(df.to_json(orient="records")) if not df.empty else []
                      for name, df in a.tables().items()}}
    return write_text_atomic(path, json.dumps(doc, indent=1, allow_nan=False))


def write_csv(a: Analysis, folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for name, df in a.tables().items():
        p = folder / f"{name}.csv"
        with atomic_output(p) as tmp:
            write_frame_csv(df, tmp)
        out.append(p)
    return out


def write_parquet(a: Analysis, folder: Path) -> list[Path]:
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        raise ValueError("--format parquet needs pyarrow: pip install 'peft-audit[parquet]'") from None
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for name, df in a.tables().items():
        p = folder / f"{name}.parquet"
        # Object columns may mix None and str/float; store them as strings so Arrow can type them.
        d = df.copy()
        for c in d.columns:
            if d[c].dtype == object:
                d[c] = d[c].map(lambda x: None if x is None else str(x))
        with atomic_output(p) as tmp:
            d.to_parquet(tmp, index=False)
        out.append(p)
    return out
