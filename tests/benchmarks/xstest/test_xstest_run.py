"""XSTest end to end on a tiny random model (base + a LoRA trained for one step, xstest alone):
summary.json, report.md/html, the gate's two rules, the per-item export; and a resumed variant
judges its committed answers instead of generating again."""

import csv
import json

import pytest
import yaml
from typer.testing import CliRunner

from peft_audit.benchmarks.base import VariantRun
from peft_audit.benchmarks.registry import BENCHMARKS
from peft_audit.benchmarks.xstest import XSTestConfig
from peft_audit.cli import app
from peft_audit.config import load_config
from fake_backend import FakeModel
from peft_audit.gate import check_gate
from peft_audit.pipeline import run_sweep
from peft_audit.sweep.options import RunOptions
from peft_audit.store import Store


@pytest.fixture(scope="module")
def run_dir(tiny_model_dir, tmp_path_factory):
    d = tmp_path_factory.mktemp("xstest-run")
    cfg = {
        "name": "xstest-e2e", "base_models": [str(tiny_model_dir)], "methods": ["lora"], "algos": ["sft"],
        "lr": [1e-3], "device": "cpu",
        "training": {"max_steps": 1, "batch_size": 2, "max_seq_len": 48, "max_examples": 4},
        "safety": {"enabled": False}, "fairness": {"enabled": False},
        "xstest": {"enabled": True, "limit_per_type": 1, "max_new_tokens": 6, "judges": ["refusal", "keyword"]},
    }
    (d / "c.yaml").write_text(yaml.safe_dump(cfg))
    # in this process (no fresh interpreter per variant): the run is the same, the test faster
    run_sweep(load_config(d / "c.yaml"), d / "run", RunOptions(in_process=True))
    return d / "run"


def test_summary_has_both_groups_per_type_and_the_change(run_dir):
    variants = {v["method"]: v for v in json.loads((run_dir / "summary.json").read_text())["variants"]}
    assert set(variants) == {"base", "lora"}
    for v in variants.values():
        assert v["safety"]["overall"] is None and v["xstest"]["safe"]["n"] == 10 and v["xstest"]["unsafe"]["n"] == 8
        for group in ("safe", "unsafe"):
            b = v["xstest"][group]
            rates = [b[f"{c}_rate"] for c in ("full_refusal", "partial_refusal", "full_compliance", "incoherent")]
            assert sum(rates) == pytest.approx(1)
            lo, hi = b["full_refusal_ci"]
            assert lo <= b["full_refusal_rate"] <= hi
        assert len(v["xstest"]["safe"]["by_type"]) == 10 and len(v["xstest"]["unsafe"]["by_type"]) == 8
    base, lora = variants["base"]["xstest"], variants["lora"]["xstest"]
    d = variants["lora"]["delta_vs_base"]["xstest"]
    assert d["safe"]["full_refusal_rate"] == pytest.approx(lora["safe"]["full_refusal_rate"] - base["safe"]["full_refusal_rate"])
    with Store(run_dir / "results.sqlite") as s:
        stages = {r["stage"] for r in s.rows("stages")}
    assert {"xstest.generated", "xstest.judged", "metrics"} <= stages


def test_report_sections(run_dir):
    md = (run_dir / "report.md").read_text()
    assert "## XSTest: over-refusal of safe prompts" in md and "## XSTest: compliance with unsafe contrast prompts" in md
    assert "Full-refusal rate on safe prompts, per type" in md and "privacy_fictional" in md
    assert "Incoherent answers to unsafe contrast prompts" in md  # a random model's answers are all incoherent
    assert "XSTest: over-refusal of safe prompts" in (run_dir / "report.html").read_text()


def test_gate_checks_both_rules(run_dir):
    checks = {c.metric: c for c in check_gate(run_dir, n_boot=50).checks}
    assert {"safe_full_refusal_rate", "unsafe_full_compliance_rate"} <= set(checks)
    assert checks["safe_full_refusal_rate"].category == "overall"
    r = CliRunner().invoke(app, ["gate", str(run_dir), "--limit", "xstest.max_full_refusal_increase=1",
                                 "--limit", "xstest.max_unsafe_compliance_increase=1"])
    assert r.exit_code == 0, r.output
    # xstest's two and task utility's held-out loss: safety and fairness are off
    assert "PASS: 1 variant(s), 3 checks within bounds" in r.output


def test_export_samples(run_dir, tmp_path):
    out = tmp_path / "xs.csv"
    r = CliRunner().invoke(app, ["export", str(run_dir), "--samples", "xstest", "--out", str(out)])
    assert r.exit_code == 0, r.output
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 2 * 18
    assert {"id", "type", "label", "prompt", "response", "xstest_class", "refusal_label", "keyword_label"} <= set(rows[0])
    assert {r["xstest_class"] for r in rows} <= {"1_full_compliance", "2_full_refusal", "3_partial_refusal", "incoherent"}


class Sink:
    def __init__(self, store):
        self.store, self.stages = store, []

    def commit_stage(self, vid, stage, seconds, **rows):
        self.stages.append(stage)
        self.store.commit_stage(vid, stage, seconds, **rows)

    def update_variant(self, vid, **fields):
        raise AssertionError("not used")


def test_resume_judges_the_committed_answers_without_a_model(tmp_path):
    from peft_audit.judges.refusal import RefusalJudge

    xs = BENCHMARKS["xstest"]
    answers = {"1": "I cannot help with that.", "21": "Sure, here is how."}
    with Store(tmp_path / "results.sqlite") as store:
        store.commit_stage("v1", "xstest.generated", 1.0, samples=[
            {"benchmark": "xstest", "sample_id": sid, "category": cat, "payload": {
                "prompt": "p", "label": lab, "focus": "", "note": "", "response": answers[sid], "n_new_tokens": 3}}
            for sid, cat, lab in (("1", "homonyms", "safe"), ("21", "contrast_homonyms", "unsafe"))])
        sink = Sink(store)
        lm = FakeModel()
        run = VariantRun("v1", tmp_path, lm, done_stages={"xstest.generated"}, sink=sink,
                         judges=lambda section: [RefusalJudge()], progress=lambda name, n: (lambda k: None))
        rows = xs.evaluate(XSTestConfig(enabled=True), run)
        assert lm.calls == []  # the stored answers were judged, nothing generated again
        assert sink.stages == ["xstest.judged"]
        got = {(r["category"], r["metric"]): r["value"] for r in rows}
        assert got[("overall", "safe_full_refusal_rate")] == 1.0
        assert got[("overall", "unsafe_full_compliance_rate")] == 1.0
        assert {s["sample_id"]: s["xstest_class"] for s in store.samples("xstest")} == {
            "1": "2_full_refusal", "21": "1_full_compliance"}


def test_show_lists_the_plug_in_benchmark_with_intervals_and_the_changes(run_dir):
    from peft_audit.report.tables import num

    r = CliRunner().invoke(app, ["show", str(run_dir)], env={"COLUMNS": "400"})
    assert r.exit_code == 0, r.output
    title = "XSTest: over-refusal of safe prompts: safe_full_refusal_rate"
    assert title in r.output and "XSTest: compliance with unsafe contrast prompts" in r.output
    with Store(run_dir / "results.sqlite") as s:
        row = next(m for m in s.rows("metrics") if m["benchmark"] == "xstest" and m["category"] == "overall"
                   and m["metric"] == "safe_full_refusal_rate")
    assert f"[{num(row['ci_low'])}, {num(row['ci_high'])}]" in r.output, r.output  # the score's interval under it
    assert "Changes vs base in points, [95% CI]" in r.output and "safe_full_refusal_rate Δ" in r.output
