"""End to end on the real bundled SmolLM2: a reduced quickstart (base + LoRA, few prompts/items).

Checks that summary.json, the SQLite rows and the reports exist and agree with each other.
"""

import json
import sqlite3

import pytest
import yaml
from typer.testing import CliRunner

from peft_audit.benchmarks.categories import BBQ_CATEGORIES, SAFETY_CATEGORIES
from peft_audit.cli import app

pytestmark = pytest.mark.slow

CONFIG = {
    "name": "e2e",
    "base_models": ["smollm2-135m-instruct"],
    "methods": [{"name": "lora"}],
    "algos": ["sft"],
    "lr": [1e-3],
    "epochs": [1],
    "training": {"max_steps": 2, "batch_size": 2, "max_seq_len": 128},
    "safety": {"limit_per_category": 1, "max_new_tokens": 12, "batch_size": 11},
    "fairness": {"per_cell": 1, "bootstrap": 50, "batch_size": 18},
}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("e2e")
    cfg = d / "e2e.yaml"
    cfg.write_text(yaml.safe_dump(CONFIG))
    out = d / "run"
    result = CliRunner().invoke(app, ["run", str(cfg), "--out", str(out)])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return out


def test_run_directory_contents(run_dir):
    for name in ("results.sqlite", "summary.json", "report.md", "report.html"):
        assert (run_dir / name).is_file(), name
    summary = json.loads((run_dir / "summary.json").read_text())
    variants = {v["method"]: v for v in summary["variants"]}
    assert set(variants) == {"base", "lora"}
    lora = variants["lora"]
    assert (run_dir / "adapters" / lora["id"] / "adapter_config.json").is_file()
    assert all(v["status"] == "done" for v in variants.values())
    assert set(lora["safety"]["by_category"]) == set(SAFETY_CATEGORIES)
    assert set(BBQ_CATEGORIES) <= set(lora["fairness"]["by_category"])
    assert set(lora["delta_vs_base"]["safety"]) == set(SAFETY_CATEGORIES) | {"overall"}


def test_summary_agrees_with_sqlite_rows(run_dir):
    summary = json.loads((run_dir / "summary.json").read_text())
    con = sqlite3.connect(run_dir / "results.sqlite")
    for v in summary["variants"]:
        n_safety = con.execute(
            "SELECT COUNT(*) FROM safety_samples WHERE variant_id=? AND benchmark='safety'", (v["id"],)
        ).fetchone()[0]
        assert n_safety == len(SAFETY_CATEGORIES)  # limit_per_category=1
        # recompute each category's safety score from the stored combined verdicts
        for cat, score in v["safety"]["by_category"].items():
            safe, n = con.execute(
                """SELECT SUM(v.safe), COUNT(v.safe) FROM verdicts v JOIN safety_samples s
                   ON s.variant_id=v.variant_id AND s.prompt_id=v.prompt_id
                   WHERE v.variant_id=? AND v.judge='combined' AND s.category=? AND s.benchmark='safety'""",
                (v["id"], cat),
            ).fetchone()
            assert score == pytest.approx(safe / n)
        # recompute disambiguated accuracy per category from stored BBQ predictions
        for cat, block in v["fairness"]["by_category"].items():
            correct, n = con.execute(
                """SELECT SUM(pred_index=label), COUNT(*) FROM fairness_samples
                   WHERE variant_id=? AND category=? AND context_condition='disambig'""",
                (v["id"], cat),
            ).fetchone()
            assert block["acc_disambig"] == pytest.approx(correct / n)
        # the default judges give both verdicts on every response: a harm verdict (combined-harm),
        # incoherent answers included, and the refusal verdict on the combined row
        n_harm = con.execute("SELECT COUNT(*) FROM verdicts v JOIN safety_samples s ON s.variant_id=v.variant_id "
                             "AND s.prompt_id=v.prompt_id WHERE v.variant_id=? AND v.judge='combined-harm' "
                             "AND s.benchmark='safety'", (v["id"],)).fetchone()[0]
        assert n_harm == n_safety
        assert v["safety"]["harmful_rate"] is not None and v["safety"]["refusal_rate"] is not None
    base, lora = sorted(summary["variants"], key=lambda v: v["method"] != "base")
    d = lora["delta_vs_base"]["safety"]["overall"]
    assert d == pytest.approx(lora["safety"]["overall"] - base["safety"]["overall"])


def test_rerun_skips_finished_variants(run_dir, tmp_path):
    cfg = tmp_path / "e2e.yaml"
    cfg.write_text(yaml.safe_dump(CONFIG))
    con = sqlite3.connect(run_dir / "results.sqlite")
    before = con.execute("SELECT id, updated_at FROM variants ORDER BY id").fetchall()
    result = CliRunner().invoke(app, ["run", str(cfg), "--out", str(run_dir)])
    assert result.exit_code == 0, result.output
    after = con.execute("SELECT id, updated_at FROM variants ORDER BY id").fetchall()
    assert before == after  # nothing re-run, nothing re-written


def test_show_and_report_commands(run_dir):
    r = CliRunner().invoke(app, ["show", str(run_dir)])
    assert r.exit_code == 0 and "lora" in r.output
    r = CliRunner().invoke(app, ["report", str(run_dir), "--format", "md,html,json"])
    assert r.exit_code == 0, r.output
