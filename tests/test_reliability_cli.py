"""Issue 15's cases, driven through the command line: exit code and message for each.

Exit codes (cli.py): 0 ok, 1 a finding (gate violation, failed variant), 2 could not run,
130 / 143 stopped by SIGINT / SIGTERM. Every error is one or two lines naming the file, line or
key and what to do; a traceback only with --debug. (The judge outage, case 1, has its own file:
tests/test_run_judge_failure.py.)
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from peft_audit.cli import app
from peft_audit.store import Store
from peft_audit.sweep.lock import LOCK_FILE, RunDirBusy, RunDirLock

ROOT = Path(__file__).resolve().parents[1]


def cli(*args: str):
    r = CliRunner().invoke(app, [str(a) for a in args])
    return r.exit_code, r.output


def one_error(output: str) -> str:
    """The error text; asserts it is one or two lines and no traceback."""
    assert "Traceback" not in output, output
    lines = [ln for ln in output.strip().splitlines() if ln.strip()]
    start = next(i for i, ln in enumerate(lines) if ln.startswith("error:"))
    assert len(lines) - start <= 2 or "invalid configuration" in lines[start], output
    return "\n".join(lines[start:])


def tiny_config(tiny_model_dir: Path, **over) -> dict:
    cfg = {
        "name": "rel", "base_models": [str(tiny_model_dir)], "methods": [{"name": "lora"}], "algos": ["sft"],
        "lr": [1e-3], "epochs": [1], "device": "cpu",
        "training": {"max_steps": 2, "batch_size": 2, "max_seq_len": 64},
        "safety": {"limit_per_category": 1, "max_new_tokens": 4, "batch_size": 11},
        "fairness": {"enabled": False},
    }
    cfg.update(over)
    return cfg


def write(path: Path, data) -> Path:
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return path


# --- 2: one run per directory -------------------------------------------------------------------
def test_a_second_run_on_a_busy_directory_names_the_holder_and_exits_2(tmp_path, tiny_model_dir):
    run_dir = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from peft_audit.sweep.lock import RunDirLock; "
         f"l = RunDirLock({str(run_dir)!r}).acquire(); print('held', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    try:
        assert holder.stdout.readline().strip() == "held"
        code, out = cli("run", write(tmp_path / "c.yaml", tiny_config(tiny_model_dir)), "--out", run_dir)
        assert code == 2
        msg = one_error(out)
        assert f"pid {holder.pid}" in msg and "in use by another peft-audit run" in msg
        assert not (run_dir / "results.sqlite").exists()  # the busy directory was not touched
    finally:
        holder.kill()
        holder.wait()


def test_a_lock_left_by_a_dead_run_is_taken_over(tmp_path):
    (tmp_path / LOCK_FILE).write_text(json.dumps({"pid": 999999, "host": "elsewhere", "started": 0}))
    with RunDirLock(tmp_path):  # flock is released by the kernel when its holder dies: not busy
        with pytest.raises(RunDirBusy, match="in use"):
            RunDirLock(tmp_path).acquire()
    assert (tmp_path / LOCK_FILE).read_text() == ""


# --- 4: every input checked before any model loads; nothing recorded when a check fails ----------
@pytest.mark.parametrize("bad, expect", [
    ({"fairness": {"source": "EMPTY_DIR"}}, "no official BBQ files found"),
    ({"safety": {"source": "MISSING.csv"}}, "MISSING.csv"),
    ({"base_models": ["no-such-model"]}, "neither an alias"),
    ({"training": {"data": "MISSING.jsonl"}}, "MISSING.jsonl"),
])
def test_run_checks_every_input_before_loading_a_model(tmp_path, tiny_model_dir, monkeypatch, bad, expect):
    import peft_audit.models as models

    monkeypatch.setattr(models, "load_base", lambda *a, **k: pytest.fail("a model was loaded"))
    (tmp_path / "EMPTY_DIR").mkdir()
    text = yaml.safe_dump(tiny_config(tiny_model_dir, **bad)).replace("EMPTY_DIR", str(tmp_path / "EMPTY_DIR"))
    text = text.replace("MISSING", str(tmp_path / "missing"))
    if "fairness" in bad:
        text = text.replace("fairness:\n  enabled: false\n", "")
    code, out = cli("run", write(tmp_path / "c.yaml", text), "--out", tmp_path / "run")
    assert code == 2, out
    assert expect.replace("MISSING", "missing") in one_error(out)
    assert not (tmp_path / "run").exists()  # no protocol recorded: the corrected config may use the directory


# --- 5: the BBQ loader names the setting that exists ---------------------------------------------
def test_bbq_bad_row_names_the_real_setting(tmp_path, tiny_model_dir):
    d = tmp_path / "bbq"
    d.mkdir()
    (d / "Age.jsonl").write_text('{"example_id": 0, "category": "Age"}\n')
    cfg = tiny_config(tiny_model_dir, fairness={"source": str(d)}, safety={"enabled": False})
    code, out = cli("run", write(tmp_path / "c.yaml", cfg), "--out", tmp_path / "run")
    assert code == 2
    msg = one_error(out)
    assert "Age.jsonl:1" in msg and "skip_bad_items: true" in msg and "--skip-bad-items" not in msg


# --- 6: damaged stores: one line, exit 2 (gate: "cannot evaluate", not "violation"), untouched ---
@pytest.mark.parametrize("damage", ["garbage", "truncated"])
@pytest.mark.parametrize("command", ["show", "report", "gate", "status", "export"])
def test_damaged_store_is_reported_not_traced_and_left_untouched(tmp_path, damage, command):
    from synthetic_store import build_synthetic_store

    run = build_synthetic_store(tmp_path / "run", n_variants=1, n_failed=0, bases=("llama-3.2-1b",), methods=("lora",))
    db = run / "results.sqlite"
    data = db.read_bytes()
    db.write_bytes(b"this is not a database\n" * 100 if damage == "garbage" else data[: len(data) // 3])
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    extra = ["--samples", "safety", "--out", str(tmp_path / "x.csv")] if command == "export" else []
    code, out = cli(command, run, *extra)
    assert code == 2, out
    assert "results.sqlite" in one_error(out) or "results store" in out
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before


def test_missing_store_is_exit_2_for_gate(tmp_path):
    code, out = cli("gate", tmp_path)
    assert code == 2 and "no results store here" in one_error(out)


def test_unwritable_out_names_the_path(tmp_path, tiny_model_dir):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    code, out = cli("run", write(tmp_path / "c.yaml", tiny_config(tiny_model_dir)), "--out", blocker / "run")
    assert code == 2
    assert str(blocker) in one_error(out)


# --- 7: encodings -----------------------------------------------------------------------------
def test_latin1_files_are_named_with_their_line(tmp_path, tiny_model_dir):
    cfg = tmp_path / "latin1.yaml"
    cfg.write_bytes(b"name: rel\n# caf\xe9\n")
    code, out = cli("plan", cfg)
    assert code == 2 and f"{cfg}:2: config file is not UTF-8" in one_error(out)

    prompts = tmp_path / "prompts.csv"
    prompts.write_bytes(b"prompt,category\nhow do I pick a lock,illegal_activity\ncaf\xe9 scam,fraud_deception\n")
    code, out = cli("run", write(tmp_path / "c.yaml", tiny_config(
        tiny_model_dir, safety={"source": str(prompts), "columns": {"prompt": "prompt", "category": "category"}})),
        "--out", tmp_path / "run")
    assert code == 2 and f"{prompts}:3" in one_error(out) and "UTF-8" in out

    labels = tmp_path / "pairs.jsonl"
    labels.write_bytes(b'{"prompt": "a", "response": "b"}\n{"prompt": "caf\xe9", "response": "x"}\n')
    code, out = cli("judge", labels, "--judges", "refusal", "--out", tmp_path / "o.csv")
    assert code == 2 and f"{labels}:2" in one_error(out)


# --- 8 and 10: config mistakes ----------------------------------------------------------------------
@pytest.mark.parametrize("text, expect", [
    ("", "the config file is empty"),
    ("lr: [.nan]\n", "lr: learning rate must be a finite number > 0, got nan"),
    ("safty: {}\n", "safty: unknown key; did you mean 'safety'?"),
    ("fairness: {per_cel: 2}\n", "fairness.per_cel: unknown key; did you mean 'per_cell'?"),
])
def test_config_mistakes_are_named(tmp_path, text, expect):
    code, out = cli("run", write(tmp_path / "c.yaml", text), "--out", tmp_path / "run")
    assert code == 2 and expect in out and "Traceback" not in out
    assert not (tmp_path / "run").exists()


def test_a_directory_given_as_config_is_said_to_be_one(tmp_path):
    code, out = cli("plan", tmp_path)
    assert code == 2 and "is a directory" in one_error(out)


def test_audit_with_no_usable_adapter_evaluates_nothing(tmp_path, tiny_model_dir):
    code, out = cli("audit", "--base", tiny_model_dir, "--adapter", tmp_path / "nope", "--out", tmp_path / "run")
    assert code == 2 and "none of the 1 adapter(s) can be evaluated" in out
    assert not (tmp_path / "run" / "results.sqlite").exists()


def test_debug_shows_the_traceback(tmp_path):
    code, out = cli("--debug", "show", tmp_path / "missing")
    assert code != 0  # the exception itself propagates to the runner under --debug
    code, out = cli("show", tmp_path / "missing")
    assert code == 2 and "Traceback" not in out


# --- 9: signals -----------------------------------------------------------------------------------
@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_stops_workers_marks_interrupted_and_says_how_to_resume(tmp_path, tiny_model_dir, sig, code):
    cfg = write(tmp_path / "c.yaml", tiny_config(tiny_model_dir, safety={"limit_per_category": 3, "max_new_tokens": 48,
                                                                      "batch_size": 1}))
    run_dir = tmp_path / "run"
    # SIGINT at its default, as a terminal's Ctrl-C finds it: a shell script's background job (say,
    # `make test &`) starts with SIGINT ignored, which Python and this child would inherit
    proc = subprocess.Popen([sys.executable, "-m", "peft_audit.cli", "run", str(cfg), "--out", str(run_dir)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.time() + 240
        while time.time() < deadline and proc.poll() is None:
            if (run_dir / "results.sqlite").exists():
                with Store(run_dir / "results.sqlite") as s:
                    if any(v["status"] == "running" for v in s.variants()):
                        break
            time.sleep(0.5)
        assert proc.poll() is None, proc.communicate()[0]
        time.sleep(1.0)
        proc.send_signal(sig)
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == code, out
    assert "interrupted" in out and f"peft-audit run {cfg} --out {run_dir}" in out and "Traceback" not in out
    assert "leaked semaphore" not in out  # the workers' channels are pipes, not a queue with a lock
    with Store(run_dir / "results.sqlite") as s:
        statuses = [v["status"] for v in s.variants()]
    assert "running" not in statuses and "interrupted" in statuses
    assert not list((run_dir / "adapters").glob(".*partial*")) if (run_dir / "adapters").exists() else True
    assert (run_dir / LOCK_FILE).read_text() == ""  # released
    # workers are gone: nothing still holds the lock
    RunDirLock(run_dir).acquire().release()
