"""Batched greedy generation with the chat template (base models and every PEFT adapter).

Contract (the ``generate_until`` of lm-evaluation-harness, specialised to chat prompts):

* each prompt becomes ``[system?, user]`` messages rendered by the tokenizer's chat template
  with the generation prompt appended (tokenizers without a template get the plain text);
* prompts are sorted by token length (longest first, so an out-of-memory error surfaces in the
  first batch) and batched; each batch is **left**-padded so every row's last prompt token sits
  at the same position and new tokens are appended directly after it;
* decoding is greedy (``do_sample=False``) and a row stops at an end-of-sequence token (the
  tokenizer's EOS plus any listed in the model's generation config) or at ``max_new_tokens``;
* results come back in input order.

PEFT prompt-learning adapters inject their virtual tokens **here**, not through
``PeftModel.generate``: with transformers 5 the generation cache argument was renamed
(``past_key_values`` -> ``cache``) and peft 0.21's ``prepare_inputs_for_generation`` no longer
sees it, so a prefix-tuning prefix is silently dropped during generation (and prompt tuning
re-injects its virtual tokens at every decoding step). So:

* prompt tuning / P-tuning: ``inputs_embeds = [virtual token embeddings; prompt embeddings]`` with
  the attention mask extended by ones, passed to the base model's ``generate``;
* prefix tuning: the adapter's key/value prefix is passed as the initial cache; the input ids
  are preceded by ``num_virtual_tokens`` placeholder ids (the positions the cache already
  covers, which ``generate`` skips) so new tokens get the same positions as in training;
* every other adapter (LoRA, IA3, ...) works inside the layers: ``model.generate`` as usual.

``tests/safety/test_safety_generate.py`` checks each path against a cache-free greedy loop over
the PEFT model's own ``forward``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from .. import faults


@dataclass(frozen=True)
class Generation:
    """A model's answer: decoded text (special tokens removed, stripped) and the number of new
    tokens produced before the stop token (EOS and padding are not counted)."""

    text: str
    n_new_tokens: int


def chat_input_ids(tokenizer, prompt: str, system_prompt: str | None = None) -> list[int]:
    """Token ids of ``prompt`` as a single user turn (optionally after a system turn), ending with
    the assistant generation prompt. A template that rejects the system role (e.g. Gemma) gets
    the system text prepended to the user turn instead."""
    if not getattr(tokenizer, "chat_template", None):
        text = f"{system_prompt}\n\n{prompt}" if system_prompt else prompt
        return list(tokenizer(text)["input_ids"])
    messages = [{"role": "user", "content": prompt}]
    if system_prompt:
        messages.insert(0, {"role": "system", "content": system_prompt})
    try:
        enc = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=True)
    except Exception:  # jinja TemplateError raised by templates without a system role
        if not system_prompt:
            raise
        merged = [{"role": "user", "content": f"{system_prompt}\n\n{prompt}"}]
        enc = tokenizer.apply_chat_template(merged, add_generation_prompt=True, tokenize=True, return_dict=True)
    return list(enc["input_ids"])


def _stop_ids(model, tokenizer) -> list[int]:
    ids: list[int] = []
    for src in (tokenizer.eos_token_id, getattr(getattr(model, "generation_config", None), "eos_token_id", None)):
        if src is None:
            continue
        ids.extend(src if isinstance(src, (list, tuple)) else [src])
    return sorted(set(int(i) for i in ids))


def _left_pad(rows: list[list[int]], pad_id: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, width - len(r):] = torch.tensor(r, dtype=torch.long)
        mask[i, width - len(r):] = 1
    return ids.to(device), mask.to(device)


def generate(
    model,
    tokenizer,
    prompts: list[str],
    *,
    system_prompt: str | None = None,
    max_new_tokens: int = 256,
    batch_size: int = 8,
    progress: Callable[[int], None] | None = None,
) -> list[Generation]:
    """Greedy chat completions for ``prompts`` (see module docstring), in input order.

    ``progress`` is called with the number of prompts finished after each batch. An empty
    ``prompts`` list returns ``[]`` without touching the model.
    """
    encoded = [chat_input_ids(tokenizer, p, system_prompt) for p in prompts]
    return generate_from_ids(
        model, tokenizer, encoded, max_new_tokens=max_new_tokens, batch_size=batch_size, progress=progress
    )


def generate_from_ids(
    model,
    tokenizer,
    encoded: list[list[int]],
    *,
    max_new_tokens: int = 256,
    batch_size: int = 8,
    progress: Callable[[int], None] | None = None,
) -> list[Generation]:
    """:func:`generate` for already tokenised inputs (e.g. a guard model's own chat format)."""
    if batch_size < 1 or max_new_tokens < 1:
        raise ValueError(f"batch_size and max_new_tokens must be >= 1, got {batch_size}, {max_new_tokens}")
    if not encoded:
        return []
    if any(not row for row in encoded):
        raise ValueError("cannot generate from an empty input (0 prompt tokens)")
    stop = _stop_ids(model, tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (stop[0] if stop else 0)
    device = next(model.parameters()).device
    order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]))
    results: list[Generation | None] = [None] * len(encoded)
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        input_ids, attention_mask = _left_pad([encoded[i] for i in idx], pad_id, device)
        gen_kwargs = dict(max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=stop or None, pad_token_id=pad_id)
        with torch.inference_mode():
            new_tokens = _generate_batch(model, input_ids, attention_mask, gen_kwargs).tolist()
        for row, i in zip(new_tokens, idx):
            cut = next((k for k, t in enumerate(row) if t in stop), len(row))
            text = tokenizer.decode(row[:cut], skip_special_tokens=True).strip()
            results[i] = Generation(text, cut)
        if progress is not None:
            progress(len(idx))
        faults.point("generate.batch")
    return results  # type: ignore[return-value]


def _prompt_learning_config(model):
    """The active PEFT config if ``model`` is a PeftModel with a prompt-learning adapter."""
    cfg = getattr(model, "active_peft_config", None)
    return cfg if cfg is not None and getattr(cfg, "is_prompt_learning", False) else None


def _generate_batch(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, gen_kwargs: dict) -> torch.Tensor:
    """New token ids ``[batch, <= max_new_tokens]`` for one left-padded batch (module docstring)."""
    cfg = _prompt_learning_config(model)
    if cfg is None:
        out = model.generate(input_ids=input_ids, attention_mask=attention_mask, **gen_kwargs)
        return out[:, input_ids.shape[1]:]
    from peft import PeftType

    base = model.get_base_model()
    bs, nvt = input_ids.shape[0], cfg.num_virtual_tokens
    prefix_mask = torch.ones((bs, nvt), dtype=attention_mask.dtype, device=attention_mask.device)
    mask = torch.cat([prefix_mask, attention_mask], dim=1)
    if cfg.peft_type == PeftType.PREFIX_TUNING:
        placeholders = torch.full((bs, nvt), gen_kwargs["pad_token_id"], dtype=input_ids.dtype, device=input_ids.device)
        ids = torch.cat([placeholders, input_ids], dim=1)
        out = base.generate(input_ids=ids, attention_mask=mask, cache=model.get_prompt(batch_size=bs), **gen_kwargs)
        return out[:, ids.shape[1]:]
    if cfg.peft_type not in (PeftType.PROMPT_TUNING, PeftType.P_TUNING):
        raise NotImplementedError(f"generation with a {cfg.peft_type} adapter is not supported")
    embeds = model.word_embeddings(input_ids)
    prompts = model.get_prompt(batch_size=bs).to(embeds.dtype)
    # with inputs_embeds only, generate() returns just the new tokens
    return base.generate(inputs_embeds=torch.cat([prompts, embeds], dim=1), attention_mask=mask, **gen_kwargs)
