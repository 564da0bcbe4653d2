"""The SQLite results store of a run directory (``RUN_DIR/results.sqlite``).

One file holds everything a run produced: the variants (full config, status, timings,
error and traceback), per-item records of every benchmark in one generic ``samples`` table
(benchmark, variant, sample id, category, JSON payload: e.g. safety prompts with raw responses,
BBQ items with chosen option and log-likelihoods), every judge verdict, and computed metrics.
``safety_samples`` and ``fairness_samples`` are read-only views of ``samples`` with the columns
those tables had in schema version 1; a version-1 store is migrated in place when a run
opens it (:func:`migrate`).

Commands that only read a run directory (``report``, ``gate``, ``show``, ``status``, ``export``,
``card``, the analysis) open the store read-only (:func:`open_existing`): they never write to it,
so an archived or shared run directory, a read-only mount or another user's files can be audited
as they are, and reading is never what changed the evidence. An older schema is upgraded in a
copy in memory for them; the file keeps its version until a run resumes it.

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

from . import faults

#: The store's file name inside a run directory; :func:`results_path` is the one place that joins it.
RESULTS_FILE = "results.sqlite"

#: 1: per-benchmark sample tables (safety_samples, fairness_samples). 2: one generic ``samples``
#: table; the two old names are read-only views over it. 3: ``verdicts.refused``, the refusal
#: verdict beside the label (see :func:`migrate`).
SCHEMA_VERSION = 3


def results_path(run_dir: str | Path) -> Path:
    """``RUN_DIR/results.sqlite``; a path that already names a ``.sqlite`` file is returned as is."""
    p = Path(run_dir)
    return p if p.suffix == ".sqlite" else p / RESULTS_FILE


def adapter_dir_for(run_dir: str | Path, vid: str) -> Path:
    """``RUN_DIR/adapters/<variant id>``: where a variant the run trains keeps its adapter."""
    return Path(run_dir) / "adapters" / vid


def open_existing(run_dir: str | Path) -> "Store":
    """Open the store of an existing run directory **read-only** (see the module docstring).
    FileNotFoundError naming the directory when there is none (never creates one: a typo in a
    path must not look like an empty run)."""
    db = results_path(run_dir)
    if not db.is_file():
        raise FileNotFoundError(
            f"{run_dir}: no results store here (no {RESULTS_FILE}); is this a run directory written by `peft-audit run CONFIG "
            f"--out {run_dir}`?")
    return Store(db, read_only=True)


def _connect_read_only(path: Path) -> sqlite3.Connection:
    """A connection that cannot write ``path``. It reads a store a sweep is writing (WAL) like any
    reader; where SQLite cannot keep its WAL index beside the file (a read-only directory, where no
    writer can be either; a full disk, where none can write either) and no WAL content is waiting
    to be read, the file is opened as immutable."""
    uri = path.resolve().as_uri()
    try:
        conn = sqlite3.connect(f"{uri}?mode=ro", uri=True, timeout=60, isolation_level=None)
        conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
        return conn
    except sqlite3.OperationalError as e:
        wal = path.with_name(path.name + "-wal")
        cannot_keep_index = _sqlite_kind(e) in ("CANTOPEN", "IOERR", "FULL", "READONLY")
        if not cannot_keep_index or (wal.is_file() and wal.stat().st_size > 0):
            raise
        return sqlite3.connect(f"{uri}?mode=ro&immutable=1", uri=True, timeout=60, isolation_level=None)


def _sqlite_kind(e: sqlite3.Error) -> str:
    """SQLite's primary result code name without its prefix (``IOERR`` for SQLITE_IOERR_SHMSIZE);
    from the message where Python does not carry the code."""
    name = getattr(e, "sqlite_errorname", None)
    if name:
        return name.removeprefix("SQLITE_").split("_")[0]
    text = str(e).lower()
    for kind, words in (("FULL", "full"), ("IOERR", "disk i/o"), ("READONLY", "readonly"),
                        ("CANTOPEN", "unable to open"), ("BUSY", "locked")):
        if words in text:
            return kind
    return ""


#: What a SQLite failure that is not damage means, and what to do (by primary result code).
_NOT_DAMAGE = {
    "FULL": "the disk is full; free some space and run the command again",
    "IOERR": "the disk is full, read-only or failing (a disk I/O error); free some space or check the device, "
             "or copy the run directory to another disk and run the command there",
    "READONLY": "it is on a read-only location; copy the run directory elsewhere, or use a new --out directory",
    "CANTOPEN": "the file or its directory cannot be opened; check their permissions",
    "PERM": "access is not permitted; check the permissions of the file and its directory",
    "BUSY": "another process holds it locked (a sweep still writing?); wait for it and run the command again",
    "LOCKED": "another process holds it locked (a sweep still writing?); wait for it and run the command again",
}


def store_error_message(e: sqlite3.Error, path: str | Path | None, *, fix: str = "Restore it from a copy") -> str:
    """The user's line for a SQLite failure on a results store: a disk, permission or lock
    problem says so and that the store is not known to be damaged; only anything else (not a
    database, a malformed file) reads as damage, with ``fix``."""
    where = f"{path}" if path is not None else "the results store"
    why = _NOT_DAMAGE.get(_sqlite_kind(e))
    if why:
        return f"{where}: SQLite could not use it ({e}): {why}. The store itself was not found damaged"
    return (f"{where}: not a usable peft-audit results store (SQLite: {e}); it is damaged or not a peft-audit "
            f"store and was left untouched. {fix}")


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
    status TEXT NOT NULL DEFAULT 'pending',    -- pending | running | interrupted | done | failed | skipped
    error TEXT, traceback TEXT,
    timings_json TEXT NOT NULL DEFAULT '{}',   -- stage -> seconds
    created_at REAL NOT NULL, updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS stages (
    variant_id TEXT NOT NULL, stage TEXT NOT NULL, seconds REAL, finished_at REAL NOT NULL,
    PRIMARY KEY (variant_id, stage)
);
CREATE TABLE IF NOT EXISTS verdicts (
    variant_id TEXT NOT NULL,
    prompt_id TEXT NOT NULL,
    judge TEXT NOT NULL,              -- judge name, or 'combined' / 'combined-harm' (the harm verdict)
    label TEXT NOT NULL,              -- refusal | compliance | incoherent | unscored | safe | unsafe
    safe INTEGER,                     -- 1 safe, 0 unsafe, NULL unscored
    score REAL,                       -- e.g. 1-5 harmfulness for the rubric judge
    hazard TEXT,                      -- category the judge assigned, if any
    rationale TEXT,
    raw TEXT,
    refused INTEGER,                  -- 1 declined, 0 answered, NULL not said (or written before schema 3)
    PRIMARY KEY (variant_id, prompt_id, judge)
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

#: Version 2: one table for every benchmark's per-item rows. ``payload`` is a JSON object of the
#: benchmark's own columns (numbers written with Python's repr, so they read back bit for bit).
SAMPLES_SCHEMA = """
CREATE TABLE IF NOT EXISTS samples (
    variant_id TEXT NOT NULL,
    benchmark TEXT NOT NULL,            -- registered benchmark name: safety | fairness | ...
    sample_id TEXT NOT NULL,            -- unique within (variant, benchmark)
    category TEXT NOT NULL,
    payload TEXT NOT NULL,              -- JSON object: the benchmark's other columns
    PRIMARY KEY (variant_id, benchmark, sample_id)
);
"""

#: Per-benchmark sample layouts, for the ``safety=`` / ``fairness=`` keywords of
#: :meth:`Store.commit_stage` and the read-only views of the version-1 table names:
#: keyword -> (benchmark, old table/view name, id column, [(column, SQLite type)] of the payload).
#: The safety rows keep their sub-benchmark (safety | over_refusal) as payload column ``benchmark``.
SAMPLE_LAYOUTS: dict[str, tuple[str, str, str, tuple[tuple[str, str], ...]]] = {
    "safety": ("safety", "safety_samples", "prompt_id", (
        ("benchmark", "TEXT"), ("prompt", "TEXT"), ("response", "TEXT"), ("n_new_tokens", "INTEGER"))),
    "fairness": ("fairness", "fairness_samples", "item_id", (
        ("source_id", "TEXT"), ("question_index", "TEXT"), ("context_condition", "TEXT"),
        ("question_polarity", "TEXT"), ("label", "INTEGER"), ("target_index", "INTEGER"),
        ("unknown_index", "INTEGER"), ("pred_index", "INTEGER"), ("logprob_0", "REAL"), ("logprob_1", "REAL"),
        ("logprob_2", "REAL"), ("raw_output", "TEXT"))),
}


def _view_sql(keyword: str) -> str:
    bench, view, id_col, cols = SAMPLE_LAYOUTS[keyword]
    order = {"safety": SAFETY_COLUMNS, "fairness": FAIRNESS_COLUMNS}[keyword]  # version 1's column order
    parts = [f"sample_id AS {c}" if c == id_col else c if c == "category" else f"json_extract(payload, '$.{c}') AS {c}"
             for c in order]
    return (f"CREATE VIEW IF NOT EXISTS {view} AS SELECT variant_id, {', '.join(parts)} "
            f"FROM samples WHERE benchmark = '{bench}'")


def _affinity(value: Any, sql_type: str) -> Any:
    """``value`` as a version-1 column of ``sql_type`` would have stored it (SQLite type affinity),
    so rows read back the same: numbers in TEXT columns become text, whole floats in INTEGER
    columns become ints, ints in REAL columns floats; NaN is stored as NULL, as sqlite3 binds it."""
    if value is None:
        return None
    if isinstance(value, float) and value != value:
        return None
    if sql_type == "TEXT" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if sql_type == "INTEGER" and isinstance(value, float) and value.is_integer():
        return int(value)
    if sql_type in ("INTEGER", "REAL") and isinstance(value, bool):
        return int(value)
    if sql_type == "REAL" and isinstance(value, int):
        return float(value)
    return value


#: Columns that were NOT NULL in version 1 (a row without them is refused), and version-1 defaults.
REQUIRED = {"safety": ("prompt", "response"),
            "fairness": ("context_condition", "question_polarity", "label")}
DEFAULTS = {"safety": {"benchmark": "safety"}}


def sample_row(keyword: str, row: Mapping[str, Any]) -> tuple[str, str, str, str]:
    """(benchmark, sample_id, category, payload JSON) of a ``safety=`` / ``fairness=`` row.
    StoreError naming the row and the columns when a required one is missing."""
    bench, _, id_col, cols = SAMPLE_LAYOUTS[keyword]
    missing = [c for c in (id_col, "category", *REQUIRED.get(keyword, ())) if row.get(c) is None]
    if missing:
        raise StoreError(f"{keyword} sample {row.get(id_col)!r}: missing required column(s) {', '.join(missing)}")
    row = {**DEFAULTS.get(keyword, {}), **{k: v for k, v in row.items() if v is not None}}
    payload = {c: _affinity(row.get(c), t) for c, t in cols}
    return bench, str(row[id_col]), str(row["category"]), json.dumps(payload, sort_keys=True)


SAFETY_COLUMNS = ("prompt_id", "benchmark", "category", "prompt", "response", "n_new_tokens")
VERDICT_COLUMNS = ("prompt_id", "judge", "label", "safe", "score", "hazard", "rationale", "raw", "refused")
FAIRNESS_COLUMNS = (
    "item_id", "source_id", "category", "question_index", "context_condition", "question_polarity",
    "label", "target_index", "unknown_index", "pred_index", "logprob_0", "logprob_1", "logprob_2", "raw_output",
)
METRIC_COLUMNS = ("benchmark", "category", "metric", "value", "ci_low", "ci_high", "n")
SAMPLE_COLUMNS = ("benchmark", "sample_id", "category", "payload")
#: Tables (and views) :meth:`Store.rows` reads.
READABLE = {"samples", "safety_samples", "verdicts", "fairness_samples", "metrics", "stages"}


class StoreError(RuntimeError):
    pass


def _dumps(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, default=str)


class Store:
    """Open (and create if needed) ``results.sqlite``. Use one Store per process.

    ``read_only``: open an existing store without ever writing to it (:func:`open_existing`);
    a store of an older schema, or one without tables yet, is brought up to date in a copy in
    memory. Writing through such a Store raises ``sqlite3.OperationalError``."""

    def __init__(self, path: str | Path, *, read_only: bool = False):
        self.path = Path(path)
        self.read_only = read_only
        if read_only:
            self._open_read_only()
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.conn = sqlite3.connect(self.path, timeout=60, isolation_level=None)
            self.conn.row_factory = sqlite3.Row
            found = self._stored_version()
            if found is not None and found < SCHEMA_VERSION:
                _check_integrity(self.conn, self.path)  # before anything (even the WAL switch) is written
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=NORMAL")
            self.conn.execute("PRAGMA foreign_keys=ON")
            self.conn.executescript(SCHEMA)
        except sqlite3.DatabaseError as e:
            raise StoreError(store_error_message(e, self.path, fix="Restore it from a copy, or use a new --out "
                                                 "directory")) from None
        self._refuse_newer(found)
        self._bring_up_to_date(found)

    def _refuse_newer(self, found: int | None) -> None:
        if found is not None and found > SCHEMA_VERSION:
            raise StoreError(f"{self.path}: schema version {found} is newer than this peft-audit understands "
                             f"({SCHEMA_VERSION}); upgrade peft-audit to read it")

    def _bring_up_to_date(self, found: int | None) -> None:
        """Migrate a store of an older schema, or lay out the samples table, its views and the
        version of a new one (its tables already created)."""
        if found is not None and found < SCHEMA_VERSION:
            migrate(self.conn, self.path, found)
        else:
            with self.transaction() as c:
                _create_samples(c)
                c.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))

    def _open_read_only(self) -> None:
        try:
            self.conn = _connect_read_only(self.path)
            self.conn.row_factory = sqlite3.Row
            found = self._stored_version()
        except sqlite3.DatabaseError as e:
            raise StoreError(store_error_message(e, self.path)) from None
        self._refuse_newer(found)
        if found == SCHEMA_VERSION:
            return
        # an older (or empty) store: upgraded in memory, the file left as it is
        memory = sqlite3.connect(":memory:", isolation_level=None)
        memory.row_factory = sqlite3.Row
        self.conn.backup(memory)
        self.conn.close()
        self.conn = memory
        if found is None:
            self.conn.executescript(SCHEMA)
        self._bring_up_to_date(found)
        self.conn.execute("PRAGMA query_only=ON")  # the copy is as read-only as the file

    def _stored_version(self) -> int | None:
        """The schema version of an existing store; None for a new (empty) file."""
        has_meta = self.conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'").fetchone()
        if not has_meta:
            return None
        row = self.conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        return int(row[0]) if row else None

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
        """Forget every stage and sample of a variant, so that it is evaluated from scratch."""
        with self.transaction() as c:
            for table in ("stages", "samples", "verdicts", "metrics"):
                c.execute(f"DELETE FROM {table} WHERE variant_id=?", (vid,))

    def commit_stage(
        self,
        vid: str,
        stage: str,
        seconds: float,
        *,
        samples: Iterable[Mapping[str, Any]] = (),
        safety: Iterable[Mapping[str, Any]] = (),
        verdicts: Iterable[Mapping[str, Any]] = (),
        fairness: Iterable[Mapping[str, Any]] = (),
        metrics: Iterable[Mapping[str, Any]] = (),
    ) -> None:
        """Write a stage's rows and its marker in one transaction (all or nothing).

        ``samples`` are generic rows (``benchmark, sample_id, category, payload`` with payload a
        dict); ``safety`` / ``fairness`` rows in the columns of :data:`SAFETY_COLUMNS` /
        :data:`FAIRNESS_COLUMNS` land in the same table (see :data:`SAMPLE_LAYOUTS`)."""
        faults.point(f"store.{stage}.begin")
        with self.transaction() as c:
            generic = [(r["benchmark"], str(r["sample_id"]), str(r["category"]),
                        json.dumps(r["payload"], sort_keys=True)) for r in samples]
            generic += [sample_row("safety", r) for r in safety]
            generic += [sample_row("fairness", r) for r in fairness]
            _insert(c, "samples", vid, SAMPLE_COLUMNS, [dict(zip(SAMPLE_COLUMNS, g)) for g in generic])
            _insert(c, "verdicts", vid, VERDICT_COLUMNS, verdicts)
            _insert(c, "metrics", vid, METRIC_COLUMNS, metrics)
            c.execute(
                "INSERT OR REPLACE INTO stages VALUES (?,?,?,?)", (vid, stage, seconds, time.time())
            )
            faults.point(f"store.{stage}.commit")
        faults.point(f"store.{stage}.committed")

    # ----- reads --------------------------------------------------------------------------
    def rows(self, table: str, variant_id: str | None = None) -> list[dict[str, Any]]:
        if table not in READABLE:
            raise StoreError(f"unknown table {table}; valid: {', '.join(sorted(READABLE))}")
        q = f"SELECT * FROM {table}" + (" WHERE variant_id=?" if variant_id else "")
        return [dict(r) for r in self.conn.execute(q, (variant_id,) if variant_id else ())]

    def frame(self, table: str, variant_id: str | None = None):
        """The same rows as a pandas DataFrame (columns kept even when empty)."""
        import pandas as pd

        if table not in READABLE:
            raise StoreError(f"unknown table {table}; valid: {', '.join(sorted(READABLE))}")
        cur = self.conn.execute(
            f"SELECT * FROM {table}" + (" WHERE variant_id=?" if variant_id else ""),
            (variant_id,) if variant_id else (),
        )
        cols = [d[0] for d in cur.description]
        return pd.DataFrame(cur.fetchall(), columns=cols)


    def samples(self, benchmark: str, variant_id: str | None = None) -> list[dict[str, Any]]:
        """A benchmark's per-item rows: ``variant_id, sample_id, category`` plus its payload's keys."""
        q = "SELECT * FROM samples WHERE benchmark=?" + (" AND variant_id=?" if variant_id else "")
        args = (benchmark, variant_id) if variant_id else (benchmark,)
        return [{"variant_id": r["variant_id"], "sample_id": r["sample_id"], "category": r["category"],
                 **json.loads(r["payload"])} for r in self.conn.execute(q, args)]


def _create_samples(c: sqlite3.Connection) -> None:
    _create_samples_table_only(c)
    for keyword in SAMPLE_LAYOUTS:
        c.execute(_view_sql(keyword))


def migrate(conn: sqlite3.Connection, path: Path, found: int) -> None:
    """Upgrade a store of schema ``found`` to :data:`SCHEMA_VERSION` in place, in one transaction.

    1 -> 2: the rows of ``safety_samples`` and ``fairness_samples`` move into ``samples`` (payload
    built in Python, so floats keep every bit), the two tables are dropped and re-created as views
    of the same name and columns.

    2 -> 3: ``verdicts`` gains the ``refused`` column, NULL in every existing row: those runs did
    not record a refusal verdict, and it is not guessed afterwards (their reports say the refusal
    rate was not measured).

    A version-1 store takes both steps; ``meta.schema_version`` becomes :data:`SCHEMA_VERSION`.
    Variants, stages, verdicts and metrics keep their rows, so finished variants stay finished and
    trained adapters are reused. A store that fails SQLite's integrity check is refused
    (StoreError) and left as it is; any error rolls everything back.
    """
    _check_integrity(conn, path)
    if found not in (1, 2):
        raise StoreError(f"{path}: no migration from schema version {found} to {SCHEMA_VERSION}")
    conn.execute("BEGIN IMMEDIATE")
    try:
        if found == 1:
            _move_samples_into_one_table(conn)
        columns = {r[1] for r in conn.execute("PRAGMA table_info(verdicts)")}
        if "refused" not in columns:
            conn.execute("ALTER TABLE verdicts ADD COLUMN refused INTEGER")
        conn.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        conn.execute("INSERT OR REPLACE INTO meta VALUES ('migrated_from', ?)", (json.dumps(found),))
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _move_samples_into_one_table(conn: sqlite3.Connection) -> None:
    """Schema 1 -> 2 (see :func:`migrate`)."""
    _create_samples_table_only(conn)
    for keyword, (_, table, _, _) in SAMPLE_LAYOUTS.items():
        exists = conn.execute("SELECT type FROM sqlite_master WHERE name=?", (table,)).fetchone()
        if exists and exists[0] == "table":
            rows = [dict(r) for r in conn.execute(f"SELECT * FROM {table}")]
            conn.executemany("INSERT OR REPLACE INTO samples VALUES (?,?,?,?,?)",
                             [(r["variant_id"], *sample_row(keyword, r)) for r in rows])
            conn.execute(f"DROP TABLE {table}")
    for keyword in SAMPLE_LAYOUTS:
        conn.execute(_view_sql(keyword))


def _check_integrity(conn: sqlite3.Connection, path: Path) -> None:
    check = conn.execute("PRAGMA integrity_check").fetchone()[0]
    if check != "ok":
        raise StoreError(f"{path}: integrity check failed ({check}); not migrating a damaged store. Restore it "
                         "from a backup, or start a new --out directory")


def _create_samples_table_only(c: sqlite3.Connection) -> None:
    for statement in SAMPLES_SCHEMA.split(";"):
        if statement.strip():
            c.execute(statement)


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
