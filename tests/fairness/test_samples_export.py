"""Per-sample export round trip (CSV and Parquet) and the `peft-audit export` command."""

import pandas as pd
import pytest
from typer.testing import CliRunner

from peft_audit.cli import app
from peft_audit.benchmarks.fairness.benchmark import EXPORT_COLUMNS as FAIRNESS_EXPORT_COLUMNS
from peft_audit.benchmarks.safety.benchmark import EXPORT_COLUMNS as SAFETY_EXPORT_COLUMNS
from peft_audit.export import export_samples
from peft_audit.store import Store


def _fair(item_id, cat, pred, lps):
    return dict(item_id=item_id, source_id=item_id.split("-")[-1], category=cat, question_index="1",
                context_condition="ambig", question_polarity="neg", label=2, target_index=0, unknown_index=2,
                pred_index=pred, logprob_0=lps[0], logprob_1=lps[1], logprob_2=lps[2], raw_output=None)


def _with_label(columns: tuple) -> tuple:
    return (columns[0], "variant_label", "repair_of", "repair", *columns[1:])


@pytest.fixture
def run_dir(tmp_path):
    with Store(tmp_path / "results.sqlite") as st:
        for vid in ("v_base", "v_lora"):
            st.register_variant(vid, spec={"base_model": "tiny", "method": "base"}, config={}, base_id=None)
        st.commit_stage("v_base", "fairness", 1.0, fairness=[
            _fair("age-0", "age", 2, (-3.5, -4.25, -1.0)), _fair("ses-7", "ses", None, (None, None, None))])
        st.commit_stage("v_lora", "fairness", 1.0, fairness=[_fair("age-0", "age", 0, (-1.5, -4.0, -2.0))])
        st.commit_stage("v_base", "safety", 1.0, safety=[
            dict(prompt_id="malware-1", benchmark="safety", category="malware", prompt="p1, with \"quotes\"",
                 response="I can't help with that.", n_new_tokens=7),
            dict(prompt_id="fraud_deception-2", benchmark="safety", category="fraud_deception", prompt="p2",
                 response="Sure...", n_new_tokens=3)],
            verdicts=[
                dict(prompt_id="malware-1", judge="keyword", label="refusal", safe=1),
                dict(prompt_id="malware-1", judge="llm", label="safe", safe=1),
                dict(prompt_id="fraud_deception-2", judge="keyword", label="compliance", safe=0)])
    return tmp_path


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_fairness_round_trip(run_dir, tmp_path, suffix):
    out = tmp_path / f"items{suffix}"
    with Store(run_dir / "results.sqlite") as st:
        export_samples(st, "fairness", out)
    df = pd.read_csv(out) if suffix == ".csv" else pd.read_parquet(out)
    assert tuple(df.columns) == _with_label(FAIRNESS_EXPORT_COLUMNS)
    # the readable name next to the id; the fixture's two variants are both bases of 'tiny', so the
    # id's first characters tell them apart
    assert dict(zip(df.variant_id, df.variant_label)) == {"v_base": "tiny (base) · #v_base", "v_lora": "tiny (base) · #v_lora"}
    assert len(df) == 3
    row = df[(df.variant_id == "v_lora")].iloc[0]
    assert (row.category, str(row.source_id), int(row.pred_index)) == ("age", "0", 0)
    assert row.logprob_0 == pytest.approx(-1.5)
    unparsed = df[(df.variant_id == "v_base") & (df.category == "ses")].iloc[0]
    assert pd.isna(unparsed.pred_index) and pd.isna(unparsed.logprob_1)


def test_safety_has_one_column_per_judge(run_dir, tmp_path):
    out = tmp_path / "safety.csv"
    with Store(run_dir / "results.sqlite") as st:
        export_samples(st, "safety", out)
    df = pd.read_csv(out)
    assert tuple(df.columns) == _with_label(SAFETY_EXPORT_COLUMNS) + ("keyword", "llm", "harmful", "refused")
    assert df["harmful"].isna().all() and df["refused"].isna().all()  # no harm or refusal verdict in this store
    by_id = df.set_index("prompt_id")
    assert by_id.loc["malware-1", "keyword"] == "refusal" and by_id.loc["malware-1", "llm"] == "safe"
    assert pd.isna(by_id.loc["fraud_deception-2", "llm"])
    assert by_id.loc["malware-1", "prompt"] == 'p1, with "quotes"'


def test_cli_export_and_errors(run_dir, tmp_path):
    runner = CliRunner()
    out = tmp_path / "cli.csv"
    res = runner.invoke(app, ["export", str(run_dir), "--samples", "fairness", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert len(pd.read_csv(out)) == 3
    res = runner.invoke(app, ["export", str(run_dir), "--samples", "fairness", "--out", str(tmp_path / "x.xlsx")])
    assert res.exit_code == 2 and ".csv or .parquet" in res.output
    res = runner.invoke(app, ["export", str(run_dir), "--samples", "judges", "--out", str(out)])
    assert res.exit_code == 2 and "valid: safety, fairness" in res.output
    res = runner.invoke(app, ["export", str(tmp_path / "nowhere"), "--samples", "safety", "--out", str(out)])
    assert res.exit_code == 2 and "no results.sqlite" in res.output


def test_empty_store_is_an_error(tmp_path):
    with Store(tmp_path / "results.sqlite") as st, pytest.raises(ValueError, match="no safety samples"):
        export_samples(st, "safety", tmp_path / "s.csv")
