"""The real pipeline on a tiny model: kill -9 mid-sweep and resume (local executor), and the
Ray executor on a 2-CPU local instance; both must match an uninterrupted local run row for row.

One sweep serves all three runs: the base, LoRA and IA3 (trained for one step), and a variant
whose adapter does not exist, which must be recorded as failed while the others finish.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from peft_audit.config import load_config
from peft_audit.pipeline import run_sweep
from peft_audit.sweep.options import RunOptions
from peft_audit.store import Store

KILL_AFTER_STAGES = 3  # stage rows committed before the kill: mid-sweep, some variants unfinished
TABLES = {
    "safety_samples": ("prompt_id", "benchmark", "category", "prompt", "response", "n_new_tokens"),
    "verdicts": ("prompt_id", "judge", "label", "safe", "score", "hazard", "rationale"),
    "fairness_samples": ("item_id", "category", "context_condition", "question_polarity", "label", "pred_index",
                         "logprob_0", "logprob_1", "logprob_2"),
    "metrics": ("benchmark", "category", "metric", "value", "ci_low", "ci_high", "n"),
}


def sweep_config(model_dir: Path) -> dict:
    base = str(model_dir)
    return {
        "name": "tiny-sweep",
        "base_models": [base],
        "methods": ["lora", "ia3"],
        "algos": ["sft"],
        "lr": [1e-3],
        "device": "cpu",
        "variants": [{"base_model": base, "method": "lora", "adapter": "/nonexistent/adapter", "label": "broken"}],
        "training": {"max_steps": 1, "batch_size": 2, "max_seq_len": 48, "max_examples": 4},
        "safety": {"limit_per_category": 1, "max_new_tokens": 3, "over_refusal": False},
        "fairness": {"per_cell": 1, "bootstrap": 20, "categories": ["age", "gender_identity"]},
    }


def snapshot(run_dir: Path) -> dict:
    """Every result row of a run, floats rounded, keyed so duplicates or losses show."""
    out: dict = {}
    with Store(run_dir / "results.sqlite") as s:
        out["variants"] = sorted((v["id"], v["status"], (v["error"] or "")[:40]) for v in s.variants())
        out["stages"] = sorted((r["variant_id"], r["stage"]) for r in s.rows("stages"))
        for table, cols in TABLES.items():
            rows = [tuple(round(r[c], 4) if isinstance(r[c], float) else r[c] for c in ("variant_id", *cols))
                    for r in s.rows(table)]
            out[table] = sorted(rows, key=repr)
    return out


@pytest.fixture(scope="module")
def config_file(tiny_model_dir, tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("cfg") / "sweep.yaml"
    p.write_text(yaml.safe_dump(sweep_config(tiny_model_dir)))
    return p


@pytest.fixture(scope="module")
def reference(config_file, tmp_path_factory) -> dict:
    """An uninterrupted run with the local executor (fresh subprocess per variant, 2 jobs)."""
    run_dir = tmp_path_factory.mktemp("uninterrupted")
    run_sweep(load_config(config_file), run_dir, RunOptions(jobs=2))
    return {**snapshot(run_dir), "run_dir": run_dir}


def test_reference_run_isolates_the_failing_variant(reference):
    statuses = sorted(s for _, s, _ in reference["variants"])
    assert statuses == ["done", "done", "done", "failed"]
    assert any("AdapterNotFound" in e or "adapter" in e.lower() for _, s, e in reference["variants"] if s == "failed")
    assert reference["safety_samples"] and reference["fairness_samples"] and reference["metrics"]


def _stage_rows(db: Path) -> int:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as c:
            return c.execute("SELECT COUNT(*) FROM stages").fetchone()[0]
    except sqlite3.Error:
        return 0


def test_kill_9_mid_sweep_then_resume_matches_uninterrupted(config_file, reference, tmp_path):
    cmd = [sys.executable, "-c", "from peft_audit.cli import app; app()", "run", str(config_file),
           "--out", str(tmp_path), "--jobs", "2"]
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while _stage_rows(tmp_path / "results.sqlite") < KILL_AFTER_STAGES:
            assert proc.poll() is None, "the sweep ended before it could be killed"
            assert time.monotonic() < deadline, "no stage committed in time"
            time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and its workers, like a lost node
        proc.wait()
    interrupted = snapshot(tmp_path)
    assert any(s != "done" for _, s, _ in interrupted["variants"]), "kill came too late to test resume"
    assert len(interrupted["stages"]) < len(reference["stages"])

    # Resumed in this process: what a kill leaves behind is the subject, and the resume's driver
    # is the same for every executor (the reference compares the local executor's workers)
    run_sweep(load_config(config_file), tmp_path, RunOptions(in_process=True))
    assert snapshot(tmp_path) == {k: v for k, v in reference.items() if k != "run_dir"}


def test_ray_executor_matches_local(config_file, reference, tmp_path):
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        run_sweep(load_config(config_file), tmp_path, RunOptions(executor="ray"))
    finally:
        ray.shutdown()
    assert snapshot(tmp_path) == {k: v for k, v in reference.items() if k != "run_dir"}


def test_adapter_trained_with_the_same_id_is_reused_not_retrained(config_file, reference, tmp_path, monkeypatch):
    import shutil

    import peft_audit.report
    import peft_audit.training

    def no_training(*a, **k):
        raise AssertionError("an adapter with this id exists: it must be reused, not retrained")

    monkeypatch.setattr(peft_audit.training, "train_adapter", no_training)
    # no benchmark runs here, so no report to write (the report module is tested elsewhere)
    monkeypatch.setattr(peft_audit.report, "finish_run", lambda *a, **k: [])
    shutil.copytree(reference["run_dir"] / "adapters", tmp_path / "adapters")
    cfg = load_config(config_file)
    # a different evaluation protocol (new run dir), same trained variants: same ids
    cfg = cfg.model_copy(update={"safety": cfg.safety.model_copy(update={"enabled": False}),
                                 "fairness": cfg.fairness.model_copy(update={"enabled": False})})
    result = run_sweep(cfg, tmp_path, RunOptions(in_process=True))
    assert (result.done, result.failed) == (3, 1)
    with Store(tmp_path / "results.sqlite") as s:
        trained = [v for v in s.variants("done") if v["method"] != "base"]
        assert len(trained) == 2
        for v in trained:
            assert s.stages_done(v["id"])["trained"] == 0.0
            assert v["metadata"]["provenance"]
