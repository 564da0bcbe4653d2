"""Wall-time estimates: calibration on a tiny model (cached), the arithmetic of the estimate, and
the study-scale roofline."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from peft_audit.benchmarks.base import Workload
from peft_audit.config import parse_config
from peft_audit.sweep.cost import PlanCost, estimate_cost
from peft_audit.sweep.estimate import (
    CALIBRATION_FILE, GPUS, Rates, StudyWorkload, calibrate, estimate_wall, study_estimate,
)
from peft_audit.sweep.groups import take_group
from peft_audit.sweep.plan import expand


def _cfg(model_dir, **extra):
    return parse_config({
        "name": "est", "base_models": [str(model_dir)], "methods": ["lora", "ia3"], "device": "cpu",
        "training": {"max_steps": 3, "batch_size": 2, "max_seq_len": 64},
        "safety": {"batch_size": 4, "max_new_tokens": 8},
        "fairness": {"per_cell": 1, "categories": ["age"]}, **extra,
    })


def test_calibration_measures_each_unit_once_then_comes_from_the_cache(tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("PEFT_AUDIT_CACHE", str(tmp_path))
    cfg = _cfg(tiny_model_dir)
    rates, cached = calibrate(cfg, str(tiny_model_dir))
    assert not cached and rates.batch == 4 and rates.device == "cpu"
    assert rates.generate_s_per_prompt_token > 0 and rates.score_s_per_item > 0 and rates.train_s_per_step > 0
    again, cached = calibrate(cfg, str(tiny_model_dir))
    assert cached and again == rates
    (key,) = json.loads((tmp_path / CALIBRATION_FILE).read_text())
    assert "gen_batch=4" in key and "train=2x64" in key
    # a setting that changes a unit's cost is measured anew; one that does not reuses the rates
    wider = _cfg(tiny_model_dir, safety={"batch_size": 8, "max_new_tokens": 8})
    assert calibrate(wider, str(tiny_model_dir))[1] is False
    assert calibrate(_cfg(tiny_model_dir, name="other"), str(tiny_model_dir))[1] is True


def test_the_estimate_is_the_plan_s_counts_times_the_rates():
    cfg = parse_config({"base_models": ["m"], "methods": ["lora"], "lr": [1e-4, 2e-4],
                        "safety": {"max_new_tokens": 10}})
    plan = expand(cfg)  # base + 2 trained
    workloads = {"safety": Workload(24, 10), "fairness": Workload(0, 0, 30),
                 "xstest": Workload(50, 64), "harmbench": Workload(None, 512)}  # harmbench: a Hub source
    cost = PlanCost(variants=3, bases=1, trained=2, given_adapters=0,
                    train_steps={pv.id: 5 for pv in plan if not pv.spec.is_base()}, workloads=workloads)
    rates = Rates(generate_s_per_prompt_token=0.01, score_s_per_item=0.5, train_s_per_step=2.0, load_s=1.0,
                  batch=8, device="cpu", threads=2)
    est = estimate_wall(cfg, plan, cost, rates)
    assert est["train"] == pytest.approx(2 * 5 * 2.0)
    # every benchmark's answers at its own max_new_tokens; the unknown count adds nothing (and is said)
    assert est["generate"] == pytest.approx(3 * (24 * 10 + 50 * 64) * 0.01)
    assert cost.unknown() == ["harmbench"] and cost.generated_tokens() == 24 * 10 + 50 * 64
    assert est["score"] == pytest.approx(3 * 30 * 0.5)
    assert est["load"] == pytest.approx((3 + 2) * 1.0)
    assert est["total"] == pytest.approx(sum(v for k, v in est.items() if k != "total"))
    without_bbq = PlanCost(variants=3, bases=1, trained=2, given_adapters=0,
                           workloads={k: w for k, w in workloads.items() if k != "fairness"})
    assert estimate_wall(cfg, plan, without_bbq, rates)["score"] == 0
    # a share_base group (the base with both LoRA variants) loads its base once to evaluate
    pending = list(plan)
    groups = [take_group(cfg, pending, lambda pv: set())]
    assert [len(g) for g in groups] == [3] and not pending
    assert estimate_wall(cfg, plan, cost, rates, groups)["load"] == pytest.approx((1 + 2) * 1.0)
    assert estimate_wall(cfg, plan[:1], cost, rates, groups)["load"] == pytest.approx(1.0)


def test_the_study_estimate_follows_the_roofline_and_states_its_assumptions():
    gpu, w = GPUS["h100"], StudyWorkload()
    est = study_estimate(gpu, w)
    # decoding at batch 64 on an H100 is bandwidth-bound: a step reads the 16 GB of weights once
    step = w.params * 2 / (gpu.bandwidth * w.bandwidth_use)
    assert step > 2 * w.params * w.decode_batch / (gpu.bf16_flops * w.mfu)
    evals = w.variants + w.base_evaluations
    decode_h = evals * w.hexphi_prompts / w.decode_batch * w.new_tokens * step / 3600
    assert est["hours"]["generate"] > decode_h
    assert est["hours"]["BBQ"] == pytest.approx(evals * w.bbq_items * w.bbq_tokens * 2 * w.params
                                                 / (gpu.bf16_flops * w.mfu) / 3600)
    assert est["hours"]["total"] == pytest.approx(sum(v for k, v in est["hours"].items() if k != "total"))
    text = " ".join(est["assumptions"])
    assert "989 TFLOP/s" in text and "235 variants" in text and "58,492" in text and "Kaplan" in text
    # a slower GPU takes longer
    assert study_estimate(GPUS["a100"], w)["hours"]["total"] > est["hours"]["total"]


def test_plan_estimate_and_study_on_the_command_line(tiny_model_dir, tmp_path, monkeypatch):
    from peft_audit.cli import app

    monkeypatch.setenv("PEFT_AUDIT_CACHE", str(tmp_path / "cache"))
    cfg = tmp_path / "s.yaml"
    cfg.write_text(f"base_models: ['{tiny_model_dir}']\nmethods: [lora]\ndevice: cpu\n"
                   "training: {max_steps: 2, batch_size: 2, max_seq_len: 64}\nsafety: {batch_size: 4, max_new_tokens: 8}\n"
                   "fairness: {per_cell: 1, categories: [age]}\n")
    res = CliRunner().invoke(app, ["plan", str(cfg), "--estimate", "--study", "a100"], env={"COLUMNS": "300"})
    assert res.exit_code == 0, res.output
    assert "calibration of" in res.output and "estimated wall time:" in res.output
    assert "NVIDIA A100" in res.output and "GPU-hours" in res.output
    assert "Loading weights" not in res.output  # library output is not this command's
    res = CliRunner().invoke(app, ["plan", str(cfg), "--study", "tpu"])
    assert res.exit_code == 2 and "valid: h100, a100, l40s" in res.output
    # without --estimate no model is loaded: the estimate is not printed
    res = CliRunner().invoke(app, ["plan", str(cfg)], env={"COLUMNS": "300"})
    assert res.exit_code == 0 and "estimated wall time" not in res.output and "--estimate" in res.output


def test_durations_read_the_same_everywhere():
    from peft_audit.sweep.logs import describe_seconds

    assert [describe_seconds(s) for s in (None, 0.4, 89, 95, 3725, 5400, 7530)] == [
        "unknown", "0 s", "89 s", "1 min 35 s", "62 min 05 s", "1 h 30 min", "2 h 05 min"]
    assert [describe_seconds(s, estimate=True) for s in (89, 95, 3725, 7530)] == ["89 s", "2 min", "62 min", "2.1 h"]


def test_every_enabled_benchmark_counts_its_own_work_plug_ins_included(monkeypatch):
    """plan's counts come from each benchmark (Benchmark.workload), not from a list of known ones."""
    from peft_audit.benchmarks.safety import load_safety_prompts, over_refusal_prompts
    from peft_audit.benchmarks.strongreject.prompts import load_forbidden_prompts
    from peft_audit.benchmarks.xstest.sources import load_xstest_prompts

    cfg = parse_config({
        "base_models": ["m"], "methods": ["lora"],
        "safety": {"limit_per_category": 1, "max_new_tokens": 16,
                   "judges": ["refusal", {"name": "guard", "model": "org/guard-1b"}]},
        "fairness": {"per_cell": 1, "categories": ["age"], "mode": "generate"},
        "xstest": {"enabled": True, "limit_per_type": 2, "max_new_tokens": 32},
        "harmbench": {"enabled": True, "source": "someorg/harmbench-behaviors"},
        "strongreject": {"enabled": True, "rubric_judge": {"name": "llm", "url": "http://127.0.0.1:1/v1",
                                                           "model": "judge-7b"}},
    })
    cost = estimate_cost(cfg, expand(cfg))
    w = cost.workloads
    assert list(w) == ["safety", "fairness", "xstest", "strongreject", "harmbench", "utility"]  # registry order
    harmful, benign = len(load_safety_prompts(cfg.safety)), len(over_refusal_prompts())
    assert (w["safety"].generations, w["safety"].max_new_tokens) == (harmful + benign, 16)
    assert w["fairness"].scored_items == 0 and w["fairness"].generations > 0  # generate mode answers with a letter
    assert (w["xstest"].generations, w["xstest"].max_new_tokens) == (len(load_xstest_prompts(cfg.xstest)), 32)
    assert w["strongreject"].generations == len(load_forbidden_prompts(cfg.strongreject))
    assert w["strongreject"].max_new_tokens == 256
    # a Hub dataset is not downloaded by plan: unknown, and said
    assert w["harmbench"].generations is None and cost.unknown() == ["harmbench"]
    # the harm judge of xstest's and harmbench's default judges runs the bundled model's first layers
    assert cost.model_judges() == ["guard (org/guard-1b)", "harm (bundled SmolLM2, first layers)", "llm (judge-7b)"]
    assert w["harmbench"].max_new_tokens == 512  # its own answer length, known without the data
    # loglik BBQ is scored, not generated
    loglik = cfg.model_copy(update={"fairness": cfg.fairness.model_copy(update={"mode": "loglik"})})
    fw = estimate_cost(loglik, expand(loglik)).workloads["fairness"]
    assert fw.generations == 0 and fw.scored_items == w["fairness"].generations
    # a registered benchmark that declares no workload is listed as not counted, not guessed at
    from types import SimpleNamespace

    from peft_audit.benchmarks.registry import BENCHMARKS

    monkeypatch.setitem(BENCHMARKS, "xstest", SimpleNamespace(name="xstest"))
    cost = estimate_cost(cfg, expand(cfg))
    assert "xstest" not in cost.workloads and cost.uncounted == ["xstest"]


def test_plan_prints_each_benchmark_s_work_and_the_estimate_says_what_it_leaves_out(tiny_model_dir, tmp_path,
                                                                                     monkeypatch):
    from peft_audit.cli import app

    monkeypatch.setenv("PEFT_AUDIT_CACHE", str(tmp_path / "cache"))
    cfg = tmp_path / "s.yaml"
    cfg.write_text(f"base_models: ['{tiny_model_dir}']\nmethods: [lora]\ndevice: cpu\n"
                   "training: {max_steps: 2, batch_size: 2, max_seq_len: 64}\nsafety: {batch_size: 4, max_new_tokens: 8}\n"
                   "fairness: {per_cell: 1, categories: [age]}\n"
                   "xstest: {enabled: true, limit_per_type: 1, max_new_tokens: 8}\n"
                   "harmbench: {enabled: true, source: someorg/harmbench-behaviors}\n"
                   "strongreject: {enabled: true, limit_per_category: 1, max_new_tokens: 8, rubric_judge: "
                   "{name: llm, url: 'http://127.0.0.1:1/v1', model: judge-7b}}\n")
    res = CliRunner().invoke(app, ["plan", str(cfg), "--estimate"], env={"COLUMNS": "300"})
    assert res.exit_code == 0, res.output
    assert "xstest per variant:" in res.output and "strongreject per variant:" in res.output
    assert "harmbench per variant: someorg/harmbench-behaviors: not downloaded" in res.output
    assert "benchmarks: safety, fairness, xstest, strongreject, harmbench" in res.output
    assert "not counted (a Hub dataset that is not downloaded): harmbench" in res.output
    assert ("not timed: judges that run a model of their own: harm (bundled SmolLM2, first layers), llm (judge-7b)"
            in res.output)
