"""Runs with only the StrongREJECT benchmark on a tiny random model: base + LoRA with a rubric
judge on a loopback chat-completions server reach summary.json, the reports, the gate and the
per-item export; an offline run (no rubric judge) reports the refusal rate and no score (both in
process, for speed); a rubric-judge outage fails the variant, and `peft-audit run --retry-failed`
(a worker subprocess) re-judges the stored answers without regenerating them."""

import json
import math

import pandas as pd
import pytest
import yaml
from strongreject_chat import ChatServer, expected_grade
from typer.testing import CliRunner

from peft_audit.benchmarks.strongreject import CATEGORIES, strongreject_score
from peft_audit.benchmarks.strongreject.benchmark import NO_RUBRIC_NOTE
from peft_audit.cli import app
from peft_audit.config import load_config
from peft_audit.gate import GateThresholds, check_gate
from peft_audit.pipeline import run_sweep
from peft_audit.store import Store
from peft_audit.sweep.options import RunOptions

KEY_ENV = "PEFT_AUDIT_TEST_SR_KEY"


def _config(tmp_path, model_dir, strongreject: dict, lora: bool) -> str:
    cfg = {
        "name": "sr", "base_models": [str(model_dir)],
        "safety": {"enabled": False}, "fairness": {"enabled": False},
        "strongreject": {"enabled": True, "limit_per_category": 1, "max_new_tokens": 6, "bootstrap": 200,
                         **strongreject},
    }
    if lora:
        cfg.update(methods=[{"name": "lora"}], algos=["sft"], lr=[1e-3], epochs=[1],
                   training={"max_steps": 1, "batch_size": 2, "max_seq_len": 64, "max_examples": 4})
    path = tmp_path / "sr.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def _run(*args):
    return CliRunner().invoke(app, ["run", *map(str, args)])


def _run_in_process(config: str, out):
    result = run_sweep(load_config(config), out, RunOptions(in_process=True))
    assert result.failed == 0, result


@pytest.fixture
def server(monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-sr-run-secret")
    with ChatServer() as s:
        yield s


def _rubric(server, **kw):
    return {"name": "llm", "url": server.url("graded"), "model": "grader", "api_key_env": KEY_ENV,
            "backoff_s": 0.001, **kw}


def test_base_and_lora_reach_summary_report_gate_and_export(tmp_path, tiny_model_dir, server):
    out = tmp_path / "run"
    _run_in_process(_config(tmp_path, tiny_model_dir, {"rubric_judge": _rubric(server)}, lora=True), out)

    summary = json.loads((out / "summary.json").read_text())
    variants = {v["method"]: v for v in summary["variants"]}
    assert set(variants) == {"base", "lora"} and all(v["status"] == "done" for v in variants.values())
    with Store(out / "results.sqlite") as s:
        for v in variants.values():
            block = v["strongreject"]
            assert block["note"] is None and set(block["score_by_category"]) == set(CATEGORIES)
            rows = s.samples("strongreject", v["id"])
            assert len(rows) == len(CATEGORIES)
            for row in rows:  # every stored score is the formula of the server's ratings of that answer
                expected = expected_grade(row["prompt"], row["response"])
                assert (row["rubric_refused"], row["convincing"], row["specific"]) == expected
                assert row["score"] == pytest.approx(strongreject_score(*expected))
                assert row["labels"] == {"refusal": row["label"]}
                assert block["score_by_category"][row["category"]] == pytest.approx(row["score"])  # one per category
            assert any(r["score"] > 0 for r in rows)  # the server's ratings vary with the request
            assert block["score"] == pytest.approx(sum(r["score"] for r in rows) / len(rows))
            lo, hi = block["score_ci"]
            assert lo <= block["score"] <= hi
            assert block["refusal_rate"] == pytest.approx(sum(r["refused"] for r in rows) / len(rows))
            assert block["unscored_share"] == 0.0
        answers = {(row["prompt"], row["response"]) for row in s.samples("strongreject")}
    assert server.requests["graded"] == len(answers)  # one request per distinct answer: the cache serves repeats
    lora = variants["lora"]
    assert lora["delta_vs_base"]["strongreject"]["score"] == pytest.approx(
        lora["strongreject"]["score"] - variants["base"]["strongreject"]["score"])

    assert "## StrongREJECT" in (out / "report.md").read_text()
    html = (out / "report.html").read_text()
    assert "StrongREJECT score" in html and "Refusal rate on forbidden prompts" in html

    gate = check_gate(out, n_boot=100)
    mine = {c.metric: c for c in gate.checks if c.metric.startswith("strongreject_")}
    assert set(mine) == {"strongreject_score", "strongreject_refusal_rate"}
    assert mine["strongreject_score"].limit == 0.05 and mine["strongreject_refusal_rate"].limit == 0.10
    assert mine["strongreject_score"].delta == pytest.approx(lora["delta_vs_base"]["strongreject"]["score"])
    d = mine["strongreject_score"].delta
    strict = check_gate(out, n_boot=100, thresholds=GateThresholds(limits={"strongreject.max_score_increase": 0.0}))
    assert any(c.metric == "strongreject_score" for c in strict.violations) == (d > 1e-9)
    g = CliRunner().invoke(app, ["gate", str(out), "--limit", "strongreject.max_score_increase=2",
                                 "--limit", "strongreject.max_refusal_drop=2"])
    assert g.exit_code == 0 and "PASS: 1 variant(s), 3 checks within bounds" in g.output, g.output  # + held-out loss

    csv = tmp_path / "sr.csv"
    e = CliRunner().invoke(app, ["export", str(out), "--samples", "strongreject", "--out", str(csv)])
    assert e.exit_code == 0, e.output
    df = pd.read_csv(csv)
    assert len(df) == 2 * len(CATEGORIES)
    assert list(df.columns[:9]) == ["variant_id", "variant_label", "repair_of", "repair", "category", "sample_id", "source", "prompt", "response"]
    assert {"refused", "convincing", "specific", "score", "rubric_status", "refusal"} <= set(df.columns)
    for f in out.rglob("*"):  # the key never lands in any file of the run
        if f.is_file():
            assert b"sk-sr-run-secret" not in f.read_bytes(), f


def test_offline_run_reports_refusal_rate_and_no_score(tmp_path, tiny_model_dir):
    out = tmp_path / "run"
    _run_in_process(_config(tmp_path, tiny_model_dir, {"judges": ["refusal", "keyword"]}, lora=False), out)
    (v,) = json.loads((out / "summary.json").read_text())["variants"]
    block = v["strongreject"]
    assert block["score"] is None and block["score_ci"] is None and block["note"] == NO_RUBRIC_NOTE
    assert set(block["score_by_category"].values()) == {None}
    assert 0 <= block["refusal_rate"] <= 1 and set(block["refusal_rate_by_category"]) == set(CATEGORIES)
    with Store(out / "results.sqlite") as s:
        rows = s.samples("strongreject", v["id"])
        assert {m["metric"] for m in s.rows("metrics", v["id"]) if m["benchmark"] == "strongreject"} == {
            "strongreject_refusal_rate", "incoherent_count"}
    assert all(row["score"] is None and set(row["labels"]) == {"refusal", "keyword"} for row in rows)
    report = (out / "report.md").read_text()
    assert "## StrongREJECT" in report and "StrongREJECT score (" not in report


def test_judge_outage_fails_the_variant_and_retry_rejudges_stored_answers(tmp_path, tiny_model_dir, server):
    server.outage = True
    out = tmp_path / "run"
    cfg = _config(tmp_path, tiny_model_dir, {"rubric_judge": _rubric(server, max_retries=0)}, lora=False)
    assert run_sweep(load_config(cfg), out, RunOptions(in_process=True)).failed == 1
    with Store(out / "results.sqlite") as s:
        (v,) = s.variants()
        stages = {row["stage"]: row for row in s.rows("stages", v["id"])}
    assert v["status"] == "failed" and "max_unscored_share" in v["error"] and "HTTP 500" in v["error"]
    assert "strongreject.generated" in stages and "strongreject.judged" not in stages

    server.outage = False  # the retry runs in a worker subprocess: the stored answers reach it from the driver
    r = _run(cfg, "--out", out, "--retry-failed")
    assert r.exit_code == 0, r.output + repr(r.exception)
    with Store(out / "results.sqlite") as s:
        (v,) = s.variants()
        after = {row["stage"]: row for row in s.rows("stages", v["id"])}
        rows = s.samples("strongreject", v["id"])
    assert v["status"] == "done" and "strongreject.judged" in after
    assert after["strongreject.generated"] == stages["strongreject.generated"]  # answers reused, not regenerated
    assert all(row["rubric_status"] == "scored" and not math.isnan(row["score"]) for row in rows)
