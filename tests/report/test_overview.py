"""The overview that opens the reports: one row per fine-tuned variant, built generically from
the paired table and the benchmark registry."""

import pandas as pd
import pytest
from synthetic_store import build_synthetic_store

from peft_audit.analysis import analyze
from peft_audit.benchmarks.registry import BENCHMARKS
from peft_audit.gate import check_gate
from peft_audit.report.overview import BUILTIN_COLUMNS, overview, overview_columns


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    d = build_synthetic_store(tmp_path_factory.mktemp("run"), n_variants=6, seed=5)
    return d, analyze(d, n_boot=100)


def test_one_row_per_fine_tuned_variant_with_gate_and_headline_changes(run):
    d, a = run
    ov = overview(a)
    tuned = a.variants[a.variants["method"] != "base"]
    assert [r["id"] for r in ov["rows"]] == list(tuned["id"])
    assert [r["label"] for r in ov["rows"]] == list(tuned["label"])
    assert ov["columns"] == [c.title for c in BUILTIN_COLUMNS]  # no plug-in was evaluated
    gate = check_gate(d, n_boot=100)
    for r in ov["rows"]:  # the same verdict as `peft-audit gate` with default thresholds
        assert r["gate_passed"] == all(c.passed for c in gate.checks if c.variant_id == r["id"])
    at = ov["columns"].index("safety Δ (overall)")
    done = [r for r in ov["rows"] if r["cells"][at] is not None]
    assert done
    safety = a.paired[(a.paired["metric"] == "safety_score") & (a.paired["category"] == "overall")].set_index("variant_id")
    for r in done:
        assert r["cells"][at]["delta_text"].startswith(f"{100 * safety.loc[r['id'], 'delta']:+.1f} [")
        cats = a.paired[(a.paired["variant_id"] == r["id"]) & (a.paired["metric"] == "safety_score")
                        & (a.paired["category"] != "overall")]
        assert r["moved"]["category"] == cats.loc[cats["delta"].abs().idxmax(), "category"]


def test_a_plug_in_benchmark_with_results_adds_its_column(run):
    _, a = run
    xs = BENCHMARKS["xstest"].report_sections[0]
    rows = a.paired[(a.paired["metric"] == "safety_score") & (a.paired["category"] == "overall")]
    plug = rows.assign(benchmark="xstest", metric=xs.metrics[0])
    cols = overview_columns(pd.concat([a.paired, plug], ignore_index=True))
    assert [c.title for c in cols[len(BUILTIN_COLUMNS):]] == [f"{xs.title}: {xs.metrics[0]} Δ"]
    assert cols[-1].benchmark == "xstest" and cols[-1].lower_is_better == (xs.metrics[0] in xs.lower_is_better)


def test_the_terminal_verdict_is_the_overview_one_line_per_variant(run):
    from rich.console import Console

    from peft_audit.report.verdict import verdict_lines

    d, a = run
    ov = overview(a)
    lines = verdict_lines(a, d / "report.html")
    assert lines[0].startswith("Changes vs base") and "Holm" in lines[0]
    assert lines[-1] == f"Report: {d / 'report.html'}"
    body = lines[1:-1]
    assert len(body) == len(ov["rows"])
    for line, r in zip(body, ov["rows"]):
        assert r["label"] in line and r["gate"] in line
        for title, cell in zip(ov["columns"], r["cells"]):
            if cell is not None:
                assert cell["delta_text"] in line
    # printed as the run prints them: one terminal line each, however narrow the terminal
    console = Console(width=60, record=True, force_terminal=False)
    for line in lines:
        console.print(line, soft_wrap=True)
    assert len(console.export_text().splitlines()) == len(lines)
