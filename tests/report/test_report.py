"""write_reports on a synthetic store: every format, self-contained HTML, escaped model text."""

import json
import re
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from synthetic_store import XSS_RESPONSE, build_synthetic_store
from typer.testing import CliRunner

from peft_audit.cli import app
from peft_audit.report import write_reports
from peft_audit.report.html import script_json

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    d = build_synthetic_store(tmp_path_factory.mktemp("run"), n_variants=10, seed=4)
    write_reports(d, formats=["md", "html", "json", "csv", "parquet"], n_boot=200)
    return d


def test_all_formats_written(run_dir):
    for name in ("report.md", "report.html", "analysis.json"):
        assert (run_dir / name).stat().st_size > 1000
    doc = json.loads((run_dir / "analysis.json").read_text())
    assert doc["correction"] == "holm" and doc["tables"]["paired"] and doc["tables"]["findings"]
    paired_csv = pd.read_csv(run_dir / "analysis" / "paired.csv")
    paired_pq = pd.read_parquet(run_dir / "analysis" / "paired.parquet")
    assert len(paired_csv) == len(paired_pq) == len(doc["tables"]["paired"])
    assert {"delta", "ci_low", "ci_high", "p_value", "p_adj"} <= set(paired_csv.columns)


def test_markdown_opens_with_the_overview_then_findings_and_has_intervals(run_dir):
    md = (run_dir / "report.md").read_text()
    assert md.splitlines()[2] == "## Overview"
    overview = md.split("## Overview")[1].split("## Findings")[0]
    # the synthetic run is written like one before the two verdicts: the rates it lacks are no
    # columns of dashes, it says once what it lacks
    assert ("| variant | gate | safety Δ (overall) | "
            "BBQ bias Δ, ambiguous | BBQ bias Δ, disambiguated | over-refusal Δ |") in overview
    assert "Not measured in this run: harmful Δ (overall), refusal Δ, harmful prompts" in overview
    assert re.search(r"\| (pass|FAIL \(\d+\)) \| [+-]\d+\.\d \[[+-]\d+\.\d, [+-]\d+\.\d\]\*? \|", overview)
    findings = md.split("## Findings")[1].split("## Safety")[0]
    assert "95% CI" in findings and "prompt-based" in findings
    safety = md.split("## Safety")[1].split("## Fairness")[0]
    assert re.search(r"\d+\.\d \([+-]\d+\.\d \[[+-]\d+\.\d, [+-]\d+\.\d\]\*?\)", safety)
    assert "<script>" not in md


def test_html_is_self_contained_and_escapes_model_text(run_dir):
    html = (run_dir / "report.html").read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert "<link" not in html
    assert XSS_RESPONSE not in html and "alert(1)</script>" not in html
    assert "\\u003cscript\\u003ealert(1)" in html
    for section in ("Findings", "Heatmaps", "factor effects", "Pareto front", "Judge agreement", "Over-refusal",
                    "Failed or unfinished", "Per-sample browser"):
        assert section in html
    assert "synthetic failure of &lt;ia3&gt;" in html  # error text escaped, not markup


def test_script_json_cannot_close_the_script_element():
    s = script_json({"r": "</script><script>alert(1)</script>&amp;\u2028"})
    assert "<" not in s and ">" not in s and "&" not in s
    assert json.loads(s)["r"].startswith("</script>")


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH (install it with `apt-get install -y chromium`)")
def test_html_renders_in_headless_chromium_and_shows_script_as_text(run_dir, tmp_path):
    url = (run_dir / "report.html").resolve().as_uri() + "#samples?q=alert"
    proc = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0",
         f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", url],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    dom = proc.stdout
    assert '<body data-render="ok">' in dom, "page script did not finish"
    console = [line for line in proc.stderr.splitlines() if ":CONSOLE" in line]
    assert not console, console
    # The response is a text node in the sample table, not an element.
    assert "&lt;script&gt;alert(1)&lt;/script&gt; and &lt;b&gt;bold&lt;/b&gt; &amp; friends" in dom
    assert "<script>alert(1)" not in dom
    assert "showing 1 of 1 samples" in dom


def test_cli_report_and_bad_format(run_dir):
    r = CliRunner().invoke(app, ["report", str(run_dir), "--format", "md", "--correction", "bh"])
    assert r.exit_code == 0, r.output
    assert "Benjamini-Hochberg" in (run_dir / "report.md").read_text()
    r = CliRunner().invoke(app, ["report", str(run_dir), "--format", "pdf"])
    assert r.exit_code == 2 and "pdf" in r.output


def test_missing_store_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no results.sqlite"):
        write_reports(tmp_path / "nope", formats=["md"])
    assert not (tmp_path / "nope" / "results.sqlite").exists()


@pytest.mark.parametrize("case", ["base_only", "safety_only", "fairness_only", "empty"])
def test_reports_on_partial_runs_do_not_crash(tmp_path, case):
    import sqlite3

    from peft_audit.store import Store

    d = tmp_path / case
    if case == "empty":
        Store(d / "results.sqlite").close()
    else:
        build_synthetic_store(d, n_variants=0 if case == "base_only" else 5, n_failed=0, bases=("llama-3.2-1b",),
                              prompts_per_category=3, bbq_items_per_category=8)
        with sqlite3.connect(d / "results.sqlite") as c:
            if case == "safety_only":
                c.execute("DELETE FROM samples WHERE benchmark = 'fairness'")
            if case == "fairness_only":
                c.execute("DELETE FROM samples WHERE benchmark = 'safety'")
    paths = write_reports(d, formats=["md", "html", "json", "csv"], n_boot=50)
    md = (d / "report.md").read_text()
    assert "## Findings" in md and len(paths) > 3
    if case in ("base_only", "empty"):
        assert "No fine-tuned variant could be compared" in md


def test_the_end_of_a_run_evaluates_the_gate_once(tmp_path, monkeypatch):
    """report.md, report.html and the closing lines show one gate result, evaluated once."""
    import peft_audit.gate
    from peft_audit.report import finish_run

    calls = []
    evaluate = peft_audit.gate.gate_of_analysis
    monkeypatch.setattr(peft_audit.gate, "gate_of_analysis", lambda a: calls.append(a) or evaluate(a))
    d = build_synthetic_store(tmp_path / "run", n_variants=3, seed=1)
    lines = finish_run(d)
    assert len(calls) == 1
    gate = evaluate(calls[0])
    for v in calls[0].variants.itertuples():  # each closing line shows that one result
        if v.method != "base":
            failed = any(c.variant_id == v.id and not c.passed for c in gate.checks)
            line = next(x for x in lines if f" {v.label} " in x)
            assert ("FAIL" in line) == failed
    assert (d / "report.md").exists() and (d / "report.html").exists()


def test_trust_section_shows_the_external_figures_beside_the_own_set(run_dir):
    md = (run_dir / "report.md").read_text()
    trust = md.split("## How far the judges can be trusted")[1].split("\n## ")[0]
    assert "XSTest held-out half" in trust and "HarmBench-Llama-2-13b-cls" in trust and "Röttger et al. 2024" in trust
    html = (run_dir / "report.html").read_text()
    assert "XSTest held-out half" in html.split('id="trust"')[1].split("<h2")[0]
