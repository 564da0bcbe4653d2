"""Batched greedy generation: order, left padding, EOS, and PEFT adapters of every method."""

import pytest
import torch

from peft_audit.config import METHODS
from peft_audit.models.generate import Generation, chat_input_ids, generate
from tiny_models import make_tiny_model

PROMPTS = ["hello there", "What is two plus two? The answer is", "fox", "Who was forgetful in the story?", "sky"]


def _lively_tiny_model(seed=0):
    """A tiny random model with larger weights, so its greedy output depends on the prompt."""
    model, tok = make_tiny_model(seed=seed)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    return model, tok


@pytest.fixture(scope="module")
def lively():
    return _lively_tiny_model()


def test_batched_equals_one_by_one_in_input_order(lively):
    model, tok = lively
    batched = generate(model, tok, PROMPTS, max_new_tokens=6, batch_size=3)
    single = [generate(model, tok, [p], max_new_tokens=6, batch_size=1)[0] for p in PROMPTS]
    assert batched == single
    assert len({g.text for g in batched}) > 1  # the outputs are prompt-dependent
    assert all(0 <= g.n_new_tokens <= 6 for g in batched)


def test_progress_counts_prompts(lively):
    model, tok = lively
    seen = []
    generate(model, tok, PROMPTS, max_new_tokens=2, batch_size=2, progress=seen.append)
    assert seen == [2, 2, 1]


def test_empty_prompts():
    assert generate(object(), object(), []) == []


class _ScriptedModel(torch.nn.Module):
    """Returns fixed new tokens; records what generate() received."""

    def __init__(self, new_tokens):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.new_tokens = new_tokens
        self.calls = []

    def generate(self, input_ids, attention_mask, max_new_tokens, do_sample, eos_token_id, pad_token_id):
        self.calls.append(dict(input_ids=input_ids, attention_mask=attention_mask, do_sample=do_sample,
                               eos=eos_token_id))
        new = torch.tensor([self.new_tokens] * input_ids.shape[0])
        return torch.cat([input_ids, new], dim=1)


def test_left_padding_greedy_and_stop_on_eos():
    _, tok = make_tiny_model()
    hi = tok.encode("hello", add_special_tokens=False)
    eos, pad = tok.eos_token_id, tok.pad_token_id
    model = _ScriptedModel(hi + [eos] + hi + [pad])
    out = generate(model, tok, ["a", "a much longer prompt here"], max_new_tokens=8, batch_size=2)
    assert out == [Generation("hello", len(hi))] * 2  # cut at EOS; nothing after it decoded
    call = model.calls[0]
    assert call["do_sample"] is False and eos in call["eos"]
    ids, mask = call["input_ids"], call["attention_mask"]
    short = len(chat_input_ids(tok, "a"))
    # rows are length-sorted (longest first); the short row is padded on the LEFT
    assert mask[1].tolist() == [0] * (ids.shape[1] - short) + [1] * short
    assert ids[1, : ids.shape[1] - short].eq(pad).all()
    assert mask[0].all()


def test_system_prompt_is_rendered():
    _, tok = make_tiny_model()
    with_sys = tok.decode(chat_input_ids(tok, "hi", "Be careful."))
    assert "system" in with_sys and "Be careful." in with_sys and with_sys.index("Be careful.") < with_sys.index("hi")


def _peft_config(method):
    from peft import (IA3Config, LoraConfig, PrefixTuningConfig, PromptEncoderConfig, PromptTuningConfig)

    return {
        "lora": lambda: LoraConfig(task_type="CAUSAL_LM", r=4, target_modules=["q_proj", "v_proj"]),
        "ia3": lambda: IA3Config(task_type="CAUSAL_LM", target_modules=["v_proj", "down_proj"],
                                 feedforward_modules=["down_proj"]),
        "prompt-tuning": lambda: PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4),
        "p-tuning": lambda: PromptEncoderConfig(task_type="CAUSAL_LM", num_virtual_tokens=4, encoder_hidden_size=16),
        "prefix-tuning": lambda: PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4),
    }[method]()


def _greedy_reference(model, tok, prompt, max_new_tokens):
    """Cache-free greedy decoding through the model's own forward (one prompt, no padding)."""
    ids, new = chat_input_ids(tok, prompt), []
    for _ in range(max_new_tokens):
        full = torch.tensor([ids + new])
        with torch.no_grad():
            logits = model(input_ids=full, attention_mask=torch.ones_like(full)).logits
        t = int(logits[0, -1].argmax())
        if t == tok.eos_token_id:
            break
        new.append(t)
    return tok.decode(new, skip_special_tokens=True).strip()


def _random_adapter(method, seed):
    from peft import get_peft_model

    model, _ = _lively_tiny_model()
    peft_model = get_peft_model(model, _peft_config(method))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in peft_model.parameters():
            if p.requires_grad:
                p.copy_(torch.randn(p.shape, generator=g) * 2.0)
    return peft_model.eval()


@pytest.mark.parametrize("method", METHODS)
def test_adapter_of_every_method_is_applied_during_generation(method, lively):
    """Batched, left-padded generation equals a cache-free greedy loop over the PEFT model's
    forward, and differs from the base model and between two adapters: for prompt-learning
    methods this proves the virtual tokens / prefix are injected while generating."""
    base_model, tok = lively
    base = generate(base_model, tok, PROMPTS, max_new_tokens=6, batch_size=3)
    a, b = _random_adapter(method, 1), _random_adapter(method, 2)
    out_a = generate(a, tok, PROMPTS, max_new_tokens=6, batch_size=3)
    out_b = generate(b, tok, PROMPTS, max_new_tokens=6, batch_size=3)
    assert [g.text for g in out_a] == [_greedy_reference(a, tok, p, 6) for p in PROMPTS]
    assert out_a != base and out_a != out_b
