"""Human spot-check: `peft-audit label` draws and stores labels; the report measures the judges
on them and corrects the safety score for the measured errors."""

import csv

import pandas as pd
from typer.testing import CliRunner

from peft_audit.analysis import analyze
from peft_audit.cli import app
from peft_audit.judges import spot_check
from tests.synthetic_store import build_synthetic_store


def _run(tmp_path):
    return build_synthetic_store(tmp_path / "run", n_variants=3, prompts_per_category=6, bbq_items_per_category=6,
                                 n_failed=0, seed=3)


def test_draw_sample_is_seeded_uniform_and_skips_labelled():
    keys = [("v", f"p{i}") for i in range(50)]
    a = spot_check.draw_sample(keys, 10, seed=1)
    assert a == spot_check.draw_sample(keys, 10, seed=1) and len(set(a)) == 10
    b = spot_check.draw_sample(keys, 10, seed=1, exclude=a)
    assert not set(a) & set(b)
    assert spot_check.draw_sample(keys, 100, seed=1) == keys


def test_sheet_round_trip_and_report_section(tmp_path):
    run = _run(tmp_path)
    sheet = tmp_path / "sheet.csv"
    r = CliRunner().invoke(app, ["label", str(run), "--n", "60", "--sheet", str(sheet)])
    assert r.exit_code == 0, r.output
    rows = list(csv.DictReader(open(sheet, encoding="utf-8")))
    assert len(rows) == 60 and {"variant_id", "prompt_id", "prompt", "response", "label"} <= set(rows[0])
    # a careful human: agrees with the stored verdict's safety except on every 5th response
    a = analyze(run, n_boot=50)
    safe = {(v, p): s for v, p, s in zip(a.frames.safety["variant_id"], a.frames.safety["prompt_id"],
                                         a.frames.safety["safe"])}
    for i, row in enumerate(rows):
        truth = bool(safe[(row["variant_id"], row["prompt_id"])]) ^ (i % 5 == 0)
        row["label"] = "refusal" if truth else "compliance"
    with open(sheet, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    r = CliRunner().invoke(app, ["label", str(run), "--import", str(sheet)])
    assert r.exit_code == 0 and "imported 60 label(s)" in r.output, r.output
    assert len(spot_check.read_labels(run)) == 60

    a = analyze(run, n_boot=50)
    agree = a.spot_check.set_index(["judge", "metric"])
    assert agree.loc[("combined", "safe_agreement"), "value"] == 48 / 60
    c = a.corrected
    assert set(c["category"]) >= {"overall", "malware"}
    ok = c[c["value"].notna()]
    assert len(ok) > 0 and ((ok["ci_low"] <= ok["value"]) & (ok["value"] <= ok["ci_high"])).all()

    r = CliRunner().invoke(app, ["report", str(run), "--format", "md,html"])
    assert r.exit_code == 0, r.output
    md = (run / "report.md").read_text(encoding="utf-8")
    assert "### Human spot-check of this run" in md and "Rogan & Gladen" in md
    assert "Safety corrected for" in (run / "report.html").read_text(encoding="utf-8")


def test_import_rejects_unknown_responses_and_bad_labels(tmp_path):
    run = _run(tmp_path)
    sheet = tmp_path / "bad.csv"
    pd.DataFrame([{"variant_id": "nope", "prompt_id": "x", "label": "refusal"}]).to_csv(sheet, index=False)
    r = CliRunner().invoke(app, ["label", str(run), "--import", str(sheet)])
    assert r.exit_code == 2 and "does not hold" in r.output
    pd.DataFrame([{"variant_id": "nope", "prompt_id": "x", "label": "maybe"}]).to_csv(sheet, index=False)
    r = CliRunner().invoke(app, ["label", str(run), "--import", str(sheet)])
    assert r.exit_code == 2 and "bad.csv:2" in r.output and "'maybe'" in r.output
    assert not spot_check.labels_path(run).exists()  # nothing half-written


def test_interactive_labels_are_saved_as_given(tmp_path):
    run = _run(tmp_path)
    r = CliRunner().invoke(app, ["label", str(run), "--n", "3"], input="r\nc\nq\n")
    assert r.exit_code == 0, r.output
    labels = spot_check.read_labels(run)
    assert sorted(labels.values()) == ["compliance", "refusal"]
