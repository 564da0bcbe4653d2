"""Every registered benchmark honours the Benchmark interface (table-driven over the registry),
and the registry fails loudly on an unknown name."""

from __future__ import annotations

import dataclasses

import pytest

from peft_audit.benchmarks.base import BenchmarkSection
from peft_audit.benchmarks.registry import BENCHMARKS, benchmark_for_samples, get_benchmark
from peft_audit.config import ConfigError, SweepConfig, benchmark_sections, parse_config
from peft_audit.gate import GateThresholds
from peft_audit.store import Store

NAMES = sorted(BENCHMARKS)


def test_unknown_names_error_listing_the_valid_ones():
    with pytest.raises(ValueError, match="unknown benchmark 'xstest'; valid: " + ", ".join(BENCHMARKS)):
        get_benchmark("xstest")
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
def test_gate_rules_name_existing_thresholds(name):
    fields = {f.name for f in dataclasses.fields(GateThresholds)}
    for rule in BENCHMARKS[name].gate_rules:
        assert rule.threshold in fields and rule.direction in (-1, 1)
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
