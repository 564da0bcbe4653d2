"""Several LoRA variants (and the base model) in one generation batch: PEFT's ``adapter_names``
through the project's own greedy loop must give each row the tokens its own variant gives
when it generates alone."""

import pytest
import torch

from peft_audit.models.generate import BASE_ROWS, chat_input_ids, generate, mixed_batch_reason
from tiny_models import make_lively_tiny_model, make_tiny_model, with_lora

PROMPTS = ["hello there", "What is two plus two? The answer is", "fox", "Who was forgetful in the story?", "sky",
           "Name a colour.", "Tell me about the moon and the sun."]
SYSTEM = "You are a careful assistant. Answer briefly and politely, in one sentence."


def _lora(rank: int, targets: list[str], seed: int):
    from peft import LoraConfig

    return LoraConfig(task_type="CAUSAL_LM", r=rank, lora_alpha=2 * rank, target_modules=targets,
                      init_lora_weights=False), seed


@pytest.fixture(scope="module")
def multi():
    """One base with three LoRA adapters of different ranks and targets, all with random
    (non-zero) weights, so each changes the answers."""

    model, tok = make_lively_tiny_model()
    specs = {"first": _lora(4, ["q_proj", "v_proj"], 1), "second": _lora(2, ["k_proj", "o_proj", "up_proj"], 2),
             "third": _lora(8, ["q_proj", "down_proj"], 3)}
    return with_lora(model, specs), tok


def _alone(model, tok, name, **kw):
    if name == BASE_ROWS:
        with model.disable_adapter():
            return generate(model, tok, PROMPTS, **kw)
    model.set_adapter(name)
    return generate(model, tok, PROMPTS, **kw)


@pytest.mark.parametrize("system_prompt", [None, SYSTEM])
def test_mixed_batch_gives_each_row_its_own_variants_answer(multi, system_prompt):
    model, tok = multi
    names = ["first", BASE_ROWS, "second", "third"]
    kw = dict(system_prompt=system_prompt, max_new_tokens=8, batch_size=64)
    alone = {n: _alone(model, tok, n, **kw) for n in names}
    assert len({tuple(g.text for g in gens) for gens in alone.values()}) == len(names)  # each adapter matters
    from peft_audit.models.generate import _LoraMatmulRows

    assert _LoraMatmulRows.usable(model)  # plain LoRA layers: their ranks are stacked, two matmuls a layer
    model.set_adapter("first")
    mixed = generate(model, tok, PROMPTS * len(names), adapter_names=[n for n in names for _ in PROMPTS], **kw)
    for k, n in enumerate(names):
        assert mixed[k * len(PROMPTS):(k + 1) * len(PROMPTS)] == alone[n], n


def test_lora_layers_peft_cannot_stack_mix_through_peft_s_own_forward():
    """Adapters with a bias on B are left to PEFT's ``adapter_names`` forward; their rows still
    get their own variant's tokens, as do the stacked adapters of ``multi``."""
    from peft import LoraConfig

    from peft_audit.models.generate import _LoraMatmulRows, _LoraRows, _row_adapters

    model, tok = make_lively_tiny_model()
    config = LoraConfig(task_type="CAUSAL_LM", r=4, target_modules=["q_proj", "down_proj"], lora_bias=True,
                        init_lora_weights=False)
    peft_model = with_lora(model, {"one": (config, 0), "two": (config, 1)})
    assert not _LoraMatmulRows.usable(peft_model)
    rows = _row_adapters(peft_model)
    assert isinstance(rows, _LoraRows)
    rows.close()
    names = ["one", BASE_ROWS, "two"]
    kw = dict(max_new_tokens=8, batch_size=64)
    alone = {n: _alone(peft_model, tok, n, **kw) for n in names}
    assert len({tuple(g.text for g in gens) for gens in alone.values()}) == len(names)
    mixed = generate(peft_model, tok, PROMPTS * len(names), adapter_names=[n for n in names for _ in PROMPTS], **kw)
    for k, n in enumerate(names):
        assert mixed[k * len(PROMPTS):(k + 1) * len(PROMPTS)] == alone[n], n


def test_mixed_rows_share_the_system_turn_per_adapter(multi):
    """With a system turn every row shares, the head is encoded once per adapter (not per row,
    and not under the wrong adapter): small batches that split the rows agree too."""
    model, tok = multi
    assert len(chat_input_ids(tok, PROMPTS[0], SYSTEM)) > 16
    names = [n for n in ["third", "first", BASE_ROWS] for _ in PROMPTS]
    kw = dict(system_prompt=SYSTEM, max_new_tokens=6)
    assert (generate(model, tok, PROMPTS * 3, adapter_names=names, batch_size=5, **kw)
            == generate(model, tok, PROMPTS * 3, adapter_names=names, batch_size=64, **kw))


def test_mixed_batches_refuse_what_they_cannot_mix(multi):
    model, tok = multi
    with pytest.raises(ValueError, match="no adapter named 'zz'"):
        generate(model, tok, PROMPTS[:1], adapter_names=["zz"])
    with pytest.raises(ValueError, match="2 names for 1 prompts"):
        generate(model, tok, PROMPTS[:1], adapter_names=["first", "second"])
    base, _ = make_tiny_model()
    assert "LoRA, IA3 or prompt-learning" in mixed_batch_reason(base, {BASE_ROWS})
    assert mixed_batch_reason(model, {"first", "second", BASE_ROWS}) is None


def test_dora_is_not_mixed():
    from peft import LoraConfig, get_peft_model

    model, _ = make_tiny_model()
    peft_model = get_peft_model(model, LoraConfig(task_type="CAUSAL_LM", r=2, target_modules=["q_proj"], use_dora=True))
    assert "not a plain LoRA" in mixed_batch_reason(peft_model, {"default"})


def _prompt_learning(kind: str, seed: int, tokens: int = 6):
    from peft import PrefixTuningConfig, PromptEncoderConfig, PromptTuningConfig

    torch.manual_seed(seed)
    if kind == "prompt-tuning":
        return PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=tokens)
    if kind == "p-tuning":
        return PromptEncoderConfig(task_type="CAUSAL_LM", num_virtual_tokens=tokens, encoder_hidden_size=16)
    return PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=tokens)


def _multi_prompt(kinds: list[str]):
    """One base with a prompt-learning adapter per entry of ``kinds`` (random, scaled up so each
    changes the answers), named ``p0``, ``p1``, ..."""
    from peft import get_peft_model

    model, tok = make_lively_tiny_model()
    peft_model = None
    for k, kind in enumerate(kinds):
        config = _prompt_learning(kind, seed=10 + k)
        if peft_model is None:
            peft_model = get_peft_model(model, config, adapter_name=f"p{k}")
        else:
            peft_model.add_adapter(f"p{k}", config)
    with torch.no_grad():
        for n, p in peft_model.named_parameters():
            if "prompt_encoder" in n:
                p.mul_(4.0)
    peft_model.eval()
    return peft_model, tok


@pytest.mark.parametrize("kinds", [["prompt-tuning"] * 3, ["p-tuning"] * 2, ["prefix-tuning"] * 2])
@pytest.mark.parametrize("system_prompt", [None, SYSTEM])
def test_prompt_learning_rows_mix_with_their_own_virtual_tokens(kinds, system_prompt):
    model, tok = _multi_prompt(kinds)
    names = [f"p{k}" for k in range(len(kinds))]
    kw = dict(system_prompt=system_prompt, max_new_tokens=6, batch_size=64)
    alone = {n: _alone(model, tok, n, **kw) for n in names}
    assert len({tuple(g.text for g in gens) for gens in alone.values()}) == len(names)
    model.set_adapter("p0")
    mixed = generate(model, tok, PROMPTS * len(names), adapter_names=[n for n in names for _ in PROMPTS], **kw)
    for k, n in enumerate(names):
        assert mixed[k * len(PROMPTS):(k + 1) * len(PROMPTS)] == alone[n], n
    assert model.active_adapter == "p0"  # the caller's adapter is active again


def test_prompt_learning_mixes_refused_where_heads_differ():
    from peft import get_peft_model

    model, tok = _multi_prompt(["prompt-tuning", "prompt-tuning"])
    assert mixed_batch_reason(model, {"p0", "p1"}) is None
    assert "base-model rows" in mixed_batch_reason(model, {"p0", BASE_ROWS})
    model.add_adapter("p2", _prompt_learning("prompt-tuning", seed=3, tokens=4))
    assert "different numbers of virtual tokens" in mixed_batch_reason(model, {"p0", "p2"})
    base, _ = make_tiny_model()
    from peft import IA3Config

    ia3 = get_peft_model(base, IA3Config(task_type="CAUSAL_LM", target_modules=["k_proj", "v_proj", "down_proj"],
                                         feedforward_modules=["down_proj"]))
    assert "base-model rows cannot share a batch with prompt-learning" not in (mixed_batch_reason(ia3, {"default",
                                                                                                     BASE_ROWS}) or "")


def _multi_ia3():
    """One base with three IA3 adapters of different targets (one scales no feed-forward layer),
    their vectors drawn at random around 1 so each changes the answers."""
    from peft import IA3Config, get_peft_model

    model, tok = make_lively_tiny_model()
    specs = {"one": (["k_proj", "v_proj", "down_proj"], ["down_proj"]), "two": (["v_proj", "up_proj"], ["up_proj"]),
             "three": (["k_proj", "q_proj"], [])}
    peft_model = None
    for name, (targets, ff) in specs.items():
        config = IA3Config(task_type="CAUSAL_LM", target_modules=targets, feedforward_modules=ff)
        if peft_model is None:
            peft_model = get_peft_model(model, config, adapter_name=name)
        else:
            peft_model.add_adapter(name, config)
    torch.manual_seed(7)
    with torch.no_grad():
        for n, p in peft_model.named_parameters():
            if "ia3_l" in n:
                p.copy_(1 + 0.8 * torch.randn_like(p))
    peft_model.eval()
    return peft_model, tok


@pytest.mark.parametrize("system_prompt", [None, SYSTEM])
def test_ia3_rows_mix_with_each_rows_own_vectors(system_prompt):
    model, tok = _multi_ia3()
    names = ["one", BASE_ROWS, "two", "three"]
    kw = dict(system_prompt=system_prompt, max_new_tokens=8, batch_size=64)
    alone = {n: _alone(model, tok, n, **kw) for n in names}
    assert len({tuple(g.text for g in gens) for gens in alone.values()}) == len(names)
    model.set_adapter("two")
    assert mixed_batch_reason(model, set(names)) is None
    mixed = generate(model, tok, PROMPTS * len(names), adapter_names=[n for n in names for _ in PROMPTS], **kw)
    for k, n in enumerate(names):
        assert mixed[k * len(PROMPTS):(k + 1) * len(PROMPTS)] == alone[n], n
    # the layers are as the caller left them: adapter "two" on, and the hooks gone
    assert model.active_adapter == "two" and generate(model, tok, PROMPTS, **kw) == alone["two"]
    with model.disable_adapter():
        assert generate(model, tok, PROMPTS, **kw) == alone[BASE_ROWS]


def test_ia3_mixes_refused_where_rows_cannot_be_scaled():
    model, _ = _multi_ia3()
    model.base_model.model.model.layers[0].self_attn.k_proj.merge(adapter_names=["one"])
    assert "merged" in mixed_batch_reason(model, {"one", "two"})
    from peft import IA3Config, get_peft_model

    base, _ = make_tiny_model()
    saving = get_peft_model(base, IA3Config(task_type="CAUSAL_LM", target_modules=["k_proj", "v_proj"],
                                            feedforward_modules=[], modules_to_save=["lm_head"]))
    assert "modules_to_save" in mixed_batch_reason(saving, {"default"})
