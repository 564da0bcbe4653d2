"""The two verdicts per response (harmful-response rate, refusal rate) in the overview, the
closing verdict lines, report.md / report.html and the adapter card; and a run written before
them saying what it lacks."""

import pytest
from synthetic_store import build_synthetic_store

from peft_audit.analysis import analyze
from peft_audit.report.card import card_section
from peft_audit.report.markdown import render_markdown
from peft_audit.report.overview import overview
from peft_audit.report.verdict import verdict_lines

KW = dict(n_variants=2, n_failed=0, bases=("llama-3.2-1b",), methods=("lora", "prompt-tuning"),
          method_effects={"lora": 0.0, "prompt-tuning": -0.3}, category_effects={}, bbq_acc_effects={},
          noise_sd=0.0, pairing=1.0, xss=False, seed=7)


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    d = build_synthetic_store(tmp_path_factory.mktemp("two"), two_verdicts=True, **KW)
    return d, analyze(d, n_boot=100)


@pytest.fixture(scope="module")
def old(tmp_path_factory):
    d = build_synthetic_store(tmp_path_factory.mktemp("old"), **KW)
    return d, analyze(d, n_boot=100)


ROW = {"spec": {}, "base_model": "llama-3.2-1b", "method": "lora"}


def _tuned(a, method):
    return a.variants.loc[a.variants["method"] == method, "id"].item()


def test_overview_and_verdict_lines_show_both_rates(both):
    d, a = both
    ov = overview(a)
    assert ov["columns"][:2] == ["harmful Δ (overall)", "refusal Δ, harmful prompts"] and not ov["not_measured"]
    p = a.paired.set_index(["variant_id", "benchmark", "metric", "category"])
    pt = _tuned(a, "prompt-tuning")
    row = next(r for r in ov["rows"] if r["id"] == pt)
    harmful, refusal = row["cells"][:2]
    assert harmful["delta_text"].startswith(f"{100 * p.loc[(pt, 'safety', 'harmful_rate', 'overall'), 'delta']:+.1f} [")
    assert refusal["delta_text"].startswith(f"{100 * p.loc[(pt, 'safety', 'refusal_rate', 'overall'), 'delta']:+.1f} [")
    assert harmful["good"] < 0 and refusal["good"] < 0  # more harm and fewer refusals are both worse
    line = next(x for x in verdict_lines(a) if row["label"] in x)
    assert f"harmful Δ {harmful['delta_text']}" in line and f"refusal Δ {refusal['delta_text']}" in line
    assert "FAIL" in line


def test_report_and_card_show_both_rates(both):
    d, a = both
    md = render_markdown(a, "two verdicts")
    safety = md.split("## Safety")[1].split("## Fairness")[0]
    assert "### Harmful-response rate" in safety and "### Refusal rate on harmful prompts" in safety
    assert "Not measured" not in md
    from peft_audit.report.html import render_html

    html = render_html(a, "two verdicts")
    assert "Harmful-response rate" in html and "Refusal rate on harmful prompts" in html and "Not measured" not in html
    card = card_section(a, _tuned(a, "prompt-tuning"), ROW, protocol="p", date="2026-12-07")
    assert "Harmful-response rate" in card and "Refusal rate on harmful prompts" in card and "not measured" not in card
    assert "`combined-harm`" not in card  # the harm verdict is not a judge


def test_a_run_before_the_two_verdicts_says_what_it_lacks(old):
    d, a = old
    ov = overview(a)
    assert ov["not_measured"] == ["harmful Δ (overall)", "refusal Δ, harmful prompts"]
    lines = verdict_lines(a)[1:]
    assert len(lines) == len(ov["rows"]) == 2
    for line in lines:
        assert "harmful Δ not measured" in line and "refusal Δ not measured" in line and "safety Δ " in line
    md = render_markdown(a, "old run")
    assert "Not measured in this run: harmful Δ (overall), refusal Δ, harmful prompts" in md
    assert "_Not measured: no harm judge among safety.judges" in md
    from peft_audit.report.html import render_html

    html = render_html(a, "old run")
    assert "Not measured: no harm judge among safety.judges" in html and "Not measured in this run:" in html
    card = card_section(a, _tuned(a, "lora"), ROW, protocol="p", date="2026-12-07")
    assert "not measured: no harm judge among safety.judges" in card
    assert "not measured: no refusal verdict stored" in card


def test_summary_show_and_export_carry_both_verdicts(both, old):
    from typer.testing import CliRunner

    from peft_audit.cli import app
    from peft_audit.export import samples_frame
    from peft_audit.store import open_existing
    from peft_audit.summary import build_summary

    for (d, a), measured in ((both, True), (old, False)):
        with open_existing(d) as s:
            blocks = {v["id"]: v["safety"] for v in build_summary(s)["variants"]}
            df = samples_frame(s, "safety")
        metrics = a.frames.metrics.set_index(["variant_id", "benchmark", "category", "metric"])["value"]
        for vid, block in blocks.items():
            if measured:
                assert block["not_measured"] == []
                assert block["harmful_rate"]["overall"] == pytest.approx(metrics[vid, "safety", "overall", "harmful_rate"])
                assert set(block["refusal_rate"]["by_category"]) == set(block["by_category"])
            else:
                assert block["not_measured"] == ["harmful_rate", "refusal_rate"] and block["harmful_rate"] is None
        safety_rows = df[df["category"] != "benign"]
        if measured:  # per response: harmful iff the harm verdict says unsafe; refused iff the refusal verdict says so
            assert set(safety_rows["harmful"].dropna()) == {0, 1} and not safety_rows["harmful"].isna().any()
            assert ((safety_rows["harmful"] == 1) == (safety_rows["combined-harm"] == "unsafe")).all()
            assert ((safety_rows["refused"] == 1) == (safety_rows["combined"] == "refusal")).all()
        else:
            assert safety_rows["harmful"].isna().all() and safety_rows["refused"].isna().all()
        out = CliRunner().invoke(app, ["show", str(d)], terminal_width=250).output
        assert "harmful" in out and ("not measured" in out) != measured


def test_the_report_tables_leave_out_rates_no_variant_has(tmp_path):
    from peft_audit.report.overview import overview_table

    ov = {"columns": ["harmful Δ (overall)", "safety Δ (overall)"], "not_measured": ["harmful Δ (overall)"],
          "rows": [{"label": "v", "id": "x", "cells": [None, {"delta_text": "+1.0"}]}]}
    table = overview_table(ov)
    assert table["columns"] == ["safety Δ (overall)"] and table["rows"][0]["cells"] == [{"delta_text": "+1.0"}]
    assert table["not_measured"] == ["harmful Δ (overall)"] and ov["columns"][0] == "harmful Δ (overall)"


def test_reports_quote_the_harm_judges_card_when_the_run_used_it():
    from peft_audit.judges.harm import published_card
    from peft_audit.report.tables import harm_card_text

    assert harm_card_text(["refusal"]) is None
    text = harm_card_text(["harm", "refusal"])
    hb = next(r for r in published_card()["figures"]["test_harmbench"] if r["metric"] == "safe_agreement")
    assert f"HarmBench val (test only) {hb['value']:.3f}" in text and "GPTFuzz, trained without it" in text
