"""The lean Llama forward (``models/lean_decode.py``) returns transformers' hidden states and
cache bit for bit, for prompts (last position only, padding skipped) and decoding steps, with
and without adapters; generation through it gives the tokens transformers' forward gives; it
applies only to Llama decoders it can repeat, checked against the installed transformers."""

import pytest
import torch

import peft_audit.models.generate as generation
from peft_audit.models import lean_decode as ld
from peft_audit.models.forward import base_model, cache_kwargs, output_cache, padded_positions
from peft_audit.models.generate import chat_input_ids, generate
from peft_audit.models.packed_weights import packed_linears
from tiny_models import ADAPTER_CASES, make_lively_tiny_model, make_tiny_model, with_and_without

CPU = torch.device("cpu")
PROMPTS = ["hello there", "What is two plus two? The answer is", "fox", "Who was forgetful in the story?", "sky",
           "Name a colour.", "Tell me about the moon and the sun.", "Why?"]
SYSTEM = "You are a careful assistant. Answer briefly and politely, in one sentence."


def _run(model, tok, lean: bool, n: int = 6) -> list[torch.Tensor]:
    """One bucketed prefill of ``PROMPTS`` (rows of different lengths, so the cache has padding)
    and ``n`` greedy decoding steps, through the lean step or transformers' decoder: the first
    tokens, each step's last hidden states, and every cached key and value at the end."""
    rows = sorted((chat_input_ids(tok, p, SYSTEM) for p in PROMPTS), key=len, reverse=True)
    tokens = generation._NextTokens(base_model(model), CPU)
    assert tokens.lean is not None
    if not lean:
        tokens.lean, tokens.decoder = None, base_model(model).get_decoder()
    with packed_linears(model), torch.inference_mode():
        shared = generation._shared_prefix_len(rows)
        ids, cache, mask = generation._bucketed_first_step(
            model, rows[0][:shared], [r[shared:] for r in rows], tok.pad_token_id, CPU, None, None, tokens, room=n)
        seen = [ids.clone()]
        for _ in range(n):
            mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], dim=1)
            out = tokens.decoder(input_ids=ids[:, None], attention_mask=mask,
                                 position_ids=mask.sum(dim=1, keepdim=True) - 1, use_cache=True,
                                 **cache_kwargs(tokens.decoder, cache))
            seen.append(out.last_hidden_state.clone())
            ids = tokens(out)
    # the cache where the mask lets attention read it (padding is zeros where the lean step skips it)
    keep = mask[:, None, :, None]
    return seen + [layer.keys * keep for layer in cache.layers] + [layer.values * keep for layer in cache.layers]


CASES = {"base": make_lively_tiny_model, "eager attention": make_lively_tiny_model,
         "LoRA": ADAPTER_CASES["mixed LoRA"][0], "IA3": ADAPTER_CASES["mixed IA3"][0],
         "prefix tuning": ADAPTER_CASES["prefix tuning"][0], "prompt tuning": ADAPTER_CASES["prompt tuning"][0]}


@pytest.mark.parametrize("case", list(CASES))
def test_prefill_and_steps_equal_transformers_forward_bit_for_bit(case):
    model, tok = CASES[case]()
    if case == "eager attention":
        base_model(model).config._attn_implementation = "eager"
    reference, got = _run(model, tok, lean=False), _run(model, tok, lean=True)
    assert len(got) == len(reference)
    assert all(torch.equal(a, b) for a, b in zip(reference, got))
    assert not torch.equal(reference[1], reference[6])


@pytest.mark.parametrize("skip_padding", [False, True])
@pytest.mark.parametrize("case", ["base", "LoRA", "IA3"])
def test_the_last_position_alone_equals_transformers(case, skip_padding):
    """A prompt's forward for its last position only (the last layer's output projection and
    MLP on that position alone), with or without the padding's positions, gives the hidden
    state of the whole forward and its cache where attention reads it."""
    model, tok = CASES[case]()
    causal = base_model(model)
    rows = [tok.encode("hello there, how are you today?"), tok.encode("the moon")]
    ids, mask = generation._left_pad(rows, tok.pad_token_id, CPU)
    assert not mask.all()  # the second row is padded
    positions = padded_positions(mask)
    with packed_linears(model), torch.inference_mode():
        whole = causal.get_decoder()(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True)
        last = ld.lean_decoder(causal, CPU)(input_ids=ids, attention_mask=mask, position_ids=positions, last_only=True,
                                            skip_padding=skip_padding)
    assert last.last_hidden_state.shape[1] == 1
    assert torch.equal(last.last_hidden_state, whole.last_hidden_state[:, -1:])
    keep = mask[:, None, :, None]
    for a, b in zip(output_cache(whole).layers, last.cache.layers):
        assert torch.equal(a.keys * keep, b.keys * keep) and torch.equal(a.values * keep, b.values * keep)
        assert torch.equal(a.keys, b.keys) != skip_padding  # skipped padding: zeros in the cache


@pytest.mark.parametrize("screened", [True, False])
@pytest.mark.parametrize("case", list(ADAPTER_CASES))
def test_generation_through_the_lean_step_equals_transformers(case, screened, monkeypatch):
    make, names = ADAPTER_CASES[case]
    model, tok = make()
    prompts = PROMPTS if names is None else PROMPTS * len(names)
    kw = dict(system_prompt=SYSTEM, max_new_tokens=10, batch_size=64,
              adapter_names=None if names is None else [n for n in names for _ in PROMPTS])
    if not screened:
        monkeypatch.setattr(generation, "screened_head", lambda causal, device: None)
    lean, plain = with_and_without(monkeypatch, generation, "lean_decoder", lambda: generate(model, tok, prompts, **kw))
    assert lean == plain
    assert len({g.text for g in lean}) > 2


def test_where_it_does_not_apply():
    model, _ = make_lively_tiny_model()
    assert ld.lean_decoder(model, CPU) is not None
    assert ld.lean_decoder(model, torch.device("cuda")) is None
    for family in ("mistral", "qwen2", "gemma"):
        assert ld.lean_decoder(make_tiny_model(family)[0], CPU) is None
    layer = model.model.layers[1]
    handle = layer.mlp.register_forward_hook(lambda module, args, output: output * 2)
    assert ld.lean_decoder(model, CPU) is None  # a hook it would skip
    handle.remove()
    layer.self_attn.forward = layer.self_attn.forward  # a replaced forward, as accelerate's hooks do
    assert ld.lean_decoder(model, CPU) is None
    del layer.self_attn.forward
    assert ld.lean_decoder(model, CPU) is not None
    model.train()
    assert ld.lean_decoder(model, CPU) is None  # attention dropout
    model.eval()
    model.model.layers[0].self_attn.train()
    assert ld.lean_decoder(model, CPU) is None


def test_with_autograd_on_the_step_is_transformers_own():
    """In-place sums would break autograd: with gradients on, the step calls transformers' forward."""
    model, tok = make_lively_tiny_model()
    lean = ld.lean_decoder(model, CPU)
    ids = torch.tensor([tok.encode("hello there")])
    mask = torch.ones_like(ids)
    positions = torch.arange(ids.shape[1])[None]
    with torch.enable_grad():
        out = lean(input_ids=ids, attention_mask=mask, position_ids=positions, cache=None)
        assert out.last_hidden_state.requires_grad
        out.last_hidden_state.sum().backward()
    assert model.model.layers[0].mlp.up_proj.weight.grad is not None


def test_a_transformers_forward_it_does_not_repeat_turns_it_off(monkeypatch, recwarn):
    """Checked once per decoder against the installed transformers: a release whose Llama
    forward computes something else (here: an MLP that doubles its output) turns the lean step
    off with a notice, instead of decoding differently."""
    from transformers.models.llama import modeling_llama

    from peft_audit.sweep.logs import Notice

    calls = []
    real = ld._agrees
    monkeypatch.setattr(ld, "_agrees", lambda decoder: calls.append(decoder) or real(decoder))
    model, _ = make_lively_tiny_model()
    assert ld.lean_decoder(model, CPU) is not None
    assert ld.lean_decoder(model, CPU) is not None
    assert len(calls) == 1  # the verdict is kept per decoder
    mlp_forward = modeling_llama.LlamaMLP.forward
    monkeypatch.setattr(modeling_llama.LlamaMLP, "forward", lambda self, x: 2 * mlp_forward(self, x))
    other, _ = make_lively_tiny_model()
    assert ld.lean_decoder(other, CPU) is None
    assert any(issubclass(w.category, Notice) and "lean decoding step" in str(w.message) for w in recwarn)
    monkeypatch.setattr(modeling_llama.LlamaMLP, "forward", mlp_forward)
    assert real(other.model)
    # an API the step cannot call (say, a renamed argument) is a "no" too, not an error
    monkeypatch.setattr(ld, "_cache_argument", lambda: "renamed")
    assert not real(other.model)


@pytest.mark.parametrize("family", ["mistral", "qwen2"])
def test_other_families_decode_through_transformers_with_the_screened_head(family, monkeypatch):
    """Where the lean step does not apply but the screened head does, prompts and steps run
    transformers' decoder without its head; the tokens are those of the whole model's logits."""
    model, tok = make_lively_tiny_model(family=family)
    assert ld.lean_decoder(model, CPU) is None
    tokens = generation._NextTokens(model, CPU)
    assert tokens.screened is not None and tokens.decoder is model.get_decoder()
    kw = dict(system_prompt=SYSTEM, max_new_tokens=10, batch_size=64)
    screened = generate(model, tok, PROMPTS, **kw)
    monkeypatch.setattr(generation, "screened_head", lambda causal, device: None)
    assert generation._NextTokens(model, CPU).decoder is None
    assert generate(model, tok, PROMPTS, **kw) == screened
    assert len({g.text for g in screened}) > 2
