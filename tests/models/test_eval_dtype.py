"""``eval_dtype``: models evaluated in bfloat16 (off by default on the CPU). Loading honours it,
every method generates and scores in it (mixed batches included), it is part of a run's
protocol only when it is not ``auto``, and a bad value is refused with the choices."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from peft_audit.config import SweepConfig
from peft_audit.models import attach_adapter, load_base
from peft_audit.models.device import resolve_dtype
from peft_audit.models.generate import generate
from peft_audit.models.scoring import score_continuations, score_continuations_naive
from peft_audit.models.shared_base import SharedBase
from peft_audit.sweep.plan import eval_protocol_hash, legacy_protocol_hash
from tiny_models import save_random_adapter

PROMPTS = ["hello there", "fox", "Who was forgetful in the story?", "sky", "Name a colour."]
CONTS = [[" The grandfather", " The grandson"], [" four", " five", " six"], [" no"], [" blue", " grey"], [" red"]]


def test_resolve_dtype():
    cpu = torch.device("cpu")
    assert resolve_dtype("auto", cpu) is torch.float32 and resolve_dtype(None, cpu) is torch.float32
    assert resolve_dtype("bfloat16", cpu) is torch.bfloat16
    assert resolve_dtype(torch.float16, cpu) is torch.float16
    with pytest.raises(ValueError, match="eval_dtype must be auto, float32, bfloat16, float16; got 'bf16'"):
        resolve_dtype("bf16", cpu)


def test_protocol_changes_only_when_not_auto():
    auto = SweepConfig()
    assert eval_protocol_hash(auto.model_copy(update={"eval_dtype": "auto"})) == eval_protocol_hash(auto)
    bf16 = auto.model_copy(update={"eval_dtype": "bfloat16"})
    assert eval_protocol_hash(bf16) != eval_protocol_hash(auto)
    assert legacy_protocol_hash(bf16) is None and legacy_protocol_hash(auto) is not None


@pytest.fixture(scope="module")
def adapters(lively_model_dir, tmp_path_factory) -> dict[str, Path]:
    from peft import IA3Config, LoraConfig, PromptTuningConfig

    root = tmp_path_factory.mktemp("bf16-adapters")
    lora = LoraConfig(task_type="CAUSAL_LM", r=4, target_modules=["q_proj", "v_proj", "down_proj"],
                      init_lora_weights=False)
    ia3 = IA3Config(task_type="CAUSAL_LM", target_modules=["k_proj", "v_proj", "down_proj"],
                    feedforward_modules=["down_proj"])
    prompt = PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=3)
    return {
        "lora0": save_random_adapter(lively_model_dir, root / "lora0", lora, 1),
        "lora1": save_random_adapter(lively_model_dir, root / "lora1", lora, 2),
        "ia30": save_random_adapter(lively_model_dir, root / "ia30", ia3, 3),
        "ia31": save_random_adapter(lively_model_dir, root / "ia31", ia3, 4),
        "prompt0": save_random_adapter(lively_model_dir, root / "prompt0", prompt, 5),
        "prompt1": save_random_adapter(lively_model_dir, root / "prompt1", prompt, 6),
    }


def _alone(model_dir: Path, adapter: Path | None, dtype: str) -> tuple[list[str], list[list[float]]]:
    loaded = load_base(str(model_dir), device="cpu", dtype=dtype)
    if adapter is not None:
        loaded = attach_adapter(loaded, adapter)
    assert loaded.model.get_input_embeddings().weight.dtype == resolve_dtype(dtype, torch.device("cpu"))
    texts = [g.text for g in generate(loaded.model, loaded.tokenizer, PROMPTS, max_new_tokens=5, batch_size=4)]
    return texts, score_continuations(loaded.model, loaded.tokenizer, PROMPTS, CONTS, batch_size=2)


@pytest.mark.parametrize("group", [["lora0", "lora1"], ["ia30", "ia31"], ["prompt0", "prompt1"]])
def test_every_method_evaluates_in_bfloat16(lively_model_dir, adapters, group):
    """Each member generates in bfloat16 alone and in a shared base's mixed batch; its bfloat16
    log-probs are bfloat16's rounding away from float32's, and its shared-prefix scores equal the
    naive scorer's within bfloat16's precision. bfloat16 keeps 8 bits of mantissa, so a
    different batch shape can flip a greedy token of this random model where float32's would
    not (measured: prompt tuning alone at batch 1, 2, 4 vs 5 changes one answer of five): one
    answer per group may differ between mixed and alone."""
    with_base = not group[0].startswith("prompt")
    alone = {name: _alone(lively_model_dir, adapters[name], "bfloat16") for name in group}
    base_texts = _alone(lively_model_dir, None, "bfloat16")[0]
    assert len({tuple(base_texts), *(tuple(alone[n][0]) for n in group)}) == 3  # every adapter changes answers
    shared = SharedBase.load(str(lively_model_dir), device="cpu", dtype="bfloat16")
    assert next(shared.loaded.model.parameters()).dtype == torch.bfloat16
    members = ([("base", None)] if with_base else []) + [(name, adapters[name]) for name in group]
    for vid, path in members:
        assert shared.add(vid, path) is None
    assert shared.mixing
    differ = 0
    for vid, _ in members:
        got = [g.text for g in shared.generate(vid, PROMPTS, max_new_tokens=5, batch_size=4)]
        expected = base_texts if vid == "base" else alone[vid][0]
        differ += sum(a != b for a, b in zip(got, expected))
        shared.release(vid)
    assert differ <= 1
    for name in group:
        fp32 = _alone(lively_model_dir, adapters[name], "float32")[1]
        bf16 = alone[name][1]
        diffs = [abs(a - b) for ra, rb in zip(bf16, fp32) for a, b in zip(ra, rb)]
        assert all(torch.isfinite(torch.tensor(diffs))) and max(diffs) < 0.5
        loaded = attach_adapter(load_base(str(lively_model_dir), device="cpu", dtype="bfloat16"), adapters[name])
        naive = score_continuations_naive(loaded.model, loaded.tokenizer, PROMPTS, CONTS, batch_size=3)
        assert max(abs(a - b) for ra, rb in zip(bf16, naive) for a, b in zip(ra, rb)) < 0.1


def test_run_refuses_an_unknown_eval_dtype(tmp_path):
    from typer.testing import CliRunner

    from peft_audit.cli import app

    config = tmp_path / "c.yaml"
    config.write_text("name: x\n")
    result = CliRunner().invoke(app, ["run", str(config), "--out", str(tmp_path / "run"), "--eval-dtype", "bf16"])
    assert result.exit_code != 0
    assert "--eval-dtype must be one of auto, float32, bfloat16, float16, got 'bf16'" in result.output
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("share_base", [True, False])
def test_sweep_evaluates_in_eval_dtype_and_trains_in_float32(tiny_model_dir, tmp_path, monkeypatch, share_base):
    import peft_audit.models.load as load
    from peft_audit.pipeline import run_sweep
    from peft_audit.store import Store
    from peft_audit.sweep.options import RunOptions

    loaded_in = []
    real = load.resolve_dtype
    monkeypatch.setattr(load, "resolve_dtype", lambda name, dev: loaded_in.append(real(name, dev)) or loaded_in[-1])
    cfg = SweepConfig.model_validate({
        "name": "bf16", "base_models": [str(tiny_model_dir)], "methods": [{"name": "lora", "lr": [5e-2, 1e-1]}],
        "algos": ["sft"], "device": "cpu", "eval_dtype": "bfloat16", "share_base": share_base,
        "training": {"max_steps": 1, "batch_size": 2, "max_seq_len": 48, "max_examples": 4},
        "safety": {"limit_per_category": 1, "max_new_tokens": 3, "batch_size": 4, "over_refusal": False},
        "fairness": {"per_cell": 1, "bootstrap": 20, "categories": ["age"]},
    })
    run_sweep(cfg, tmp_path / "run", RunOptions(in_process=True))
    with Store(tmp_path / "run" / "results.sqlite") as s:
        variants = s.variants()
        assert [v["status"] for v in variants] == ["done"] * 3
        assert s.get_meta("config")["eval_dtype"] == "bfloat16"
        assert {v["metadata"]["provenance"]["dtype"] for v in variants if v["method"] == "lora"} == {"torch.float32"}
    from peft_audit.report.card import build_card

    lora = next(v for v in variants if v["method"] == "lora")
    assert "| evaluated in | bfloat16 (`eval_dtype`) |" in build_card(tmp_path / "run", lora["id"], n_boot=50)
    # two trainings in float32, then the evaluation loads (one shared base, or one per variant)
    assert sorted(map(str, loaded_in)) == ["torch.bfloat16"] * (1 if share_base else 3) + ["torch.float32"] * 2
    with pytest.raises(ValueError, match="different evaluation settings"):
        run_sweep(cfg.model_copy(update={"eval_dtype": "auto"}), tmp_path / "run", RunOptions(in_process=True))
