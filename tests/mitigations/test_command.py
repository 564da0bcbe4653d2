"""``peft-audit mitigate`` on a tiny finished run: repairs evaluated under the run's protocol and
reported (Mitigations section, card, exports), one-line errors (exit 2) naming the valid
methods and variants, refusal of a run directory in use, and a resume after ``kill -9`` that
ends with the same results as an uninterrupted run."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from peft_audit.config import parse_config
from peft_audit.mitigations.command import mitigate
from peft_audit.store import open_existing
from peft_audit.sweep.lock import RunDirLock
from peft_audit.sweep.options import RunOptions
from test_reliability_cli import cli, one_error  # the CLI's one error checker

ROOT = Path(__file__).resolve().parents[2]
METHODS = "safety-mix,safemerge"
ORIGINAL = "lora · sft · lr 1e-3 · 1 ep"


def tiny_config(model_dir: Path) -> dict:
    return {
        "name": "mit", "base_models": [str(model_dir)], "methods": ["lora"], "algos": ["sft"], "lr": [1e-3],
        "device": "cpu", "share_base": False,
        # long enough for the refusal demonstrations in the tiny byte-level tokenizer
        "training": {"max_steps": 2, "batch_size": 2, "max_seq_len": 384, "max_examples": 4},
        "safety": {"limit_per_category": 1, "max_new_tokens": 4, "batch_size": 12},
        "fairness": {"per_cell": 1, "bootstrap": 20, "categories": ["age"], "batch_size": 3},
    }


@pytest.fixture(scope="module")
def finished(tmp_path_factory, lively_model_dir) -> Path:
    """A finished tiny run: base + one LoRA variant."""
    from peft_audit.pipeline import run_sweep

    run_dir = tmp_path_factory.mktemp("mit") / "run"
    run_sweep(parse_config(tiny_config(lively_model_dir)), run_dir, RunOptions(in_process=True))
    return run_dir


def copy_run(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("run.lock"))
    return dst


@pytest.fixture(scope="module")
def repaired(finished, tmp_path_factory) -> Path:
    """The finished run with both repairs of the LoRA variant, run without interruption."""
    run_dir = copy_run(finished, tmp_path_factory.mktemp("mit-a") / "run")
    result = mitigate(run_dir, ORIGINAL, METHODS.split(","), {"fraction": 0.5}, RunOptions(in_process=True))
    assert result.failed == 0
    return run_dir


def repair_ids(run_dir: Path) -> dict[str, str]:
    with open_existing(run_dir) as st:
        return {r["spec"]["repair"]["method"]: r["id"] for r in st.variants() if r["spec"].get("repair")}


def test_each_repair_is_evaluated_and_linked_to_its_original(repaired):
    with open_existing(repaired) as st:
        rows = {r["id"]: r for r in st.variants()}
        original = next(i for i, r in rows.items() if r["method"] == "lora" and not r["spec"].get("repair"))
        protocol = st.get_meta("eval_protocol")
    ids = repair_ids(repaired)
    assert set(ids) == {"safety-mix", "safemerge"}
    for method, vid in ids.items():
        r = rows[vid]
        assert r["status"] == "done" and r["spec"]["repair_of"] == original and r["base_id"] == rows[original]["base_id"]
        assert r["metadata"]["provenance"]  # trained (safety-mix) or built (safemerge) adapter, recorded
    assert rows[ids["safety-mix"]]["spec"]["training"]["safety_mix"] == 0.5
    assert rows[ids["safety-mix"]]["label"] == f"{ORIGINAL} ⟶ safety-mix 0.5"
    assert rows[ids["safemerge"]]["metadata"]["provenance"]["repair"]["of"] == original
    import json

    summary = {v["id"]: v for v in json.loads((repaired / "summary.json").read_text())["variants"]}
    assert summary[ids["safety-mix"]]["repair_of"] == original
    assert summary[ids["safety-mix"]]["repair"] == {"method": "safety-mix", "options": {"fraction": 0.5}}
    assert "repair_of" not in summary[original]  # unrepaired variants' records are unchanged
    # the protocol is the run's, and a second identical command finds nothing to do
    result = mitigate(repaired, original, METHODS.split(","), {"fraction": 0.5}, RunOptions(in_process=True))
    assert result.failed == 0
    with open_existing(repaired) as st:
        assert st.get_meta("eval_protocol") == protocol and len(st.variants()) == len(rows)


def test_report_card_and_exports_show_the_repairs(repaired, tmp_path):
    from peft_audit.analysis import analyze
    from peft_audit.export import export_samples
    from peft_audit.report.card import build_card

    ids = repair_ids(repaired)
    md = (repaired / "report.md").read_text()
    assert "## Mitigations" in md and f"{ORIGINAL} ⟶ safety-mix 0.5" in md and f"{ORIGINAL} ⟶ safemerge τ 0.2 α 0.5" in md
    assert "repaired from" in md and "safety-mix (fraction 0.5)" in md
    assert 'id="mitigations"' in (repaired / "report.html").read_text()
    a = analyze(repaired, n_boot=50)
    m = a.mitigations
    assert set(m["variant_id"]) == set(ids.values())
    assert {"harmful_rate", "refusal_rate", "abs_bias_ambig", "heldout_loss"} <= set(m["metric"])
    # the utility benchmark's held-out loss, joined vs the original (same held-out rows) and vs the base
    utility = m[m["metric"] == "heldout_loss"]
    assert utility[["value", "delta_vs_original", "delta_vs_base"]].notna().all().all()
    assert "utility: held-out loss" in md
    assert set(a.tables()["variants"].dropna(subset=["repair_of"])["id"]) == set(ids.values())
    # the factor analysis and trade-offs are over the sweep's design: repairs are left out of them
    assert not set(a.table["variant_id"]) & set(ids.values()) and ORIGINAL in set(a.table["label"])
    card = build_card(repaired, ids["safemerge"], date="2026-01-01", n_boot=50)
    assert "| repaired from |" in card and "safemerge (alpha 0.5, threshold 0.2)" in card and "### Repair" in card
    out = export_samples(open_existing(repaired), "safety", tmp_path / "s.csv")
    import pandas as pd

    df = pd.read_csv(out)
    got = df.dropna(subset=["repair_of"]).groupby("variant_id")["repair"].first().to_dict()
    assert got == {ids["safety-mix"]: "safety-mix (fraction 0.5)", ids["safemerge"]: "safemerge (alpha 0.5, threshold 0.2)"}


@pytest.mark.parametrize(("args", "expect"), [
    (["--variant", ORIGINAL, "--with", "safety-mix,bogus"], "unknown repair method 'bogus'; valid: safety-mix, "
                                                              "safelora, safemerge"),
    (["--variant", "nope", "--with", "safety-mix"], f"--variant 'nope' is no variant of this run; give a label or id: "
                                                    f"{ORIGINAL} ["),
    (["--variant", ORIGINAL, "--with", "safety-mix", "--alpha", "0.3"], "--alpha is an option of safemerge, not of "
                                                                        "safety-mix"),
    (["--variant", ORIGINAL, "--with", "safelora"], "safelora needs --unaligned-base"),
    (["--variant", ORIGINAL, "--with", "safety-mix", "--fraction", "1.5"], "--fraction of safety-mix: Input should be "
                                                                           "less than 1, got 1.5"),
])
def test_errors_are_one_line_and_exit_2(finished, tmp_path, args, expect):
    run_dir = copy_run(finished, tmp_path / "run")
    before = (run_dir / "results.sqlite").read_bytes()
    code, out = cli("mitigate", run_dir, *args)
    assert code == 2, out
    msg = one_error(out)
    assert expect in msg and "\n" not in msg
    assert (run_dir / "results.sqlite").read_bytes() == before  # nothing was written


def test_a_run_directory_in_use_is_refused(finished, tmp_path):
    run_dir = copy_run(finished, tmp_path / "run")
    with RunDirLock(run_dir):
        code, out = cli("mitigate", run_dir, "--variant", ORIGINAL, "--with", "safety-mix")
    assert code == 2 and "in use by another peft-audit run" in one_error(out)  # names the holder: one or two lines
    with open_existing(run_dir) as st:
        assert not any(r["spec"].get("repair") for r in st.variants())


def _stages(run_dir: Path) -> set[tuple[str, str]]:
    try:
        conn = sqlite3.connect(f"{(run_dir / 'results.sqlite').as_uri()}?mode=ro", uri=True, timeout=5)
        try:
            return set(conn.execute("SELECT variant_id, stage FROM stages"))
        finally:
            conn.close()
    except sqlite3.Error:
        return set()


def _results(run_dir: Path, ids) -> dict[str, list]:
    conn = sqlite3.connect(run_dir / "results.sqlite")
    q = ",".join("?" * len(ids))
    out = {t: conn.execute(f"SELECT * FROM {t} WHERE variant_id IN ({q}) ORDER BY 1, 2, 3, 4", list(ids)).fetchall()
           for t in ("samples", "verdicts", "metrics")}
    out["variants"] = conn.execute(f"SELECT id, status, spec_json, config_json FROM variants WHERE id IN ({q}) "
                                   "ORDER BY id", list(ids)).fetchall()
    conn.close()
    return out


def test_kill_9_then_rerun_gives_the_uninterrupted_results(finished, repaired, tmp_path):
    run_dir = copy_run(finished, tmp_path / "run")
    ids = set(repair_ids(repaired).values())
    cmd = [sys.executable, "-m", "peft_audit.cli", "mitigate", str(run_dir), "--variant", ORIGINAL, "--with", METHODS,
           "--fraction", "0.5"]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 300
    try:
        # kill -9 the whole command (driver and worker) once the first repair has an adapter
        while not any(stage == "trained" and vid in ids for vid, stage in _stages(run_dir)):
            assert proc.poll() is None and time.monotonic() < deadline, "the command ended before it could be killed"
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert {v for v, s in _stages(run_dir) if s == "metrics"} != ids  # it was killed mid-way
    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert _results(run_dir, ids) == _results(repaired, ids)
    for vid in ids:
        a, b = run_dir / "adapters" / vid, repaired / "adapters" / vid
        assert (a / "adapter_model.safetensors").read_bytes() == (b / "adapter_model.safetensors").read_bytes()
    assert not [p for p in (run_dir / "adapters").iterdir() if ".partial-" in p.name]


def test_a_label_two_repairs_would_share_gets_the_id(repaired):
    from peft_audit.mitigations.command import plan_repairs

    # another subspace (an unaligned base) is not in the label: the new repair's label gets its id
    _, _, (spec,) = plan_repairs(repaired, ORIGINAL, ["safemerge"], {"unaligned_base": "elsewhere"})
    assert spec.label.startswith(f"{ORIGINAL} ⟶ safemerge τ 0.2 α 0.5 · #")
    _, _, (same,) = plan_repairs(repaired, ORIGINAL, ["safemerge"], {})  # the same repair keeps its label
    assert same.label == f"{ORIGINAL} ⟶ safemerge τ 0.2 α 0.5"
