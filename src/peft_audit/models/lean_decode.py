"""The forward pass of a Llama decoder during greedy generation, without transformers'
per-module machinery and bit for bit the same as transformers' own.

Why: a greedy decoding step on a CPU multiplies a few dozen rows by each weight, so what is not
a matrix product shows: on this project's 2-core CPU, one decoding stream of the bundled model
(68 rows, one thread) spends 73% of a step in the projections, 18% in attention and the rest in
small kernels and Python. Of that rest, transformers' forward adds its own: decorators and
keyword plumbing around every decoder layer, attention and MLP module, an attention interface
looked up per layer, new tensors for every residual sum. This step walks the same layers itself.
It calls the same modules (embedding, norms, projections, rotary embedding) and the same
functions (``create_causal_mask``, ``apply_rotary_pos_emb``, the configured attention
implementation) in the same order, with the same arguments. The residual sums and the MLP's
activation and product are computed in place, which rounds the same way as a new tensor.

For a prompt, whose logits are wanted at its last position only, it also leaves out what only
the other positions' outputs need: the projections, norms and MLPs skip the left padding, and
the last layer's output projection and MLP run for the last position alone (each row of a
matrix product is the same whatever the other rows, as with any batch size).

In alternating runs of the quickstart's 135 prompts, generation ran ~2% faster with the lean
decoding steps and ~4% with the lean prompt forward too, with identical answers
(``perf/generation_throughput.py`` measures the whole loop); the tests compare hidden states
and caches bit for bit with transformers' forward, with and without adapters. As transformers
may change its Llama forward in any release, the step is checked against the installed
version's once per decoder (:func:`_verified`) and stays off where they differ.

It applies to transformers' ``LlamaForCausalLM`` only (SmolLM2, TinyLlama, Llama 2 and 3 and
the test suite's tiny models), on a CPU, with SDPA or eager attention, in eval mode with
autograd off, and with no hooks or replaced ``forward`` on the modules it bypasses
(the decoder, its layers, their attention and MLP modules). The projections are called as
modules, so LoRA and IA3 layers, their mixed-batch row hooks (:mod:`.generate`) and the packed
weights (:mod:`.packed_weights`) work unchanged. Anything else runs through transformers'
forward.
"""

from __future__ import annotations

import copy
import functools
import inspect
import sys
import threading
import weakref
from dataclasses import dataclass

import torch

from .forward import output_cache, padded_positions

#: The causal LM, decoder, layer and module classes whose forward :class:`LeanDecoder` repeats.
_CLASSES = {
    "causal": "LlamaForCausalLM", "decoder": "LlamaModel", "layer": "LlamaDecoderLayer",
    "attention": "LlamaAttention", "mlp": "LlamaMLP",
}
_MODULE = "transformers.models.llama.modeling_llama"
#: Attention implementations the step calls as transformers does (the others take extra
#: arguments from the layer's keyword plumbing, e.g. position ids for packed sequences).
ATTENTION = frozenset({"sdpa", "eager"})


@dataclass
class LeanOutput:
    """What a step returns: the final norm's hidden states ``[B, T, H]`` (``[B, 1, H]`` for the
    last position only) and the cache, as transformers' decoder output names them."""

    last_hidden_state: torch.Tensor
    cache: object


def _plain(module: torch.nn.Module, cls: str) -> bool:
    """``module`` is transformers' ``cls`` from :data:`_MODULE`, with its class's forward and no hooks."""
    return (type(module).__name__ == cls and type(module).__module__ == _MODULE and "forward" not in vars(module)
            and not module._forward_hooks and not module._forward_pre_hooks
            and not getattr(module, "_forward_hooks_with_kwargs", None))


def _global_hooks() -> bool:
    from torch.nn.modules import module as nn_module

    return bool(nn_module._global_forward_hooks or nn_module._global_forward_pre_hooks)


def lean_decoder(causal, device: torch.device) -> "LeanDecoder | None":
    """The lean decoding step for ``causal`` (a transformers causal LM, not a PEFT wrapper), or
    None where it does not apply (see the module docstring)."""
    if device.type != "cpu" or not _plain(causal, _CLASSES["causal"]):
        return None
    decoder = causal.get_decoder()
    if (not _plain(decoder, _CLASSES["decoder"]) or _global_hooks()
            or decoder.config._attn_implementation not in ATTENTION
            or any(module.training for module in causal.modules())):
        return None
    for layer in decoder.layers:
        if not (_plain(layer, _CLASSES["layer"]) and _plain(layer.self_attn, _CLASSES["attention"])
                and _plain(layer.mlp, _CLASSES["mlp"])):
            return None
    if len(decoder.layers) != decoder.config.num_hidden_layers or not _verified(decoder):
        return None
    return LeanDecoder(decoder)


_verdicts: "weakref.WeakKeyDictionary[torch.nn.Module, bool]" = weakref.WeakKeyDictionary()
_verdicts_lock = threading.Lock()


def _verified(decoder) -> bool:
    """Whether the lean step repeats the installed transformers' forward for ``decoder``'s
    configuration: checked once per decoder (:func:`_agrees`), so a transformers release that
    changes the Llama forward turns the lean step off instead of computing something else."""
    with _verdicts_lock:
        verdict = _verdicts.get(decoder)
        if verdict is None:
            verdict = _verdicts[decoder] = _agrees(decoder)
            if not verdict:
                from ..sweep.logs import notice

                notice("lean decoding step: it does not reproduce this transformers version's Llama forward; "
                       "decoding through transformers' own")
    return verdict


def _agrees(decoder) -> bool:
    """The lean step against transformers' forward on a small random decoder of ``decoder``'s
    class and configuration (attention implementation, rotary scaling, biases, activation, GQA
    ratio; 2 layers, 16-wide heads): a padded prompt's last position (padding skipped), then
    two decoding steps, within float-summation tolerance (the test suite checks bit equality).
    The model's own modules are not used, so its hooks and adapters play no part."""
    config = copy.deepcopy(decoder.config)
    groups = max(1, config.num_attention_heads // config.num_key_value_heads)
    config.num_key_value_heads, config.num_attention_heads, config.head_dim = 2, 2 * groups, 16
    config.hidden_size, config.intermediate_size = 32 * groups, 64
    config.num_hidden_layers, config.vocab_size = 2, 64
    dtype = next(decoder.parameters()).dtype
    with torch.random.fork_rng(devices=[]), torch.inference_mode():
        torch.manual_seed(0)
        try:
            small = type(decoder)(config).to(dtype).eval()
            return _same_outputs(small, LeanDecoder(small))
        except Exception:  # noqa: BLE001 -- a configuration or a transformers API the step cannot take: not verified
            return False


def _same_outputs(small, lean: "LeanDecoder") -> bool:
    """:func:`_agrees`'s comparison on the small decoder ``small``."""
    vocab = small.config.vocab_size
    ids = torch.randint(0, vocab, (2, 6))
    mask = torch.ones_like(ids)
    mask[1, :2] = 0
    positions = padded_positions(mask)
    got = lean(ids, mask, positions, last_only=True, skip_padding=True)
    out = small(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True)
    pairs = [(got.last_hidden_state, out.last_hidden_state[:, -1:])]
    theirs = output_cache(out)
    for step in range(2):
        mask = torch.cat([mask, mask.new_ones((2, 1))], dim=1)
        ids, positions = (ids[:, -1:] + step + 1) % vocab, mask.sum(dim=1, keepdim=True) - 1
        pairs.append((lean(ids, mask, positions, got.cache).last_hidden_state,
                      small(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True,
                            **{_cache_argument(): theirs}).last_hidden_state))
    return all(a.shape == b.shape and torch.allclose(a.float(), b.float(), rtol=1e-4, atol=1e-5) for a, b in pairs)


@functools.cache
def _cache_argument() -> str:
    """The name ``create_causal_mask`` takes the cache under (``cache`` since transformers' rename)."""
    from transformers.masking_utils import create_causal_mask

    return "cache" if "cache" in inspect.signature(create_causal_mask).parameters else "past_key_values"


def _in_place_silu(act: torch.nn.Module) -> bool:
    """Whether ``act`` is SiLU as ``torch.nn.functional.silu`` computes it (then applied in place)."""
    return "forward" not in vars(act) and (type(act) is torch.nn.SiLU or (
        type(act).__name__ == "SiLUActivation" and type(act).__module__ == "transformers.activations"))


class LeanDecoder:
    """The forward of a Llama decoder (:func:`lean_decoder` says where it applies), called as
    :mod:`.generate` calls transformers' decoder for a prompt or a decoding step
    (``input_ids, attention_mask, position_ids, cache``) and returning the same
    ``last_hidden_state``."""

    def __init__(self, decoder):
        from transformers.masking_utils import create_causal_mask
        from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

        self.decoder = decoder
        llama = sys.modules[_MODULE]
        self._rotary = llama.apply_rotary_pos_emb
        self._create_mask = create_causal_mask
        self._attention = ALL_ATTENTION_FUNCTIONS.get_interface(decoder.config._attn_implementation,
                                                                llama.eager_attention_forward)
        self._silu = [_in_place_silu(layer.mlp.act_fn) for layer in decoder.layers]

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor,
                cache=None, use_cache: bool = True, last_only: bool = False,
                skip_padding: bool = False) -> LeanOutput:
        """The step for ``input_ids`` ``[B, T]`` after what ``cache`` holds (a new
        ``DynamicCache`` when None, as transformers makes one).

        ``last_only``: only the last position's hidden state is wanted (a prompt's forward whose
        logits are kept for its last token, ``logits_to_keep=1``), so the last layer's output
        projection and MLP run on that position alone; every position's keys and values still
        enter the cache. ``skip_padding`` (with ``last_only``; for models whose layers treat
        every position alike, i.e. not a mixed-adapter batch whose hooks give each batch row its
        own adapter): the projections, norms and MLPs run on the tokens only, not on the left
        padding of ``attention_mask``; attention gets them back in their places, with zeros at
        the (masked) padding, whose keys and values are then zeros in the cache too."""
        decoder = self.decoder
        if cache is None:
            from transformers import DynamicCache

            cache = DynamicCache(config=decoder.config)
        if torch.is_grad_enabled():  # in-place sums would break autograd: transformers' forward
            out = decoder(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                          use_cache=use_cache, **{_cache_argument(): cache})
            hidden = out.last_hidden_state
            return LeanOutput(hidden[:, -1:] if last_only else hidden, cache)
        hidden = decoder.embed_tokens(input_ids)
        batch, length = hidden.shape[:2]
        mask = self._create_mask(config=decoder.config, inputs_embeds=hidden, attention_mask=attention_mask,
                                 position_ids=position_ids, **{_cache_argument(): cache})
        cos, sin = decoder.rotary_emb(hidden, position_ids=position_ids)
        rows = None  # with padding skipped: the flat indices of the token positions in [B * T]
        if skip_padding and last_only and length > 1:
            tokens = attention_mask[:, -length:] != 0
            if not bool(tokens.all()):
                rows = tokens.reshape(-1).nonzero().squeeze(1)
                lasts = tokens.sum(dim=1).cumsum(0) - 1  # each row's last token among ``rows``
                hidden, cos, sin = (t.reshape(batch * length, -1).index_select(0, rows) for t in (hidden, cos, sin))
        last_layer = decoder.layers[-1]
        for layer, silu in zip(decoder.layers, self._silu):
            # LlamaDecoderLayer.forward and LlamaAttention.forward, inlined
            attn = layer.self_attn
            x = layer.input_layernorm(hidden)
            if rows is None:
                shape = (batch, length, -1, attn.head_dim)
                q = attn.q_proj(x).view(shape).transpose(1, 2)
                k = attn.k_proj(x).view(shape).transpose(1, 2)
                v = attn.v_proj(x).view(shape).transpose(1, 2)
                q, k = self._rotary(q, k, cos, sin)
            else:  # [tokens, heads, head_dim]; cos and sin [tokens, head_dim] broadcast over the heads
                shape = (rows.numel(), -1, attn.head_dim)
                q, k = self._rotary(attn.q_proj(x).view(shape), attn.k_proj(x).view(shape), cos, sin)
                q, k, v = (_in_place(t, rows, batch, length) for t in (q, k, attn.v_proj(x).view(shape)))
            k, v = cache.update(k, v, attn.layer_idx)
            out, _ = self._attention(attn, q, k, v, mask, dropout=0.0, scaling=attn.scaling)
            if last_only and layer is last_layer and length > 1:  # what only the other positions' outputs need
                last = hidden[:, -1:] if rows is None else hidden.index_select(0, lasts)[:, None]
                out, hidden, length, rows = out[:, -1:], last.contiguous(), 1, None
            out = out.reshape(batch, length, -1) if rows is None else out.reshape(batch * length, -1).index_select(0, rows)
            hidden += attn.o_proj(out.contiguous())
            # LlamaMLP.forward: down(act(gate(x)) * up(x))
            mlp = layer.mlp
            x = layer.post_attention_layernorm(hidden)
            gate = mlp.gate_proj(x)
            gate = torch.nn.functional.silu(gate, inplace=True) if silu else mlp.act_fn(gate)
            hidden += mlp.down_proj(gate.mul_(mlp.up_proj(x)))
        return LeanOutput(decoder.norm(hidden), cache)

    __call__ = forward


def _in_place(t: torch.Tensor, rows: torch.Tensor, batch: int, length: int) -> torch.Tensor:
    """``t`` ``[tokens, heads, head_dim]`` back at positions ``rows`` of ``[batch * length]``
    (zeros elsewhere), laid out ``[batch, heads, length, head_dim]`` as transformers' attention
    gets a projection (a transposed view of a ``[batch, length, heads, head_dim]`` tensor)."""
    full = t.new_zeros((batch * length,) + tuple(t.shape[1:]))
    full.index_copy_(0, rows, t)
    return full.view(batch, length, *t.shape[1:]).transpose(1, 2)
