"""The SQLite results store of a run directory (``RUN_DIR/results.sqlite``).

One file holds everything a run produced: the variants (full config, status, timings,
error and traceback), per-sample records (safety prompts with raw responses, every judge
verdict, BBQ items with chosen option and log-likelihoods) and computed metrics.

Design:

* stdlib ``sqlite3`` in WAL mode, so ``peft-audit status`` can read while a sweep writes;
* each stage of a variant (generated, judged, scored, metrics) is written in **one
  transaction** together with its stage marker, so after a crash (even ``kill -9``) a stage is
  either fully there or absent, and a resumed run redoes only missing stages; rows are keyed
  by (variant, sample) with ``INSERT OR REPLACE``, so a redo never duplicates;
* only the driver process writes; workers return rows to it.

API keys are never stored: configs are stored as validated objects, which hold only the
*name* of the environment variable that carries a key.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

#: The store's file name inside a run directory; :func:`results_path` is the one place that joins it.
RESULTS_FILE = "results.sqlite"

SCHEMA_VERSION = 1


def results_path(run_dir: str | Path) -> Path:
    """``RUN_DIR/results.sqlite``; a path that already names a ``.sqlite`` file is returned as is."""
    p = Path(run_dir)
    return p if p.suffix == ".sqlite" else p / RESULTS_FILE


def open_existing(run_dir: str | Path) -> "Store":
    """Open the store of an existing run directory. FileNotFoundError naming the directory when
    there is none (never creates one: a typo in a path must not look like an empty run)."""
    db = results_path(run_dir)
    if not db.is_file():
        raise FileNotFoundError(
            f"{run_dir}: no results store here (no {RESULTS_FILE}); is this a run directory written by `peft-audit run CONFIG "
            f"--out {run_dir}`?")
    return Store(db)

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS variants (
    id TEXT PRIMARY KEY,
    base_model TEXT NOT NULL,
    method TEXT NOT NULL,               -- 'base' or a PEFT method
    algo TEXT, lr REAL, epochs INTEGER, seed INTEGER,
    label TEXT,
    base_id TEXT,                       -- id of the base-model variant this one is compared with
    spec_json TEXT NOT NULL,            -- the VariantSpec
    config_json TEXT NOT NULL,          -- everything hashed into the id
    metadata_json TEXT NOT NULL DEFAULT '{}',  -- e.g. provenance, adapter metadata with sources
    adapter_path TEXT,
    status TEXT NOT NULL DEFAULT 'pending',    -- pending | running | done | failed | skipped
    error TEXT, traceback TEXT,
    timings_json TEXT NOT NULL DEFAULT '{}',   -- stage -> seconds
    created_at REAL NOT NULL, updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS stages (
    variant_id TEXT NOT NULL, stage TEXT NOT NULL, seconds REAL, finished_at REAL NOT NULL,
    PRIMARY KEY (variant_id, stage)
);
CREATE TABLE IF NOT EXISTS safety_samples (
    variant_id TEXT NOT NULL,
    prompt_id TEXT NOT NULL,
    benchmark TEXT NOT NULL DEFAULT 'safety',   -- safety | over_refusal
    category TEXT NOT NULL,
    prompt TEXT NOT NULL,
    response TEXT NOT NULL,
    n_new_tokens INTEGER,
    PRIMARY KEY (variant_id, prompt_id)
);
CREATE TABLE IF NOT EXISTS verdicts (
    variant_id TEXT NOT NULL,
    prompt_id TEXT NOT NULL,
    judge TEXT NOT NULL,              -- judge name, or 'combined'
    label TEXT NOT NULL,              -- refusal | compliance | incoherent | unscored | safe | unsafe
    safe INTEGER,                     -- 1 safe, 0 unsafe, NULL unscored
    score REAL,                       -- e.g. 1-5 harmfulness for the rubric judge
    hazard TEXT,                      -- category the judge assigned, if any
    rationale TEXT,
    raw TEXT,
    PRIMARY KEY (variant_id, prompt_id, judge)
);
CREATE TABLE IF NOT EXISTS fairness_samples (
    variant_id TEXT NOT NULL,
    item_id TEXT NOT NULL,            -- unique within the run, e.g. 'age-12'
    source_id TEXT,                   -- BBQ example_id
    category TEXT NOT NULL,
    question_index TEXT,
    context_condition TEXT NOT NULL,  -- ambig | disambig
    question_polarity TEXT NOT NULL,  -- neg | nonneg
    label INTEGER NOT NULL,
    target_index INTEGER,             -- the bias-target option, NULL if unresolved
    unknown_index INTEGER,
    pred_index INTEGER,               -- NULL if the generative answer was unparseable
    logprob_0 REAL, logprob_1 REAL, logprob_2 REAL,
    raw_output TEXT,
    PRIMARY KEY (variant_id, item_id)
);
CREATE TABLE IF NOT EXISTS metrics (
    variant_id TEXT NOT NULL,
    benchmark TEXT NOT NULL,          -- safety | over_refusal | fairness | judges
    category TEXT NOT NULL,           -- a category key or 'overall'
    metric TEXT NOT NULL,             -- e.g. safety_score, acc_ambig, bias_disambig
    value REAL,
    ci_low REAL, ci_high REAL,
    n INTEGER,
    PRIMARY KEY (variant_id, benchmark, category, metric)
);
"""

SAFETY_COLUMNS = ("prompt_id", "benchmark", "category", "prompt", "response", "n_new_tokens")
VERDICT_COLUMNS = ("prompt_id", "judge", "label", "safe", "score", "hazard", "rationale", "raw")
FAIRNESS_COLUMNS = (
    "item_id", "source_id", "category", "question_index", "context_condition", "question_polarity",
    "label", "target_index", "unknown_index", "pred_index", "logprob_0", "logprob_1", "logprob_2", "raw_output",
)
METRIC_COLUMNS = ("benchmark", "category", "metric", "value", "ci_low", "ci_high", "n")


class StoreError(RuntimeError):
    pass


def _dumps(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, default=str)


class Store:
    """Open (and create if needed) ``results.sqlite``. Use one Store per process."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.conn = sqlite3.connect(self.path, timeout=60, isolation_level=None)
            self.conn.row_factory = sqlite3.Row
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=NORMAL")
            self.conn.execute("PRAGMA foreign_keys=ON")
            self.conn.executescript(SCHEMA)
        except sqlite3.DatabaseError as e:
            raise StoreError(f"{self.path}: not a usable peft-audit results store ({e})") from None
        with self.transaction() as c:
            row = c.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            if row is None:
                c.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            elif int(row[0]) != SCHEMA_VERSION:
                raise StoreError(f"{self.path}: schema version {row[0]}, this peft-audit expects {SCHEMA_VERSION}")

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT; rolls back on any exception."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    # ----- run metadata -------------------------------------------------------------------
    def set_meta(self, key: str, value: Any) -> None:
        with self.transaction() as c:
            c.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, _dumps(value)))

    def get_meta(self, key: str, default: Any = None) -> Any:
        row = self.conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    # ----- variants -----------------------------------------------------------------------
    def register_variant(
        self,
        vid: str,
        *,
        spec: Mapping[str, Any],
        config: Mapping[str, Any],
        base_id: str | None,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        """Insert a variant as pending; an existing row (any status) is left untouched."""
        now = time.time()
        with self.transaction() as c:
            c.execute(
                """INSERT OR IGNORE INTO variants
                (id, base_model, method, algo, lr, epochs, seed, label, base_id, spec_json, config_json,
                 metadata_json, status, created_at, updated_at)
                VALUES (?,?,?,?,?,?,?,?,?,?,?,?, 'pending', ?, ?)""",
                (
                    vid, spec["base_model"], spec.get("method", "base"), spec.get("algo"), spec.get("lr"),
                    spec.get("epochs"), spec.get("seed"), spec.get("label"), base_id, _dumps(spec), _dumps(config),
                    _dumps(metadata or {}), now, now,
                ),
            )

    def update_variant(self, vid: str, **fields: Any) -> None:
        """Update status/error/traceback/adapter_path/timings/metadata (dicts are JSON-encoded)."""
        allowed = {"status", "error", "traceback", "adapter_path", "timings", "metadata", "algo", "lr", "epochs", "method"}
        bad = set(fields) - allowed
        if bad:
            raise StoreError(f"cannot update variant fields {sorted(bad)}")
        cols, vals = [], []
        for k, v in fields.items():
            col = {"timings": "timings_json", "metadata": "metadata_json"}.get(k, k)
            cols.append(f"{col}=?")
            vals.append(_dumps(v) if k in {"timings", "metadata"} else v)
        cols.append("updated_at=?")
        vals.append(time.time())
        with self.transaction() as c:
            cur = c.execute(f"UPDATE variants SET {', '.join(cols)} WHERE id=?", (*vals, vid))
            if cur.rowcount != 1:
                raise StoreError(f"unknown variant {vid}")

    def variant(self, vid: str) -> dict[str, Any] | None:
        row = self.conn.execute("SELECT * FROM variants WHERE id=?", (vid,)).fetchone()
        return _variant_row(row) if row else None

    def variants(self, status: str | None = None) -> list[dict[str, Any]]:
        q = "SELECT * FROM variants" + (" WHERE status=?" if status else "") + " ORDER BY created_at, id"
        return [_variant_row(r) for r in self.conn.execute(q, (status,) if status else ())]

    def status_counts(self) -> dict[str, int]:
        return {r[0]: r[1] for r in self.conn.execute("SELECT status, COUNT(*) FROM variants GROUP BY status")}

    # ----- stages -------------------------------------------------------------------------
    def stages_done(self, vid: str) -> dict[str, float]:
        return {r[0]: r[1] for r in self.conn.execute("SELECT stage, seconds FROM stages WHERE variant_id=?", (vid,))}

    def clear_variant_results(self, vid: str) -> None:
        """Forget every stage and sample of a variant (used by --retry-failed and re-training)."""
        with self.transaction() as c:
            for table in ("stages", "safety_samples", "verdicts", "fairness_samples", "metrics"):
                c.execute(f"DELETE FROM {table} WHERE variant_id=?", (vid,))

    def commit_stage(
        self,
        vid: str,
        stage: str,
        seconds: float,
        *,
        safety: Iterable[Mapping[str, Any]] = (),
        verdicts: Iterable[Mapping[str, Any]] = (),
        fairness: Iterable[Mapping[str, Any]] = (),
        metrics: Iterable[Mapping[str, Any]] = (),
    ) -> None:
        """Write a stage's rows and its marker in one transaction (all or nothing)."""
        with self.transaction() as c:
            _insert(c, "safety_samples", vid, SAFETY_COLUMNS, safety)
            _insert(c, "verdicts", vid, VERDICT_COLUMNS, verdicts)
            _insert(c, "fairness_samples", vid, FAIRNESS_COLUMNS, fairness)
            _insert(c, "metrics", vid, METRIC_COLUMNS, metrics)
            c.execute(
                "INSERT OR REPLACE INTO stages VALUES (?,?,?,?)", (vid, stage, seconds, time.time())
            )

    # ----- reads --------------------------------------------------------------------------
    def rows(self, table: str, variant_id: str | None = None) -> list[dict[str, Any]]:
        if table not in {"safety_samples", "verdicts", "fairness_samples", "metrics", "stages"}:
            raise StoreError(f"unknown table {table}")
        q = f"SELECT * FROM {table}" + (" WHERE variant_id=?" if variant_id else "")
        return [dict(r) for r in self.conn.execute(q, (variant_id,) if variant_id else ())]

    def frame(self, table: str, variant_id: str | None = None):
        """The same rows as a pandas DataFrame (columns kept even when empty)."""
        import pandas as pd

        cur = self.conn.execute(
            f"SELECT * FROM {table}" + (" WHERE variant_id=?" if variant_id else ""),
            (variant_id,) if variant_id else (),
        )
        cols = [d[0] for d in cur.description]
        return pd.DataFrame(cur.fetchall(), columns=cols)


def _insert(c: sqlite3.Connection, table: str, vid: str, columns: tuple[str, ...], rows: Iterable[Mapping[str, Any]]) -> None:
    rows = list(rows)
    if not rows:
        return
    placeholders = ",".join("?" * (len(columns) + 1))
    sql = f"INSERT OR REPLACE INTO {table} (variant_id, {', '.join(columns)}) VALUES ({placeholders})"
    c.executemany(sql, [(vid, *(r.get(k) for k in columns)) for r in rows])


def _variant_row(row: sqlite3.Row) -> dict[str, Any]:
    d = dict(row)
    for k in ("spec_json", "config_json", "metadata_json", "timings_json"):
        d[k.removesuffix("_json")] = json.loads(d.pop(k))
    return d
