"""Per-sample export of a run's results store for re-analysis elsewhere (R, pandas, Stata).

    peft-audit export runs/quickstart --samples fairness --out bbq_items.csv
    peft-audit export runs/quickstart --samples safety --out responses.parquet

One row per (variant, item). Fairness columns: :data:`FAIRNESS_EXPORT_COLUMNS` (``source_id``
is BBQ's ``example_id``; indices are 0-based option positions; ``logprob_*`` natural-log
probabilities, empty in generate mode). Safety columns: :data:`SAFETY_EXPORT_COLUMNS`, then
one column per judge (named after the judge, e.g. ``keyword``, ``combined``) holding that
judge's verdict label, empty where the judge gave none. The format follows the extension:
``.csv`` or ``.parquet`` (needs pyarrow).
"""

from __future__ import annotations

from pathlib import Path

from .store import Store

FAIRNESS_EXPORT_COLUMNS = (
    "variant_id", "category", "source_id", "question_index", "context_condition", "question_polarity",
    "label", "pred_index", "target_index", "logprob_0", "logprob_1", "logprob_2",
)
SAFETY_EXPORT_COLUMNS = ("variant_id", "category", "prompt_id", "prompt", "response")
KINDS = ("fairness", "safety")


def samples_frame(store: Store, kind: str):
    """The export table as a pandas DataFrame (columns present even when empty)."""
    import pandas as pd

    if kind == "fairness":
        df = store.frame("fairness_samples")
        df = df.sort_values(["variant_id", "category", "item_id"], kind="stable")
        out = df.loc[:, list(FAIRNESS_EXPORT_COLUMNS)].reset_index(drop=True)
        for col in ("label", "pred_index", "target_index"):
            out[col] = out[col].astype("Int64")  # nullable ints: an unparseable answer stays empty
        return out
    if kind == "safety":
        df = store.frame("safety_samples").sort_values(["variant_id", "category", "prompt_id"], kind="stable")
        out = df.loc[:, list(SAFETY_EXPORT_COLUMNS)].reset_index(drop=True)
        verdicts = store.frame("verdicts")
        if len(verdicts):
            wide = verdicts.pivot_table(
                index=["variant_id", "prompt_id"], columns="judge", values="label", aggfunc="first"
            )
            wide.columns = [str(c) for c in wide.columns]
            clash = set(wide.columns) & set(SAFETY_EXPORT_COLUMNS)
            if clash:  # a judge named like a base column would silently overwrite it
                wide = wide.rename(columns={c: f"judge_{c}" for c in clash})
            out = out.merge(wide.reset_index(), on=["variant_id", "prompt_id"], how="left")
        return pd.DataFrame(out)
    raise ValueError(f"unknown sample kind {kind!r}; valid: {', '.join(KINDS)}")


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
    out.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".csv":
        df.to_csv(out, index=False)
    else:
        try:
            df.to_parquet(out, index=False)
        except ImportError:
            raise ValueError("Parquet export needs pyarrow: pip install 'peft-audit[parquet]'") from None
    return out
