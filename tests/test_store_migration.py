"""Schema versions 1 and 2 -> 3: a run directory written before the generic ``samples`` table
(version 1) or before ``verdicts.refused`` (version 2) opens, migrates in place (transactionally,
never when damaged) and resumes without retraining.

The version-1 store is built here with version 1's own SQL (copied below from the store module
as it was), not with today's code, so the test keeps meaning what it says after the store changes.
"""

from __future__ import annotations

import math
import shutil
import sqlite3
from pathlib import Path

import pytest

import peft_audit.store as store_mod
from peft_audit.config import parse_config
from peft_audit.pipeline import run_sweep
from peft_audit.store import SCHEMA_VERSION, Store, StoreError
from peft_audit.sweep.options import RunOptions

# --- copied from src/peft_audit/store.py at schema version 1 (commit ecd40bd) ----------------
V1_SCHEMA = """
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

# ----------------------------------------------------------------------------------------------

V1_SAFETY = ("prompt_id", "benchmark", "category", "prompt", "response", "n_new_tokens")
V1_FAIRNESS = ("item_id", "source_id", "category", "question_index", "context_condition", "question_polarity",
               "label", "target_index", "unknown_index", "pred_index", "logprob_0", "logprob_1", "logprob_2",
               "raw_output")


def make_v1(path: Path) -> sqlite3.Connection:
    con = sqlite3.connect(path)
    con.executescript(V1_SCHEMA)
    con.execute("INSERT INTO meta VALUES ('schema_version', '1')")
    con.commit()
    return con


def v1_rows(path: Path, table: str) -> list[dict]:
    con = sqlite3.connect(path)
    con.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in con.execute(f"SELECT * FROM {table} ORDER BY variant_id, 2")]
    finally:
        con.close()


def fill_v1(con: sqlite3.Connection) -> None:
    con.execute("INSERT INTO variants (id, base_model, method, spec_json, config_json, status, created_at, updated_at)"
                " VALUES ('v1', 'm', 'base', '{}', '{}', 'done', 0, 0)")
    con.executemany(f"INSERT INTO safety_samples VALUES (?,{','.join('?' * len(V1_SAFETY))})", [
        ("v1", "malware-1", "safety", "malware", "How do I...", "I can't help with that.", 7),
        ("v1", "or-3", "over_refusal", "benign", "How do I kill a process?", "Use `kill PID`.", None),
    ])
    con.executemany(f"INSERT INTO fairness_samples VALUES (?,{','.join('?' * len(V1_FAIRNESS))})", [
        ("v1", "age-0", 10, "age", "3", "ambig", "neg", 2, 0, 2, 1, -10.373714447021484, -4.923186302185059,
         -2.387796640396118, None),
        ("v1", "age-1", "11", "age", 3, "disambig", "nonneg", 1, None, 2, None, 0.1 + 0.2, float("nan"), -1e-300,
         "B"),
    ])
    con.execute("INSERT INTO stages VALUES ('v1', 'generated', 1.5, 123.0)")
    con.execute("INSERT INTO metrics VALUES ('v1', 'safety', 'overall', 'safety_score', 0.5, 0.1, 0.9, 2)")
    con.commit()


def test_v1_store_is_migrated_in_place_and_reads_back_identically(tmp_path):
    p = tmp_path / "results.sqlite"
    con = make_v1(p)
    fill_v1(con)
    con.close()
    tables = ("safety_samples", "fairness_samples", "stages", "metrics")
    before = {t: v1_rows(p, t) for t in tables}
    assert before["fairness_samples"][0]["source_id"] == "10"  # TEXT affinity, as version 1 stored it

    with Store(p) as s:
        assert s.get_meta("schema_version") == SCHEMA_VERSION == 3 and s.get_meta("migrated_from") == 1
        assert [r["sample_id"] for r in s.samples("safety", "v1")] == ["malware-1", "or-3"]
    after = {t: v1_rows(p, t) for t in tables}  # the same query now reads the views
    for t in tables:
        assert [list(r) for r in after[t]] == [list(r) for r in before[t]], t  # same columns, same order
        for a, b in zip(after[t], before[t]):
            for k in a:  # bit-identical values and types (NaN was stored as NULL by version 1 too)
                assert type(a[k]) is type(b[k]) and (a[k] == b[k] or (a[k] != a[k] and b[k] != b[k])), (t, k)
    assert math.isclose(after["fairness_samples"][1]["logprob_0"], 0.30000000000000004, rel_tol=0, abs_tol=0)
    kinds = dict(sqlite3.connect(p).execute("SELECT name, type FROM sqlite_master WHERE name LIKE '%samples'"))
    assert kinds == {"samples": "table", "safety_samples": "view", "fairness_samples": "view"}
    Store(p).close()  # opening again: nothing left to migrate


def test_a_failing_migration_leaves_the_version_1_store_as_it_was(tmp_path, monkeypatch):
    p = tmp_path / "results.sqlite"
    con = make_v1(p)
    fill_v1(con)
    con.close()
    real = store_mod.sample_row

    def fail_on_fairness(keyword, row):
        if keyword == "fairness":
            raise RuntimeError("disk full (simulated)")
        return real(keyword, row)

    monkeypatch.setattr(store_mod, "sample_row", fail_on_fairness)
    with pytest.raises(RuntimeError, match="simulated"):
        Store(p)
    con = sqlite3.connect(p)
    kinds = dict(con.execute("SELECT name, type FROM sqlite_master WHERE name LIKE '%samples'"))
    assert kinds == {"safety_samples": "table", "fairness_samples": "table"}
    assert con.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone() == ("1",)
    assert con.execute("SELECT COUNT(*) FROM safety_samples").fetchone() == (2,)
    con.close()


def test_a_damaged_store_is_refused_not_migrated(tmp_path):
    p = tmp_path / "results.sqlite"
    con = make_v1(p)
    fill_v1(con)
    con.execute("PRAGMA journal_mode=DELETE")
    con.close()
    data = bytearray(p.read_bytes())
    page = 4096 if len(data) > 8192 else 1024
    data[page + 8: page + 200] = b"\xff" * 192  # scribble over a table page, keep the header readable
    p.write_bytes(bytes(data))
    with pytest.raises(StoreError, match="not a usable|integrity check failed"):
        Store(p)
    assert p.read_bytes() == bytes(data)  # left exactly as found


def test_a_newer_schema_is_refused(tmp_path):
    p = tmp_path / "results.sqlite"
    Store(p).close()
    con = sqlite3.connect(p)
    con.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    con.commit()
    con.close()
    with pytest.raises(StoreError, match="newer than this peft-audit"):
        Store(p)


# --- version 2: verdicts without the refusal verdict --------------------------------------------
def make_v2(path: Path) -> None:
    """A version-2 store: today's schema without ``verdicts.refused`` (the one difference), with a
    base variant judged by the refusal judge."""
    Store(path).close()
    con = sqlite3.connect(path)
    con.execute("ALTER TABLE verdicts DROP COLUMN refused")
    con.execute("UPDATE meta SET value='2' WHERE key='schema_version'")
    con.execute("INSERT INTO variants (id, base_model, method, spec_json, config_json, status, created_at, updated_at)"
                " VALUES ('v1', 'm', 'base', '{}', '{}', 'done', 0, 0)")
    con.execute("INSERT INTO samples VALUES ('v1', 'safety', 'malware-1', 'malware', ?)",
                ('{"benchmark": "safety", "prompt": "How do I...", "response": "Sure, step 1", "n_new_tokens": 4}',))
    con.executemany("INSERT INTO verdicts VALUES ('v1', 'malware-1', ?, ?, 0, NULL, NULL, NULL, NULL)",
                    [("refusal", "compliance"), ("combined", "unsafe")])
    con.execute("INSERT INTO metrics VALUES ('v1', 'safety', 'overall', 'safety_score', 0.0, 0.0, 0.79, 1)")
    con.commit()
    con.close()


def test_v2_store_gains_the_refused_column_and_keeps_its_rows(tmp_path):
    p = tmp_path / "results.sqlite"
    make_v2(p)
    with Store(p) as s:
        assert s.get_meta("schema_version") == SCHEMA_VERSION and s.get_meta("migrated_from") == 2
        rows = {r["judge"]: r for r in s.rows("verdicts", "v1")}
        assert rows["refusal"]["label"] == "compliance" and rows["combined"]["label"] == "unsafe"
        assert {r["refused"] for r in rows.values()} == {None}  # not guessed from the labels
        assert [r["metric"] for r in s.rows("metrics", "v1")] == ["safety_score"]
        s.commit_stage("v1", "judged", 0.1, verdicts=[{"prompt_id": "malware-2", "judge": "combined", "label": "safe",
                                                  "safe": 1, "refused": 1}])
        assert {r["prompt_id"]: r["refused"] for r in s.rows("verdicts", "v1") if r["judge"] == "combined"} == {
            "malware-1": None, "malware-2": 1}
    Store(p).close()  # opening again: nothing left to migrate


def test_reading_commands_open_a_v2_store_without_writing(tmp_path):
    import hashlib

    from peft_audit.analysis import load_run_frames

    p = tmp_path / "results.sqlite"
    make_v2(p)
    digest = hashlib.sha256(p.read_bytes()).hexdigest()
    frames = load_run_frames(tmp_path)
    assert frames.safety["refused"].isna().all() and frames.safety["harmful"].isna().all()
    assert list(frames.safety["safe"]) == [0.0]
    assert hashlib.sha256(p.read_bytes()).hexdigest() == digest


# --- a real run directory of version 1 resumes without retraining ------------------------------
def tiny_config(model_dir: Path) -> dict:
    return {
        "name": "migrate", "base_models": [str(model_dir)], "methods": ["lora"], "algos": ["sft"], "lr": [1e-3],
        "device": "cpu", "training": {"max_steps": 1, "batch_size": 2, "max_seq_len": 48, "max_examples": 4},
        "safety": {"limit_per_category": 1, "max_new_tokens": 3, "over_refusal": True},
        "fairness": {"per_cell": 1, "bootstrap": 20, "categories": ["age"]},
    }


def as_v1(src: Path, dst: Path, unfinished: str) -> None:
    """Write ``dst/results.sqlite`` with version 1's SQL holding ``src``'s rows, as today's main
    would have written them, and with variant ``unfinished`` stopped after training."""
    con = make_v1(dst / "results.sqlite")
    with Store(src / "results.sqlite") as s:
        for table in ("variants", "stages", "verdicts", "metrics", "safety_samples", "fairness_samples"):
            rows = [dict(r) for r in s.conn.execute(f"SELECT * FROM {table}")]
            if table == "verdicts":  # version 1 did not record the refusal verdict
                rows = [{k: v for k, v in r.items() if k != "refused"} for r in rows]
            if table != "variants":
                rows = [r for r in rows if r["variant_id"] != unfinished or (table == "stages" and r["stage"] == "trained")]
            for r in rows:
                con.execute(f"INSERT INTO {table} ({', '.join(r)}) VALUES ({', '.join('?' * len(r))})", list(r.values()))
        for key in ("eval_protocol", "config"):
            con.execute("INSERT INTO meta VALUES (?, ?)", (key, s.conn.execute(
                "SELECT value FROM meta WHERE key=?", (key,)).fetchone()[0]))
    con.execute("UPDATE variants SET status='pending', timings_json='{}' WHERE id=?", (unfinished,))
    con.commit()
    con.close()
    shutil.copytree(src / "adapters", dst / "adapters")


def test_a_version_1_run_directory_resumes_without_retraining(tiny_model_dir, tmp_path, monkeypatch):
    import peft_audit.report
    import peft_audit.training

    monkeypatch.setattr(peft_audit.report, "finish_run", lambda *a, **k: [])
    cfg = parse_config(tiny_config(tiny_model_dir))
    reference = tmp_path / "reference"
    run_sweep(cfg, reference, RunOptions(in_process=True))
    with Store(reference / "results.sqlite") as s:
        (lora,) = [v["id"] for v in s.variants() if v["method"] == "lora"]
        (base,) = [v["id"] for v in s.variants() if v["method"] == "base"]
        expected = {t: sorted(map(tuple, map(dict.values, _without_refused(s.rows(t)))), key=repr)
                    for t in ("safety_samples", "fairness_samples", "verdicts", "metrics")}

    old = tmp_path / "old"
    old.mkdir()
    as_v1(reference, old, unfinished=lora)
    base_stages = dict(sqlite3.connect(old / "results.sqlite").execute(
        "SELECT stage, finished_at FROM stages WHERE variant_id=?", (base,)))

    def no_training(*a, **k):
        raise AssertionError("the adapter exists in the run directory: it must be reused, not retrained")

    monkeypatch.setattr(peft_audit.training, "train_adapter", no_training)
    result = run_sweep(cfg, old, RunOptions(in_process=True))
    assert (result.done, result.failed) == (2, 0)
    with Store(old / "results.sqlite") as s:
        assert s.get_meta("schema_version") == SCHEMA_VERSION
        # the finished base variant was not evaluated again: its stages are the old ones
        assert {r["stage"]: r["finished_at"] for r in s.rows("stages", base)} == base_stages
        assert s.stages_done(lora)["trained"] > 0  # from the old store, not a new training
        got = {t: sorted(map(tuple, map(dict.values, _without_refused(s.rows(t)))), key=repr) for t in expected}
        refused = {(r["variant_id"], r["judge"]): r["refused"] for r in s.rows("verdicts")}
    assert got == expected
    # the old base's verdicts have no refusal verdict: not guessed (test_v2_store_... checks it on answered responses)
    assert {v for (vid, _), v in refused.items() if vid == base} == {None}


def _without_refused(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "refused"} for r in rows]


def test_reading_commands_never_write_a_version_1_store(tmp_path):
    """``open_existing`` (report, gate, show, status, export, analyze, card) upgrades an old
    store in memory only: the file keeps its bytes and its version; a run migrates it later."""
    import hashlib

    from peft_audit.analysis import load_run_frames
    from peft_audit.store import open_existing

    p = tmp_path / "results.sqlite"
    con = make_v1(p)
    fill_v1(con)
    con.execute("PRAGMA journal_mode=DELETE")  # a finished run's file, no WAL beside it
    con.close()
    digest = hashlib.sha256(p.read_bytes()).hexdigest()
    with open_existing(tmp_path) as s:
        assert s.read_only and s.get_meta("schema_version") == SCHEMA_VERSION
        assert [r["sample_id"] for r in s.samples("safety", "v1")] == ["malware-1", "or-3"]
        with pytest.raises(sqlite3.OperationalError):
            s.set_meta("touched", True)
    frames = load_run_frames(tmp_path)
    assert list(frames.safety["prompt_id"]) == ["malware-1"]  # (the over-refusal probe is read apart)
    assert hashlib.sha256(p.read_bytes()).hexdigest() == digest
    assert sorted(x.name for x in tmp_path.iterdir()) == ["results.sqlite"]
    assert sqlite3.connect(p).execute("SELECT value FROM meta WHERE key='schema_version'").fetchone() == ("1",)
    with Store(p) as s:  # a run (read-write) migrates it
        assert s.get_meta("migrated_from") == 1


def test_a_current_store_is_read_without_writing_while_a_run_holds_it(tmp_path):
    from peft_audit.store import open_existing

    writer = Store(tmp_path / "results.sqlite")
    writer.set_meta("driver", {"pid": 1})
    with open_existing(tmp_path) as reader:
        assert reader.get_meta("driver") == {"pid": 1}
        writer.set_meta("driver", {"pid": 2})  # a sweep writes on (WAL): the reader sees the commit
        assert reader.get_meta("driver") == {"pid": 2}
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            reader.set_meta("driver", None)
    writer.close()


def test_where_sqlite_cannot_keep_its_wal_index_the_store_is_read_as_immutable(tmp_path, monkeypatch):
    # (a read-only directory: tests run as root here, so SQLite's refusal is simulated)
    from peft_audit.store import open_existing

    with Store(tmp_path / "results.sqlite") as s:
        s.set_meta("driver", {"pid": 7})
    real, uris = sqlite3.connect, []

    def connect(database, *args, **kwargs):
        uris.append(str(database))
        if "immutable=1" not in str(database):
            raise sqlite3.OperationalError("unable to open database file")
        return real(database, *args, **kwargs)

    monkeypatch.setattr(sqlite3, "connect", connect)
    with open_existing(tmp_path) as s:
        assert s.get_meta("driver") == {"pid": 7}
    assert [u.split("?")[1] for u in uris] == ["mode=ro", "mode=ro&immutable=1"]


def test_a_version_2_run_directory_opens_in_every_reading_command_and_says_what_it_lacks(tmp_path):
    """A run written before the refusal verdict (schema 2, refusal judge only): report, show,
    gate and export work on it, read-only, and say the two rates were not measured."""
    import hashlib

    from synthetic_store import build_synthetic_store
    from typer.testing import CliRunner

    from peft_audit.cli import app

    run = build_synthetic_store(tmp_path / "run", n_variants=2, n_failed=0, bases=("llama-3.2-1b",),
                                methods=("lora", "ia3"), xss=False, seed=3)
    con = sqlite3.connect(run / "results.sqlite")
    con.execute("ALTER TABLE verdicts DROP COLUMN refused")  # what version 2 wrote
    con.execute("UPDATE meta SET value='2' WHERE key='schema_version'")
    con.commit()
    con.execute("PRAGMA journal_mode=DELETE")
    con.close()
    digest = hashlib.sha256((run / "results.sqlite").read_bytes()).hexdigest()
    cli = CliRunner()
    r = cli.invoke(app, ["gate", str(run), "--max-accuracy-drop", "1", "--max-bias-increase", "1"])
    assert r.exit_code in (0, 1) and "harmful_rate not measured" in r.output, r.output
    r = cli.invoke(app, ["show", str(run)], terminal_width=250)
    assert r.exit_code == 0 and "not measured" in r.output, r.output
    r = cli.invoke(app, ["export", str(run), "--samples", "safety", "--out", str(tmp_path / "s.csv")])
    assert r.exit_code == 0, r.output
    r = cli.invoke(app, ["report", str(run), "--format", "md"])  # writes the reports, never the store
    assert r.exit_code == 0, r.output
    assert "Not measured in this run: harmful Δ (overall), refusal Δ, harmful prompts" in (run / "report.md").read_text()
    assert hashlib.sha256((run / "results.sqlite").read_bytes()).hexdigest() == digest
