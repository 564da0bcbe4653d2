"""SharedBase on its own: attaching members (a damaged adapter runs alone, a base beside
prompt-learning adapters is refused), answers handed to members that ask later, progress in
each member's own prompts, and the adapter state each member is evaluated with."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from peft_audit.models.generate import generate
from peft_audit.models.shared_base import SharedBase
from tiny_models import save_random_adapter

PROMPTS = ["hello there", "fox", "Who was forgetful in the story?", "sky", "Name a colour."]


@pytest.fixture(scope="module")
def ia3_adapters(lively_model_dir, tmp_path_factory) -> dict[str, Path]:
    from peft import IA3Config

    root = tmp_path_factory.mktemp("ia3")
    ia3 = IA3Config(task_type="CAUSAL_LM", target_modules=["k_proj", "v_proj", "down_proj"],
                    feedforward_modules=["down_proj"])
    return {k: save_random_adapter(lively_model_dir, root / f"ia3{k}", ia3, seed=5 + k) for k in range(2)}


@pytest.fixture(scope="module")
def adapters(tiny_model_dir, tmp_path_factory) -> dict[str, Path]:
    from peft import LoraConfig, PromptTuningConfig

    root = tmp_path_factory.mktemp("adapters")
    lora = LoraConfig(task_type="CAUSAL_LM", r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    out = {f"lora{k}": save_random_adapter(tiny_model_dir, root / f"lora{k}", lora, seed=k) for k in range(2)}
    out["prompt"] = save_random_adapter(tiny_model_dir, root / "prompt", PromptTuningConfig(task_type="CAUSAL_LM",
                                                                                         num_virtual_tokens=4), seed=9)
    bad = root / "damaged"
    bad.mkdir()
    (bad / "adapter_config.json").write_text((out["lora0"] / "adapter_config.json").read_text())
    (bad / "adapter_model.safetensors").write_bytes(b"not a safetensors file")
    out["damaged"] = bad
    return out


def _alone(model_dir: Path, adapter: Path | None) -> list:
    from peft_audit.models import attach_adapter, load_base

    loaded = load_base(str(model_dir), device="cpu")
    if adapter is not None:
        loaded = attach_adapter(loaded, adapter)
    return generate(loaded.model, loaded.tokenizer, PROMPTS, max_new_tokens=5, batch_size=4)


def test_members_get_their_own_answers_and_a_damaged_adapter_runs_alone(tiny_model_dir, adapters):
    shared = SharedBase.load(str(tiny_model_dir), device="cpu")
    assert shared.add("v0", adapters["lora0"]) is None
    assert "does not load beside the group's" in shared.add("bad", adapters["damaged"])
    assert shared.add("base", None) is None
    assert shared.add("v1", adapters["lora1"]) is None
    assert shared.live == ["v0", "base", "v1"] and shared.mixing
    seen: dict[str, list[int]] = {}
    answers = {}
    for vid in shared.live[:]:
        model = shared.model_for(vid)
        answers[vid] = shared.generate(vid, PROMPTS, max_new_tokens=5, batch_size=4,
                                       progress=seen.setdefault(vid, []).append)
        # the model a member's other benchmarks see is its own
        assert generate(model, shared.loaded.tokenizer, PROMPTS, max_new_tokens=5, batch_size=4) == answers[vid]
        shared.release(vid)
    assert answers["v0"] == _alone(tiny_model_dir, adapters["lora0"])
    assert answers["v1"] == _alone(tiny_model_dir, adapters["lora1"])
    assert answers["base"] == _alone(tiny_model_dir, None)
    assert len({tuple(g.text for g in a) for a in answers.values()}) == 3  # the adapters change the answers
    assert all(sum(n) == len(PROMPTS) for n in seen.values())  # each bar counts its own prompts


def test_ia3_members_and_the_base_share_batches(lively_model_dir, ia3_adapters):
    shared = SharedBase.load(str(lively_model_dir), device="cpu")
    assert shared.add("a", ia3_adapters[0]) is None
    assert shared.add("base", None) is None
    assert shared.add("b", ia3_adapters[1]) is None
    assert shared.mixing and shared.kind == "IA3"
    answers, shift = {}, {}
    for vid in ("b", "base", "a"):  # the first to ask generates for all three
        model = shared.model_for(vid)
        answers[vid] = shared.generate(vid, PROMPTS, max_new_tokens=5, batch_size=4)
        shift[vid] = shared.take_shift(vid)
        assert shared.take_shift(vid) == 0.0  # taken once
        assert generate(model, shared.loaded.tokenizer, PROMPTS, max_new_tokens=5, batch_size=4) == answers[vid]
        shared.release(vid)
    # the batch's seconds split by new tokens: "b" ran it and gave the others their shares
    tokens = {vid: sum(g.n_new_tokens for g in a) for vid, a in answers.items()}
    assert shift["b"] < 0 < shift["base"] and shift["a"] > 0
    assert shift["base"] + shift["a"] == pytest.approx(-shift["b"])
    assert shift["base"] / shift["a"] == pytest.approx(tokens["base"] / tokens["a"])
    assert answers["a"] == _alone(lively_model_dir, ia3_adapters[0])
    assert answers["b"] == _alone(lively_model_dir, ia3_adapters[1])
    assert answers["base"] == _alone(lively_model_dir, None)
    assert len({tuple(g.text for g in a) for a in answers.values()}) == 3  # IA3's scaling changes the answers


def test_a_prompt_learning_group_takes_no_lora_and_no_base(tiny_model_dir, adapters):
    shared = SharedBase.load(str(tiny_model_dir), device="cpu")
    assert shared.add("p", adapters["prompt"]) is None
    assert "LoRA or IA3 variants only" in shared.add("base", None)
    assert shared.add("l", adapters["lora0"]) is not None  # PEFT holds one adapter type per model
    assert shared.live == ["p"]


ITEMS = ["The doctor and the nurse argued. Who was rude?", "Two friends met at the station. Who was late?"]
CHOICES = [["The doctor", "The nurse", "Cannot be determined"], ["The first friend", "Unknown", "The second"]]


def _configs(kind: str) -> list:
    from peft import IA3Config, LoraConfig, PrefixTuningConfig, PromptEncoderConfig, PromptTuningConfig

    if kind == "lora":
        return [LoraConfig(task_type="CAUSAL_LM", r=4, target_modules=["q_proj", "v_proj", "down_proj"],
                           init_lora_weights=False)] * 2
    if kind == "ia3":
        return [IA3Config(task_type="CAUSAL_LM", target_modules=["k_proj", "v_proj", "down_proj"],
                          feedforward_modules=["down_proj"])] * 2
    if kind == "prompt-tuning":
        return [PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4)] * 2
    if kind == "p-tuning":
        return [PromptEncoderConfig(task_type="CAUSAL_LM", num_virtual_tokens=4, encoder_hidden_size=16)] * 2
    return [PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4)] * 2


@pytest.mark.parametrize("kind", ["lora", "ia3", "prompt-tuning", "p-tuning", "prefix-tuning"])
def test_members_log_probs_match_one_variant_at_a_time(kind, lively_model_dir, tmp_path):
    """Issue 13's bar for a shared base: each member's BBQ-style log-probs, scored after the
    group's mixed generation on the shared model, within 1e-4 of the variant loaded alone."""
    from peft_audit.models import attach_adapter, load_base
    from peft_audit.models.scoring import score_continuations

    dirs = [save_random_adapter(lively_model_dir, tmp_path / f"{kind}{k}", c, seed=20 + k) for k, c in enumerate(_configs(kind))]
    shared = SharedBase.load(str(lively_model_dir), device="cpu")
    members = {f"v{k}": d for k, d in enumerate(dirs)}
    if kind in ("lora", "ia3"):
        members["base"] = None
    for vid, d in members.items():
        assert shared.add(vid, d) is None
    assert shared.mixing
    scored = {}
    for vid in list(members):
        model = shared.model_for(vid)
        shared.generate(vid, PROMPTS, max_new_tokens=4, batch_size=4)
        scored[vid] = score_continuations(model, shared.loaded.tokenizer, ITEMS, CHOICES, batch_size=2)
        shared.release(vid)
    for vid, d in members.items():
        loaded = load_base(str(lively_model_dir), device="cpu")
        if d is not None:
            loaded = attach_adapter(loaded, d)
        alone = score_continuations(loaded.model, loaded.tokenizer, ITEMS, CHOICES, batch_size=2)
        diff = max(abs(a - b) for x, y in zip(scored[vid], alone) for a, b in zip(x, y))
        assert diff <= 1e-4, (vid, diff)
    # the adapters change the scores, so a member scored under another's adapter would show
    assert scored["v0"] != scored["v1"]


def test_a_timed_stage_counts_the_members_share_of_mixed_batches(monkeypatch):
    from peft_audit.benchmarks import base
    from peft_audit.benchmarks.base import VariantRun

    clock = iter([10.0, 12.0, 20.0, 20.5])  # each timed block's start and end
    monkeypatch.setattr(base.time, "perf_counter", lambda: next(clock))

    class Shared:  # a group member that ran a mixed batch and gave 5 s of it to the others
        def generate(self, vid, prompts, **_):
            return ["answer"] * len(prompts)

        def take_shift(self, vid):
            return -5.0

    from peft_audit.models.backends.transformers import TransformersModel

    run = VariantRun("v", None, TransformersModel(None, None, shared=Shared(), member="v"), set(), sink=None,
                     judges=lambda s: [], progress=lambda stage, total: (lambda n: None))
    with run.timed("generate"):
        assert run.generate(["p"]) == ["answer"]
    assert run.timings["generate"] == pytest.approx(2.0 - 5.0)  # its wall time less the others' shares
    with run.timed("judge"):  # the shift is spent: later stages are their wall time
        pass
    assert run.timings["judge"] == pytest.approx(0.5)
