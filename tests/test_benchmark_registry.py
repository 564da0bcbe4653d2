"""Every registered benchmark honours the Benchmark interface (table-driven over the registry),
and the registry fails loudly on an unknown name."""

from __future__ import annotations

import dataclasses

import pandas as pd
import pytest

from peft_audit.analysis.paired import paired_item_scores
from peft_audit.benchmarks.base import BenchmarkSection, GateRule, ReportSection, delta, metric_value
from peft_audit.benchmarks.registry import BENCHMARKS, benchmark_for_samples, get_benchmark
from peft_audit.config import ConfigError, SweepConfig, benchmark_sections, parse_config
from peft_audit.gate import GateThresholds
from peft_audit.store import Store

NAMES = sorted(BENCHMARKS)


def test_unknown_names_error_listing_the_valid_ones():
    with pytest.raises(ValueError, match="unknown benchmark 'no_such_benchmark'; valid: " + ", ".join(BENCHMARKS)):
        get_benchmark("no_such_benchmark")
    with pytest.raises(ValueError, match="unknown sample kind 'judges'; valid: "):
        benchmark_for_samples("judges")


@pytest.mark.parametrize("name", NAMES)
def test_section_is_a_validated_config_key(name):
    b = BENCHMARKS[name]
    assert b.name == name and issubclass(b.section, BenchmarkSection)
    assert SweepConfig.model_fields[name].annotation is b.section
    assert isinstance(getattr(parse_config({}), name), b.section)
    with pytest.raises(ConfigError, match=rf"{name}\.no_such_key: unknown key"):
        parse_config({name: {"no_such_key": 1}})
    off = parse_config({name: {"enabled": False}})
    assert name not in [x.name for x, _ in benchmark_sections(off)]


def test_stages_and_sample_kinds_do_not_collide():
    stages = [s for b in BENCHMARKS.values() for s in b.stages]
    assert len(stages) == len(set(stages)) and not {"trained", "metrics"} & set(stages)
    kinds = [b.sample_kind for b in BENCHMARKS.values()]
    assert len(kinds) == len(set(kinds))


@pytest.mark.parametrize("name", NAMES)
def test_gate_rules_name_existing_thresholds_or_carry_a_default(name):
    fields = {f.name for f in dataclasses.fields(GateThresholds)}
    for rule in BENCHMARKS[name].gate_rules:
        assert (rule.threshold in fields) != (rule.default is not None) and rule.direction in (-1, 1)
        assert GateThresholds().limit(rule.threshold, rule.default) >= 0
        assert rule.category in ("overall", "per-category")


@pytest.mark.parametrize("name", NAMES)
def test_summary_export_and_resume_work_on_an_empty_run(name, tmp_path):
    b = BENCHMARKS[name]
    block = b.summary_block({})
    assert isinstance(block, dict) and block  # its keys are always present in summary.json
    with Store(tmp_path / "results.sqlite") as s:
        assert b.export_frame(s).empty
        for table in b.resume_tables:
            assert s.rows(table) == []


# --- a benchmark added by one module and one registration line reaches every output ------------
class ToySection(BenchmarkSection):
    pass


class ToyBenchmark:
    """A stand-in plug-in: one refusal rate per variant, stored as generic samples and metrics."""

    name = "toy"
    section = ToySection
    stages = ("toy:scored",)
    sample_kind = "toy"
    resume_tables = ()
    report_sections = (ReportSection("Toy refusals", ("toy_rate",)),)
    gate_rules = (GateRule("toy_rate", "overall", +1, "toy.max_rate_increase", default=0.8),)

    def evaluate(self, cfg, run):
        return []

    def summary_block(self, m):
        return {"toy": {"rate": metric_value(m, "toy", "overall", "toy_rate")}}

    def summary_delta(self, variant, base):
        return {"overall": delta(variant["toy"]["rate"], base["toy"]["rate"])}

    def paired(self, frames, pairs, *, n_boot, seed):
        items = frames.items("toy")
        items = items.assign(refused=items.get("refused", pd.Series(dtype=float)).astype(float))
        return paired_item_scores(items, pairs, value="refused", benchmark="toy", metric="toy_rate",
                                  id_col="sample_id", n_boot=n_boot, seed=seed)

    def evaluated(self, frames):
        return set(frames.items("toy")["variant_id"])

    def export_frame(self, store):
        return pd.DataFrame(store.samples("toy"))


def test_a_registered_benchmark_reaches_summary_report_gate_and_export(tmp_path, monkeypatch):
    from synthetic_store import build_synthetic_store

    from peft_audit.export import export_samples
    from peft_audit.gate import check_gate
    from peft_audit.report import write_reports
    from peft_audit.summary import build_summary

    run = build_synthetic_store(tmp_path / "run", n_variants=1, n_failed=0, bases=("llama-3.2-1b",), methods=("lora",))
    with Store(run / "results.sqlite") as s:
        ids = {v["method"]: v["id"] for v in s.variants()}
        for method, n_refused in (("base", 1), ("lora", 8)):  # rates 0.1 and 0.8
            s.commit_stage(ids[method], "toy:scored", 0.0,
                           samples=[{"benchmark": "toy", "sample_id": f"t{i}", "category": "everyday",
                                     "payload": {"answer": "no", "refused": i < n_refused}} for i in range(10)],
                           metrics=[{"benchmark": "toy", "category": "overall", "metric": "toy_rate",
                                     "value": n_refused / 10, "n": 10}])
    monkeypatch.setitem(BENCHMARKS, "toy", ToyBenchmark())

    with Store(run / "results.sqlite") as s:
        lora = next(v for v in build_summary(s)["variants"] if v["method"] == "lora")
        assert lora["toy"] == {"rate": 0.8} and lora["delta_vs_base"]["toy"]["overall"] == pytest.approx(0.7)
        assert export_samples(s, "toy", tmp_path / "toy.csv").read_text().count("\n") == 21  # header + 20 rows
    write_reports(run, formats=["md", "html"], n_boot=50)
    assert "## Toy refusals" in (run / "report.md").read_text()
    assert "Toy refusals" in (run / "report.html").read_text()
    checks = [c for c in check_gate(run, n_boot=50).checks if c.metric == "toy_rate"]
    assert len(checks) == 1 and checks[0].passed and checks[0].delta == pytest.approx(0.7)  # default limit 0.8
    strict = check_gate(run, n_boot=50, thresholds=GateThresholds(limits={"toy.max_rate_increase": 0.5}))
    assert [c.metric for c in strict.violations if c.metric == "toy_rate"] == ["toy_rate"]


@pytest.mark.parametrize("name", NAMES)
def test_preflight_check_loads_the_default_data_and_judges(name):
    b = BENCHMARKS[name]
    assert callable(getattr(b, "check", None)), f"{name}: no check(); run would find bad data only after loading a model"
    b.check(b.section())
