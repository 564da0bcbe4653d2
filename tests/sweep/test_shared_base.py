"""Variants of one base are evaluated in groups on one loaded base (``share_base``, the
default): the base model with its LoRA variants, and the prompt-tuning, P-tuning and IA3
variants each in their own group, generation batches mixed where the method allows. The
stored rows must equal those of a run where every variant loads its own model."""

from __future__ import annotations

from pathlib import Path

import pytest

import peft_audit.models.shared_base as shared_base
from peft_audit.config import SweepConfig
from peft_audit.pipeline import run_sweep
from peft_audit.store import Store
from peft_audit.sweep.groups import groupable, take_group
from peft_audit.sweep.options import RunOptions
from peft_audit.sweep.plan import expand

TABLES = ("safety_samples", "verdicts", "fairness_samples", "metrics")


def _config(model_dir: Path, **extra) -> SweepConfig:
    base = str(model_dir)
    return SweepConfig.model_validate({
        "name": "shared",
        "base_models": [base],
        "methods": [{"name": m, "lr": [5e-2, 1e-1]} for m in ("lora", "ia3", "prompt-tuning", "p-tuning")],
        "algos": ["sft"],
        "device": "cpu",
        "training": {"max_steps": 2, "batch_size": 2, "max_seq_len": 48, "max_examples": 4},
        "safety": {"limit_per_category": 1, "max_new_tokens": 5, "batch_size": 4},
        "fairness": {"per_cell": 1, "bootstrap": 20, "categories": ["age"]},
        **extra,
    })


def _rows(run_dir: Path) -> dict:
    out = {}
    with Store(run_dir / "results.sqlite") as s:
        out["variants"] = sorted((v["id"], v["method"], v["status"], sorted(v["timings"])) for v in s.variants())
        for table in TABLES:
            out[table] = sorted((tuple(sorted((k, v) for k, v in r.items() if k not in ("id", "created_at")))
                                 for r in s.rows(table)), key=repr)
    return out


def test_grouped_run_equals_one_variant_at_a_time(tiny_model_dir, tmp_path, monkeypatch):
    mixed_calls = []
    real = shared_base.generate

    def watched(*args, adapter_names=None, **kw):
        if adapter_names is not None:
            mixed_calls.append(sorted(set(adapter_names)))
        return real(*args, adapter_names=adapter_names, **kw)

    monkeypatch.setattr(shared_base, "generate", watched)
    run_sweep(_config(tiny_model_dir), tmp_path / "grouped", RunOptions(in_process=True))
    run_sweep(_config(tiny_model_dir, share_base=False), tmp_path / "alone", RunOptions(in_process=True))

    # one mixed call per group: the base with both LoRA variants, and both variants of each of
    # IA3, prompt tuning and P-tuning
    assert sorted(len(names) for names in mixed_calls) == [2, 2, 2, 3]
    assert any("__base__" in names for names in mixed_calls)
    grouped, alone = _rows(tmp_path / "grouped"), _rows(tmp_path / "alone")
    assert [s for _, _, s, _ in grouped["variants"]] == ["done"] * 9
    # a trained member's stage times include its training, done before the group's evaluation
    assert all("train" in t for (_, method, _, t) in grouped["variants"] if method != "base")
    assert grouped == alone


def test_groups_are_one_base_and_one_family(tiny_model_dir):
    cfg = _config(tiny_model_dir)
    pending = expand(cfg)
    kinds = {pv.id: pv.spec.method for pv in pending}
    groups = []
    while pending:
        groups.append(sorted(kinds[pv.id] for pv in take_group(cfg, pending, lambda pv: set())))
    assert sorted(groups) == [["base", "lora", "lora"], ["ia3", "ia3"], ["p-tuning", "p-tuning"],
                              ["prompt-tuning", "prompt-tuning"]]
    # two job slots: a family's candidates are split so that both get work
    pending = expand(cfg)
    assert len(take_group(cfg, pending, lambda pv: set(), jobs=2)) == 2


@pytest.mark.parametrize("extra, stages", [
    ({"compile": True}, set()), ({"share_base": False}, set()),
    ({}, {"trained", "generated"}),
])
def test_what_keeps_a_variant_out_of_groups(tiny_model_dir, extra, stages):
    cfg = _config(tiny_model_dir, **extra)
    lora = next(pv for pv in expand(cfg) if pv.spec.method == "lora")
    assert not groupable(cfg, lora, stages)
    assert groupable(_config(tiny_model_dir), lora, {"trained"})
