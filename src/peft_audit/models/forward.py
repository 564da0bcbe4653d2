"""The parts of a causal LM's forward pass the scorers and the generator call directly, written
so they mean the same on every transformers version the project declares.

Why by hand: ``logits_to_keep`` with a tensor index is sliced differently across transformers
5.x (``slice_logits_to_keep``; with 5.17 a ``[B, 1]`` index gave ``[B, B, 1, V]`` logits, and
the shared-prefix scorer then indexed out of bounds on CUDA). Instead, the decoder stack runs on
its own (``get_decoder()``, the ``*Model`` inside every ``*ForCausalLM``), the positions that
are scored are gathered from its hidden states here, and only those go through the output
head (:func:`vocab_logits`), so no version's slicing rule is relied on.

The cache argument and output were renamed within the range (``past_key_values`` ->
``cache``): :func:`cache_kwargs` and :func:`output_cache` read whichever the model has.
"""

from __future__ import annotations

import functools
import inspect

import torch


def base_model(model):
    """The transformers model under a PEFT wrapper (LoRA/IA3 layers live inside it)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def peft_type(model) -> str | None:
    """The PEFT type of ``model``'s active adapter (``"LORA"``, ``"PROMPT_TUNING"``, ...), None
    for a model without one. The one reader of it for scoring, generation and vLLM."""
    config = getattr(model, "active_peft_config", None)
    return None if config is None else getattr(config.peft_type, "value", str(config.peft_type))


def prompt_learning_config(model):
    """The active PEFT config when it is a prompt-learning one (virtual tokens or a prefix); None
    otherwise."""
    config = getattr(model, "active_peft_config", None)
    return config if config is not None and getattr(config, "is_prompt_learning", False) else None


def virtual_tokens(model) -> int:
    """Positions a prompt-learning adapter puts in front of every row (0 for other models)."""
    config = prompt_learning_config(model)
    return int(config.num_virtual_tokens) if config is not None else 0


@functools.cache
def forward_params(cls: type) -> frozenset[str]:
    """The argument names of ``cls.forward`` (read once per class: ``inspect.signature`` is slow
    enough to show in a decoding loop)."""
    return frozenset(inspect.signature(cls.forward).parameters)


def cache_kwargs(module, cache) -> dict:
    """``{name: cache}`` under the name ``module.forward`` takes it (``cache`` on recent
    transformers, ``past_key_values`` before the rename); for a PEFT wrapper, whose forward
    takes ``**kwargs``, the name the model under it takes."""
    name = "cache" if "cache" in forward_params(type(base_model(module))) else "past_key_values"
    return {name: cache}


def padded_positions(mask: torch.Tensor) -> torch.Tensor:
    """``generate``'s position ids for a left-padded attention mask: ones counted so far, minus
    one (0 at the padding)."""
    return (mask.cumsum(dim=1) - 1).masked_fill(mask == 0, 0)


def output_cache(out):
    """The cache a forward pass returned, under either name."""
    cache = getattr(out, "cache", None)
    return cache if cache is not None else getattr(out, "past_key_values", None)


def decoder(model):
    """The decoder stack (embeddings, layers, final norm) of a causal LM or its PEFT wrapper:
    its ``last_hidden_state`` is what the output head projects."""
    return base_model(model).get_decoder()


def vocab_logits(model, hidden: torch.Tensor) -> torch.Tensor:
    """Vocabulary logits of ``hidden`` (any leading shape, hidden size last) as the model's own
    ``forward`` computes them: the output head, then the final logit soft-capping of models that
    use it (Gemma 2: ``cap * tanh(logits / cap)``) and the logit scale of those that scale (Cohere)."""
    base = base_model(model)
    logits = base.get_output_embeddings()(hidden)
    config = base.config
    config = getattr(config, "get_text_config", lambda: config)()
    scale = getattr(config, "logit_scale", None)
    if isinstance(scale, (int, float)) and scale != 1:
        logits = logits * scale
    cap = getattr(config, "final_logit_softcapping", None)
    if cap:
        logits = torch.tanh(logits / cap) * cap
    return logits
