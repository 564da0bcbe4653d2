"""Log-likelihood of continuations after a prompt: the ``loglikelihood`` request of
lm-evaluation-harness (Gao et al., 2023), made fast by sharing the prompt.

``score_continuations`` returns, for each prompt and each of its continuations, the sum of the
natural-log probabilities of the continuation's tokens given the prompt:

    logp(c | p) = sum_k log softmax(f(p + c[:k]))[c[k]]

**Shared-prefix scoring.** Multiple-choice benchmarks score several continuations after one
long prompt. Instead of one full forward pass per (prompt, continuation) row (what general
harnesses do, :func:`score_continuations_naive`), we

1. run each prompt once (batched, right-padded) through the decoder stack and keep its KV
   cache; only the hidden state of the last prompt token is projected onto the vocabulary, it
   scores each continuation's first token;
2. run only the continuation tokens on top of that cache: a prompt's continuations are packed
   into one row, a 4D block-diagonal causal mask lets each see the prompt and its own earlier
   tokens only (so the cache is never copied per continuation), explicit position ids restart
   every continuation right after its prompt (right padding never shifts a position), and
   vocabulary logits are computed only at scored positions.

Both passes gather the scored positions from the decoder's hidden states themselves and apply
the output head (:mod:`.forward`), instead of passing a tensor ``logits_to_keep``, whose
slicing changed within the transformers versions the project supports.

PEFT models: LoRA/IA3 layers live inside the base model, so the continuation pass through the
base model sees them. Prompt tuning and P-tuning prepend ``num_virtual_tokens`` embeddings in
``PeftModel.forward`` and prefix tuning puts them in the cache; both end up in the prompt's
cache: the prompt pass builds them as ``PeftModel.forward`` would (virtual embeddings, or the
prefix cache, with explicit positions), and the continuation pass runs on the base model's
decoder with the cache and an attention mask/positions that account for the virtual tokens
(PeftModel itself would prepend the virtual tokens again and drops ``position_ids``). Other
prompt-learning methods (multitask prompt tuning, CPT) fall back to naive scoring.

Tokenisation: the prompt and prompt+continuation are tokenised jointly and the continuation
tokens are what follows the prompt's tokens, so a leading space merges exactly as in the full
text. If tokenising the joint text changes the prompt's own tokens (a merge across the
boundary), the continuation is tokenised on its own (no special tokens) instead. Both scorers
use the same token ids, so they agree to float rounding (tested to 1e-4).

No truncation is applied: prompt + continuation must fit the model's context.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from .. import faults
from .batching import BatchSize, in_batches, scoring_batch_size
from .forward import (base_model, cache_kwargs, decoder, output_cache, peft_type, prompt_learning_config,
                      virtual_tokens, vocab_logits)

Progress = Callable[[int], None] | None

# Prompt-learning PEFT types whose virtual tokens are prepended as input embeddings (they
# appear in the model's outputs) or stored as a cache prefix (they do not).
_EMBEDDING_PROMPT_TYPES = {"PROMPT_TUNING", "P_TUNING"}
_CACHE_PROMPT_TYPES = {"PREFIX_TUNING"}


def encode_pairs(
    tokenizer, prompts: Sequence[str], continuations: Sequence[Sequence[str]], add_special_tokens: bool = True
) -> list[tuple[list[int], list[list[int]]]]:
    """Token ids ``(prompt_ids, [continuation_ids, ...])`` per prompt (see module docstring).

    ``add_special_tokens=False`` for text that already holds them (a rendered chat template
    starts with its BOS; the tokenizer would add a second one).

    Raises ValueError for a prompt with no tokens or a continuation with no tokens.
    """
    if len(prompts) != len(continuations):
        raise ValueError(f"{len(prompts)} prompts but {len(continuations)} continuation lists")
    out = []
    for i, (p, conts) in enumerate(zip(prompts, continuations)):
        p_ids = tokenizer(p, add_special_tokens=add_special_tokens)["input_ids"]
        if not p_ids:
            raise ValueError(f"prompt {i} has no tokens; give the model something to condition on")
        c_list = []
        for j, c in enumerate(conts):
            whole = tokenizer(p + c, add_special_tokens=add_special_tokens)["input_ids"]
            if whole[: len(p_ids)] == p_ids:
                c_ids = whole[len(p_ids):]
            else:  # a token merged across the boundary: keep the prompt's tokens fixed
                c_ids = tokenizer(c, add_special_tokens=False)["input_ids"]
            if not c_ids:
                raise ValueError(f"continuation {j} of prompt {i} ({c!r}) has no tokens")
            c_list.append(list(c_ids))
        out.append((list(p_ids), c_list))
    return out


def _peft_type(model) -> str | None:
    """The active adapter's PEFT type when it is a prompt-learning one, else None."""
    return peft_type(model) if prompt_learning_config(model) is not None else None


def _output_offset(model) -> int:
    """Positions the model's logits carry before the first input token (prompt/p-tuning)."""
    return virtual_tokens(model) if _peft_type(model) in _EMBEDDING_PROMPT_TYPES else 0


def supports_shared_prefix(model) -> bool:
    """False for prompt-learning PEFT methods whose forward we cannot split (then use naive)."""
    t = _peft_type(model)
    return t is None or t in _EMBEDDING_PROMPT_TYPES or t in _CACHE_PROMPT_TYPES


def _device(model) -> torch.device:
    return next(model.parameters()).device


def _pad_right(rows: Sequence[Sequence[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, mask) of right-padded rows; ``pad_id`` fills the padding."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
        mask[i, : len(r)] = 1
    return ids.to(device), mask.to(device)


def _pad_id(tokenizer) -> int:
    pid = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return int(pid) if pid is not None else 0


def _extent(model, encoded, order: list[int]) -> dict[str, int]:
    """The largest row's token counts, for :func:`~.batching.scoring_batch_size`: the longest
    prompt (virtual tokens included) and the most continuation tokens of one prompt."""
    return {"prompt_tokens": virtual_tokens(model) + max((len(encoded[i][0]) for i in order), default=0),
            "continuation_tokens": max((sum(map(len, encoded[i][1])) for i in order), default=0)}


def _length_order(encoded) -> list[int]:
    # Longest first, like lm-evaluation-harness: similar lengths share a batch (less padding)
    # and an out-of-memory error shows up on the first batch.
    return sorted(range(len(encoded)), key=lambda i: -(len(encoded[i][0]) + max(map(len, encoded[i][1]))))


def _prompt_pass(model, p_ids: torch.Tensor, p_mask: torch.Tensor):
    """The prompts' pass through the decoder stack: ``(hidden states, cache)``, the hidden
    states covering a prompt-tuning adapter's virtual tokens first (what ``PeftModel.forward``
    feeds the base model, written out so positions are explicit and no logits are computed).

    * no prompt-learning adapter: the prompts themselves;
    * prompt tuning / P-tuning: the virtual token embeddings, then the prompts' embeddings,
      positions ``0 .. nvt + L - 1``;
    * prefix tuning: the adapter's key/value prefix as the initial cache, positions after it.
    """
    body = decoder(model)
    t = _peft_type(model)
    if t is None:
        out = body(input_ids=p_ids, attention_mask=p_mask, use_cache=True)
        return out.last_hidden_state, output_cache(out)
    bs, width = p_ids.shape
    nvt = virtual_tokens(model)
    mask = torch.cat([p_mask.new_ones((bs, nvt)), p_mask], dim=1)
    if t in _EMBEDDING_PROMPT_TYPES:
        tokens = model.word_embeddings(p_ids)
        embeds = torch.cat([model.get_prompt(batch_size=bs).to(tokens.dtype), tokens], dim=1)
        positions = torch.arange(nvt + width, device=p_ids.device).expand(bs, -1)
        out = body(inputs_embeds=embeds, attention_mask=mask, position_ids=positions, use_cache=True)
    else:  # prefix tuning
        positions = torch.arange(nvt, nvt + width, device=p_ids.device).expand(bs, -1)
        out = body(input_ids=p_ids, attention_mask=mask, position_ids=positions, use_cache=True,
                   **cache_kwargs(body, model.get_prompt(batch_size=bs)))
    return out.last_hidden_state, output_cache(out)


@torch.no_grad()
def score_continuations(
    model,
    tokenizer,
    prompts: list[str],
    continuations: list[list[str]],
    *,
    batch_size: BatchSize = 16,
    progress: Progress = None,
    add_special_tokens: bool = True,
) -> list[list[float]]:
    """Sum of log-probabilities (nats, <= 0) of each continuation's tokens after its prompt.

    ``batch_size`` counts prompts per forward pass (a prompt's continuations share one row in
    the second pass), or is ``"auto"`` (sized from free memory, :mod:`.batching`); a batch that
    runs out of memory is retried at half the size. Returns one list per prompt, in input order. ``progress(n)`` is called with
    the number of prompts just finished. Falls back to :func:`score_continuations_naive` for
    prompt-learning PEFT methods other than prompt tuning, P-tuning and prefix tuning.
    """
    if not supports_shared_prefix(model):
        return score_continuations_naive(
            model, tokenizer, prompts, continuations, batch_size=batch_size, progress=progress,
            add_special_tokens=add_special_tokens,
        )
    encoded = encode_pairs(tokenizer, prompts, continuations, add_special_tokens)
    results: list[list[float]] = [[] for _ in encoded]
    device, pad = _device(model), _pad_id(tokenizer)
    base = base_model(model)
    out_off = _output_offset(model)
    order = _length_order(encoded)
    size = scoring_batch_size(model, batch_size, rows=len(encoded), device=device, **_extent(model, encoded, order))

    def run(idx: list[int]) -> torch.Tensor:
        batch = [encoded[i] for i in idx]
        p_ids, p_mask = _pad_right([b[0] for b in batch], pad, device)
        p_len = torch.tensor([len(b[0]) for b in batch], device=device)
        # 1. prompt pass: vocabulary logits only at each prompt's last real token (+ virtual tokens).
        hidden, cache = _prompt_pass(model, p_ids, p_mask)
        last = hidden[torch.arange(len(batch), device=device), p_len - 1 + out_off]  # (B, H)
        first_lp = torch.log_softmax(vocab_logits(model, last).float(), dim=-1)  # (B, V)
        n_virtual = cache.get_seq_length() - p_ids.shape[1]  # prefix/prompt-tuning tokens in the cache
        # 2. continuation pass: a prompt's continuations packed into one row on top of its
        # cache; a block-diagonal causal mask keeps them from seeing each other, so the cache
        # is never copied per continuation.
        # A continuation's last token is never fed: its output would predict past the end, and
        # no other continuation may attend to it. So each continuation contributes its first
        # len-1 tokens as inputs, whose outputs score tokens 2..len.
        seg_l = [[k for k, c in enumerate(b[1]) for _ in c[:-1]] for b in batch]
        off_l = [[j for c in b[1] for j in range(len(c) - 1)] for b in batch]
        c_ids, _ = _pad_right([[t for c in b[1] for t in c[:-1]] for b in batch], pad, device)
        tgt, _ = _pad_right([[t for c in b[1] for t in c[1:]] for b in batch], pad, device)
        seg, _ = _pad_right(seg_l, -1, device)
        off, _ = _pad_right(off_l, 0, device)
        first_of = [0]
        for b in batch:
            first_of.append(first_of[-1] + len(b[1]))
        row_base = torch.tensor(first_of[:-1], device=device)
        total = torch.zeros(first_of[-1], dtype=torch.float32, device=device)
        # first tokens are scored by the prompt pass
        first_tok = torch.tensor([c[0] for b in batch for c in b[1]], device=device)
        owner = torch.tensor([r for r, b in enumerate(batch) for _ in b[1]], device=device)
        total += first_lp[owner, first_tok]
        keep = seg >= 0
        if bool(keep.any()):
            n_tok = c_ids.shape[1]
            cache_ok = torch.cat([torch.ones_like(p_mask[:, :1]).expand(-1, n_virtual), p_mask], dim=1).bool()
            own = keep[:, :, None] & (seg[:, :, None] == seg[:, None, :]) & (off[:, None, :] <= off[:, :, None])
            allowed = torch.cat([cache_ok[:, None, :].expand(-1, n_tok, -1), own], dim=2)
            allowed[~keep] = True  # padding rows attend anywhere (their outputs are dropped): no NaN
            dtype = next(base.parameters()).dtype
            mask4d = torch.zeros(allowed.shape, dtype=dtype, device=device).masked_fill(
                ~allowed, torch.finfo(dtype).min
            )
            positions = (n_virtual + p_len).unsqueeze(1) + off
            body = decoder(model)
            out2 = body(input_ids=c_ids, attention_mask=mask4d[:, None], position_ids=positions, use_cache=True,
                        **cache_kwargs(body, cache))
            # (n_kept, V), row-major over keep
            lp = torch.log_softmax(vocab_logits(model, out2.last_hidden_state[keep]).float(), dim=-1)
            rk, ck = keep.nonzero(as_tuple=True)
            tok_lp = lp.gather(1, tgt[rk, ck].unsqueeze(1)).squeeze(1)
            total.index_add_(0, row_base[rk] + seg[rk, ck], tok_lp)
        return total

    for idx, total in in_batches(order, size, run, what="log-likelihood scoring"):
        k = 0
        for i in idx:
            n = len(encoded[i][1])
            results[i] = total[k : k + n].tolist()
            k += n
        if progress:
            progress(len(idx))
        faults.point("score.batch")
    return results


@torch.no_grad()
def score_continuations_naive(
    model,
    tokenizer,
    prompts: list[str],
    continuations: list[list[str]],
    *,
    batch_size: BatchSize = 16,
    progress: Progress = None,
    add_special_tokens: bool = True,
) -> list[list[float]]:
    """Reference scorer: each prompt+continuation is its own right-padded row, one plain
    forward pass with full vocabulary logits (what general-purpose harnesses do).

    Same token ids and return shape as :func:`score_continuations`; ``batch_size`` counts
    rows (or ``"auto"``). ``progress(n)`` reports prompts whose continuations are all finished.
    """
    encoded = encode_pairs(tokenizer, prompts, continuations, add_special_tokens)
    rows = [(i, j, p + c, len(p)) for i, (p, cs) in enumerate(encoded) for j, c in enumerate(cs)]
    rows.sort(key=lambda r: -len(r[2]))
    results = [[0.0] * len(cs) for _, cs in encoded]
    remaining = [len(cs) for _, cs in encoded]
    device, pad = _device(model), _pad_id(tokenizer)
    off = _output_offset(model)
    size = scoring_batch_size(model, batch_size, rows=len(rows), device=device, full_logits=True,
                              **_extent(model, encoded, _length_order(encoded)))

    def run(chunk: list) -> list[float]:
        ids, mask = _pad_right([r[2] for r in chunk], pad, device)
        logits = model(input_ids=ids, attention_mask=mask).logits
        lp = torch.log_softmax(logits.float(), dim=-1)
        sums = []
        for k, (_, _, seq, n_prompt) in enumerate(chunk):
            pos = torch.arange(n_prompt - 1, len(seq) - 1, device=device) + off
            sums.append(float(lp[k, pos, ids[k, n_prompt : len(seq)]].sum()))
        return sums

    for chunk, sums in in_batches(rows, size, run, what="log-likelihood scoring"):
        done = 0
        for (i, j, _, _), value in zip(chunk, sums):
            results[i][j] = value
            remaining[i] -= 1
            done += remaining[i] == 0
        if progress and done:
            progress(done)
    return results
