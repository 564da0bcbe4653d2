"""Log-likelihood of continuations after a prompt: the ``loglikelihood`` request of
lm-evaluation-harness (Gao et al., 2023), made fast by feeding every shared prefix once.

``score_continuations`` returns, for each prompt and each of its continuations, the sum of the
natural-log probabilities of the continuation's tokens given the prompt:

    logp(c | p) = sum_k log softmax(f(p + c[:k]))[c[k]]

**Shared-prefix scoring: one prefix tree per row.** Multiple-choice benchmarks score several
continuations after one long prompt, and their prompts share long prefixes too: BBQ asks two
questions about each context, and its disambiguated context is the ambiguous one plus a
sentence, so four prompts start with the same context (the quickstart's 144 BBQ prompts hold
6,180 tokens but 2,883 distinct prefixes). Instead of one full forward pass per (prompt, continuation)
row (what general harnesses do, :func:`score_continuations_naive`), we

1. sort the items by prompt tokens and group neighbours whose prompts share at least
   :data:`MIN_SHARED_PREFIX` tokens, up to :data:`TREE_NODE_CAP` tokens per group
   (:func:`prefix_groups`);
2. lay each group out as the token trie of its prompts and options (:class:`_Tree`): every
   shared prefix, a prompt asked twice, or options starting with the same tokens (" The man" /
   " The woman") is one node, fed once. An option's last token is scored, never fed;
3. run each batch of trees in one forward pass with a 4D attention mask that lets every node
   attend to its ancestors and itself only, at position = its depth, so each node's hidden
   state is exactly the one it has in its own sequence (the tree attention of SpecInfer, Miao et
   al., 2024, arXiv:2305.09781, used here for prefix sharing as in SGLang's RadixAttention, Zheng
   et al., 2024, arXiv:2312.07104);
4. compute vocabulary logits only at nodes whose output scores a token, once per node.

The decoder's hidden states are gathered and the output head is applied here (:mod:`.forward`),
instead of passing a tensor ``logits_to_keep``, whose slicing changed within the transformers
versions the project supports. A 4D mask is used by every layer, so a model with sliding-window
layers whose rows reach past the window is scored naively (its own masks apply there).

PEFT models: LoRA/IA3 layers live inside the base model, so the pass through the decoder sees
them. Prompt tuning and P-tuning prepend ``num_virtual_tokens`` embeddings in
``PeftModel.forward``, and prefix tuning puts a key/value prefix in the cache; the pass builds
them as ``PeftModel.forward`` would (the virtual embeddings first, causal among themselves, or
the prefix cache), every node sees them, and positions count them (PeftModel itself drops
``position_ids`` and builds its own mask). Other prompt-learning methods (multitask prompt
tuning, CPT) fall back to naive scoring.

Tokenisation: the prompt and prompt+continuation are tokenised jointly and the continuation
tokens are what follows the prompt's tokens, so a leading space merges exactly as in the full
text. If tokenising the joint text changes the prompt's own tokens (a merge across the
boundary), the continuation is tokenised on its own (no special tokens) instead. Both scorers
use the same token ids, so they agree to float rounding (tested to 1e-4).

No truncation is applied: prompt + continuation must fit the model's context.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from .. import faults
from .batching import AUTO, BatchSize, in_batches, scoring_batch_size
from .forward import (base_model, cache_kwargs, decoder, peft_type, prompt_learning_config,
                      virtual_tokens, vocab_logits)
from .packed_weights import packed_linears

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


#: Fewest prompt tokens an item must share with the item before it (in token order) to join its
#: prefix tree: fewer saves less than the wider row and its attention cost.
MIN_SHARED_PREFIX = 8
#: Most nodes in one prefix tree (one batch row): attention over a row grows with its square.
TREE_NODE_CAP = 256


def _lcp(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    for k in range(n):
        if a[k] != b[k]:
            return k
    return n


def _own_nodes(pair: tuple[list[int], list[list[int]]]) -> int:
    """Tree nodes an item needs on its own: its prompt, then each option but its last token."""
    p, cs = pair
    return len(p) + sum(len(c) - 1 for c in cs)


def _group_width(encoded, group: list[int]) -> int:
    """Nodes of a group's tree (its items in token order) counting shared prompt prefixes once;
    options that share tokens are counted apart, so this is an upper bound."""
    return sum(_own_nodes(encoded[i]) - (_lcp(encoded[prev][0], encoded[i][0]) if k else 0)
               for k, (prev, i) in enumerate(zip([group[0], *group], group)))


def prefix_groups(encoded: Sequence[tuple[list[int], list[list[int]]]]) -> list[list[int]]:
    """Item indices grouped into prefix trees, one batch row each (see the module docstring).

    Items are sorted by their prompt tokens; an item joins the tree of the item before it when
    their prompts share at least :data:`MIN_SHARED_PREFIX` tokens and the tree stays within
    :data:`TREE_NODE_CAP` nodes (:func:`_group_width`). Trees come widest first, so rows of
    similar width share a batch (less padding), and an out-of-memory error shows up on the
    first batch."""
    order = sorted(range(len(encoded)), key=lambda i: encoded[i][0])
    groups: list[list[int]] = []
    widths: list[int] = []
    for i in order:
        own = _own_nodes(encoded[i])
        if groups:
            shared = _lcp(encoded[groups[-1][-1]][0], encoded[i][0])
            if shared >= MIN_SHARED_PREFIX and widths[-1] + own - shared <= TREE_NODE_CAP:
                groups[-1].append(i)
                widths[-1] += own - shared
                continue
        groups.append([i])
        widths.append(own)
    return [groups[k] for k in sorted(range(len(groups)), key=lambda k: -widths[k])]


class _Tree:
    """One batch row: the token trie of a group's prompts and options, nodes in insertion order
    (a parent before its children). ``targets``: ``(node, token, slot)``, the node whose output
    scores ``token`` of the option stored at ``slot`` of the flat results."""

    def __init__(self, items: Sequence[tuple[int, tuple[list[int], list[list[int]]]]]):
        self.tokens: list[int] = []
        self.parent: list[int] = []
        self.depth: list[int] = []
        self.targets: list[tuple[int, int, int]] = []
        children: dict[tuple[int, int], int] = {}

        def child(parent: int, token: int) -> int:
            node = children.get((parent, token))
            if node is None:
                node = children[(parent, token)] = len(self.tokens)
                self.tokens.append(token)
                self.parent.append(parent)
                self.depth.append(0 if parent < 0 else self.depth[parent] + 1)
            return node

        for slot, (prompt, options) in items:
            last = -1
            for token in prompt:
                last = child(last, token)
            for j, option in enumerate(options):
                node = last
                for k, token in enumerate(option):
                    self.targets.append((node, token, slot + j))
                    if k + 1 < len(option):  # an option's last token is scored, never fed
                        node = child(node, token)

    def ancestors(self) -> torch.Tensor:
        """``[n, n]`` bool: row i marks node i and its ancestors, the tokens it may attend to
        (built in numpy: a row copy there is ~15x cheaper than a tensor op, 0.08 vs 1.3 ms for
        a 256-node tree)."""
        n = len(self.tokens)
        seen = np.zeros((n, n), dtype=bool)
        for i, parent in enumerate(self.parent):
            if parent >= 0:
                seen[i] = seen[parent]
            seen[i, i] = True
        return torch.from_numpy(seen)


def _attention_window(model) -> int | None:
    """The smallest sliding attention window among the model's layers, None when every layer
    attends to all earlier tokens (a tree's 4D mask is used by every layer, so rows longer than
    a window would not see what the model's own masks give it)."""
    config = base_model(model).config
    config = getattr(config, "get_text_config", lambda: config)()
    window = getattr(config, "sliding_window", None)
    if not window:
        return None
    types = getattr(config, "layer_types", None)
    if types is not None:
        return int(window) if any("sliding" in str(t) for t in types) else None
    return int(window) if getattr(config, "use_sliding_window", True) else None


def tree_extent(model, encoded, groups: list[list[int]]) -> dict[str, int]:
    """The widest row's sizes for :func:`~.batching.scoring_batch_size`: tree nodes (virtual
    tokens included) and scored positions (an upper bound: one per scored token)."""
    width = max((_group_width(encoded, g) for g in groups), default=0)
    scored = max((sum(sum(map(len, encoded[i][1])) for i in g) for g in groups), default=0)
    return {"prompt_tokens": virtual_tokens(model) + width, "continuation_tokens": 0, "scored_positions": scored}


def _inputs(model, trees: list[_Tree], pad: int, device) -> tuple[dict, int]:
    """The decoder's keyword arguments for a batch of trees, right-padded to the widest, and the
    offset of the first tree node in its outputs (virtual tokens come first):

    * every node attends to its ancestors and itself (a 4D additive mask) at position = depth;
    * prompt tuning / P-tuning: the virtual token embeddings first (causal among themselves,
      seen by every node), nodes at positions after them, as ``PeftModel.forward`` feeds them;
    * prefix tuning: the adapter's key/value prefix as the initial cache, seen by every node.
    Padding nodes attend to themselves only (no fully masked row, so no NaN); their outputs are
    never read."""
    bs, width = len(trees), max(len(t.tokens) for t in trees)
    ids = torch.full((bs, width), pad, dtype=torch.long)
    positions = torch.zeros((bs, width), dtype=torch.long)
    allowed = torch.eye(width, dtype=torch.bool).repeat(bs, 1, 1)
    for b, tree in enumerate(trees):
        n = len(tree.tokens)
        ids[b, :n] = torch.tensor(tree.tokens)
        positions[b, :n] = torch.tensor(tree.depth)
        allowed[b, :n, :n] = tree.ancestors()
    ids, positions, allowed = ids.to(device), positions.to(device), allowed.to(device)
    body = decoder(model)
    kind, nvt = _peft_type(model), virtual_tokens(model)
    if kind is None:
        mask, offset, kwargs = allowed, 0, {"input_ids": ids, "position_ids": positions}
    elif kind in _EMBEDDING_PROMPT_TYPES:
        mask = torch.zeros((bs, nvt + width, nvt + width), dtype=torch.bool, device=device)
        mask[:, :nvt, :nvt] = torch.ones((nvt, nvt), dtype=torch.bool, device=device).tril()
        mask[:, nvt:, :nvt] = True
        mask[:, nvt:, nvt:] = allowed
        tokens = model.word_embeddings(ids)
        embeds = torch.cat([model.get_prompt(batch_size=bs).to(tokens.dtype), tokens], dim=1)
        first = torch.arange(nvt, device=device).expand(bs, -1)
        offset, kwargs = nvt, {"inputs_embeds": embeds, "position_ids": torch.cat([first, positions + nvt], dim=1)}
    else:  # prefix tuning
        mask = torch.cat([torch.ones((bs, width, nvt), dtype=torch.bool, device=device), allowed], dim=2)
        offset = 0
        kwargs = {"input_ids": ids, "position_ids": positions + nvt,
                  **cache_kwargs(body, model.get_prompt(batch_size=bs))}
    dtype = next(base_model(model).parameters()).dtype
    additive = torch.zeros(mask.shape, dtype=dtype, device=device).masked_fill_(~mask, torch.finfo(dtype).min)
    return {**kwargs, "attention_mask": additive[:, None]}, offset


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

    ``batch_size`` counts prompts per forward pass (on average: prompts that share a prefix
    share a row, and a batch holds whole rows), or is ``"auto"`` (rows sized from free memory,
    :mod:`.batching`); a batch that runs out of memory is retried at half the size. Returns one
    list per prompt, in input order. ``progress(n)`` is called with the number of prompts just
    finished. Falls back to :func:`score_continuations_naive` for prompt-learning PEFT methods
    other than prompt tuning, P-tuning and prefix tuning, and for models with sliding-window
    attention layers when a row would reach past the window.
    """
    encoded = encode_pairs(tokenizer, prompts, continuations, add_special_tokens)
    if not encoded:
        return []
    window = _attention_window(model)
    past_window = window is not None and max(virtual_tokens(model) + len(p) + max(map(len, cs))
                                             for p, cs in encoded) > window
    if past_window or not supports_shared_prefix(model):
        return score_continuations_naive(
            model, tokenizer, prompts, continuations, batch_size=batch_size, progress=progress,
            add_special_tokens=add_special_tokens,
        )
    slots = [0]
    for _, options in encoded:
        slots.append(slots[-1] + len(options))
    device, pad = _device(model), _pad_id(tokenizer)
    groups = prefix_groups(encoded)
    if batch_size == AUTO:
        size = scoring_batch_size(model, AUTO, rows=len(groups), device=device, **tree_extent(model, encoded, groups))
    else:  # prompts per batch -> rows per batch, at the average prompts per row
        prompts_per_batch = scoring_batch_size(model, batch_size, prompt_tokens=0, continuation_tokens=0, rows=0)
        size = max(1, round(prompts_per_batch * len(groups) / len(encoded)))

    def run(chunk: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        trees = [_Tree([(slots[i], encoded[i]) for i in group]) for group in chunk]
        kwargs, offset = _inputs(model, trees, pad, device)
        hidden = decoder(model)(use_cache=False, **kwargs).last_hidden_state
        width = hidden.shape[1]
        rows = [(b * width + offset + node, token, slot)
                for b, tree in enumerate(trees) for node, token, slot in tree.targets]
        if not rows:  # only items without options in this batch: nothing to score
            return torch.zeros(0, dtype=torch.long), torch.zeros(0)
        where, tokens, slot = (torch.tensor(col, device=device) for col in zip(*rows))
        # vocabulary logits once per scored node (options share nodes: " The man" / " The woman")
        nodes, inverse = torch.unique(where, return_inverse=True)
        lp = torch.log_softmax(vocab_logits(model, hidden.reshape(-1, hidden.shape[-1])[nodes]).float(), dim=-1)
        return slot, lp[inverse, tokens]

    totals = torch.zeros(slots[-1], dtype=torch.float64)
    with packed_linears(model):
        for chunk, (slot, token_lp) in in_batches(groups, size, run, what="log-likelihood scoring"):
            totals.index_add_(0, slot.cpu(), token_lp.cpu().double())
            if progress:
                progress(sum(len(group) for group in chunk))
            faults.point("score.batch")
    flat = totals.tolist()
    return [flat[slots[i]:slots[i + 1]] for i in range(len(encoded))]


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
    if not rows:
        return [[] for _ in encoded]
    rows.sort(key=lambda r: -len(r[2]))
    results = [[0.0] * len(cs) for _, cs in encoded]
    remaining = [len(cs) for _, cs in encoded]
    device, pad = _device(model), _pad_id(tokenizer)
    off = _output_offset(model)
    longest = max(len(r[2]) for r in rows)
    size = scoring_batch_size(model, batch_size, rows=len(rows), device=device, full_logits=True,
                              prompt_tokens=virtual_tokens(model) + longest, continuation_tokens=0)

    def run(chunk: list) -> list[float]:
        ids, mask = _pad_right([r[2] for r in chunk], pad, device)
        logits = model(input_ids=ids, attention_mask=mask).logits
        lp = torch.log_softmax(logits.float(), dim=-1)
        sums = []
        for k, (_, _, seq, n_prompt) in enumerate(chunk):
            pos = torch.arange(n_prompt - 1, len(seq) - 1, device=device) + off
            sums.append(float(lp[k, pos, ids[k, n_prompt : len(seq)]].sum()))
        return sums

    with packed_linears(model):
        for chunk, sums in in_batches(rows, size, run, what="log-likelihood scoring"):
            done = 0
            for (i, j, _, _), value in zip(chunk, sums):
                results[i][j] = value
                remaining[i] -= 1
                done += remaining[i] == 0
            if progress and done:
                progress(done)
    return results
