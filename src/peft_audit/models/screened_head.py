"""Greedy next tokens of a CPU fp32 model with the vocabulary product screened in bfloat16.

Greedy decoding needs only the index of each row's largest logit. The output projection (the
"LM head", ``vocab x hidden``) is ~21% of a decode step's FLOPs for the bundled SmolLM2-135M
(49,152 x 576 of 134.5M parameters), and a CPU with native bfloat16 dot products (AVX512-BF16,
AMX) multiplies bfloat16 about twice as fast as float32 (measured on this project's EPYC: 20 vs
38 ms for 66 rows). :class:`ScreenedHead` finds the float32 argmax without the float32 product:

1. ``a = bf16(h) @ bf16(W)^T`` (oneDNN, packed once), and a bound on its distance to the logits
   the float32 head would give. With ``u = 2^-8`` (bfloat16's unit roundoff), ``gamma_K = K 2^-24
   / (1 - K 2^-24)`` (float32 sums of ``K`` terms, in any order, FMA or not) and
   ``S_j = sum_i |h_i W_ji| <= ||h|| ||W_j||`` (Cauchy-Schwarz): rounding the inputs costs
   ``(2u + u^2) S_j``, accumulating ``gamma_K (1 + u)^2 S_j``, rounding the bfloat16 output
   ``u |acc| <= u (1 + 3u) S_j``, and the float32 head's own result is within ``gamma_K S_j`` of the
   exact product (Higham, *Accuracy and Stability of Numerical Algorithms*, 2nd ed., 2002,
   sec. 3.1, the inner-product bound). So ``|a_j - logit_j| <= c ||h|| ||W_j||`` with ``c`` from
   :func:`screen_bound` (plus 1e-30 for subnormal products a kernel may flush to zero).
2. Every token whose upper bound ``a_j + c ||h|| ||W_j||`` falls below a proven lower bound of the
   largest logit cannot be the argmax. The vocabulary is sorted by ``||W_j||`` into
   :data:`GROUPS` groups, so each group's bound uses its own largest norm: one ``amax`` per group
   and row, then one comparison per logit in the groups whose maximum reaches the bound. On the
   quickstart's 135 prompts, 3 candidates per row remain (median; mean 7, 95th percentile 25).
3. The candidates' logits are computed in float32 (``h . W_j``, within ``2 gamma_K S_j`` of the
   float32 head's values, ``S_j`` summed along). A row is decided when its best candidate's
   lower bound beats every other candidate's upper bound; exact ties are never decided here.
4. Undecided rows (near-ties: 0.3% of the quickstart's rows) and any row with a non-finite value
   take the float32 head itself, whose first-maximum ``argmax`` is the answer, as before.

The tokens are those of the float32 head. One caveat, the same as for every batch-shape change
in this module's callers: an undecided row is multiplied in a batch of the undecided rows only,
and a kernel may sum a row of a smaller batch in another order (a last-bit difference, which
decides only an exact near-tie). Whether the screen is faster than the head itself is measured
on first use (:mod:`.kernels`, which also says how to override it: ``PEFT_AUDIT_PACKED_WEIGHTS=0``
turns it off with the packed kernels). Written by hand because no library screens an argmax this way (speculative top-k in
serving engines is not exact); where it applies: :func:`screened_head`.
"""

from __future__ import annotations

import threading
import weakref

import torch

from . import kernels, packed_weights
from .batching import free_memory

#: Groups of the vocabulary, by the norm of their rows of the head, each bounded on its own.
GROUPS = 16
#: Smallest head (weights) screened: below it the float32 product costs about what the screen's
#: own steps do (the bundled model's head has 28M).
MIN_ELEMENTS = 1 << 20
_U = 2.0 ** -8  # bfloat16's unit roundoff (8 significant bits)


def _gamma(k: int) -> float:
    """Higham's ``gamma_k = k u / (1 - k u)`` for float32 (``u = 2^-24``): the relative bound of
    a float32 sum of ``k`` products, in any order."""
    ku = k * 2.0 ** -24
    return ku / (1 - ku)


def screen_bound(k: int) -> float:
    """``c`` in ``|a_j - logit_j| <= c ||h|| ||W_j||`` for a ``k``-wide hidden state (module
    docstring, step 1), rounded up by 1% for the float32 arithmetic of the bound itself."""
    g = _gamma(k + 1)
    inputs = 2 * _U + _U * _U
    accumulate = g * (1 + _U) ** 2
    output = _U * (1 + 3 * _U + 2 * g)
    return 1.01 * (inputs + accumulate + output + g)


#: The causal-LM classes whose logits are exactly ``lm_head(last hidden state)`` (no soft-capping
#: or scaling; checked in transformers' modeling files).
PLAIN_HEAD_CLASSES = frozenset({
    "LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM", "GemmaForCausalLM",
    "Phi3ForCausalLM", "SmolLM3ForCausalLM", "Olmo2ForCausalLM",
})


class ScreenedHead:
    """The float32 head ``head`` (an ``nn.Linear`` without bias) with a bfloat16 copy of its
    weight packed for oneDNN, its rows sorted by norm (module docstring)."""

    def __init__(self, head: torch.nn.Linear):
        weight = head.weight.detach()
        self.head = head
        self.key = packed_weights._key(weight)
        self.sample = packed_weights._sample(weight)
        with torch.inference_mode(False), torch.no_grad():
            norms = weight.double().norm(dim=1)
            self.order = torch.argsort(norms, descending=True, stable=True)
            self.vocab = vocab = weight.shape[0]
            # tokens per group, a multiple of 8 (candidates are found 8 bytes at a time); the last padded
            self.width = -(-vocab // (8 * GROUPS)) * 8
            padding = self.width * GROUPS - vocab
            sorted_weight = weight.index_select(0, self.order).to(torch.bfloat16)
            sorted_weight = torch.cat([sorted_weight, sorted_weight.new_zeros(padding, weight.shape[1])])
            self.packed = kernels.reorder(sorted_weight)
            # padding rows' products come out at bfloat16's lowest value: never a candidate, and
            # a group's maximum only in a group of padding alone, whose floor is then lowest too
            self.bias = None
            if padding:
                self.bias = torch.zeros(vocab + padding, dtype=torch.bfloat16)
                self.bias[vocab:] = torch.finfo(torch.bfloat16).min
            # float64 norms rounded up into float32, so the bounds are not rounded down
            self.norms = (norms * (1 + 2.0 ** -20)).float()
            sorted_norms = self.norms.index_select(0, self.order)
        self.group_norm = torch.stack([sorted_norms[min(g * self.width, vocab - 1)] for g in range(GROUPS)])
        self.c = screen_bound(weight.shape[1])
        self.tie = 2 * _gamma(weight.shape[1]) * (1 + 3 * _gamma(weight.shape[1]))  # float32 vs float32

    def current(self) -> bool:
        """Whether the head's weight is still the one screened (storage, version, sampled values)."""
        weight = self.head.weight
        return (packed_weights._key(weight) == self.key and weight.dtype == torch.float32
                and torch.equal(self.sample, packed_weights._sample(weight)))

    def next_tokens(self, hidden: torch.Tensor) -> torch.Tensor:
        """The float32 head's ``argmax`` (first maximum) of each row of ``hidden`` ``[B, K]``."""
        h = hidden.float().contiguous()
        rows = h.shape[0]
        a = kernels.packed_linear(h.to(torch.bfloat16), self.packed, self.bias)
        a = a.view(rows, GROUPS, self.width)
        hn = (h.double().norm(dim=1) * (1 + 2.0 ** -20)).float()  # rounded up, as the norms
        finite = torch.isfinite(hn)
        delta = (self.c * hn)[:, None] * self.group_norm[None, :] + 1e-30  # [B, G]: each group's bound
        group_max = a.amax(dim=2).float()
        # the float32 roundings of these subtractions, downwards; floor <= the largest logit
        floor = (group_max - delta - (group_max.abs() + delta) * 2.0 ** -20).amax(dim=1, keepdim=True)
        threshold = floor - delta - (floor.abs() + delta) * 2.0 ** -20  # [B, G] (step 2)
        # only the (row, group) pairs whose maximum reaches the threshold hold candidates; bfloat16
        # values compare exactly in float32
        pairs = (group_max >= threshold).nonzero()
        pr, pg = pairs[:, 0], pairs[:, 1]
        keep = a[pr, pg].float() >= threshold[pr, pg][:, None]  # [pairs, width]
        # the few candidates: non-zero 8-byte words first, then their bytes
        words = keep.view(torch.int64).nonzero()
        cols = (words[:, 1:] * 8 + torch.arange(8)).reshape(-1)
        p = words[:, 0].repeat_interleave(8)
        hit = keep[p, cols]
        p, cols = p[hit], cols[hit]
        r, cols = pr[p], pg[p] * self.width + cols
        real = cols < self.vocab  # padding never reaches a threshold; kept out all the same
        r, tokens = r[real], self.order[cols[real]]
        products = self.head.weight.detach().index_select(0, tokens) * h.index_select(0, r)
        exact = products.sum(dim=1)
        # each float32 result within gamma_K sum|h_i W_ji| of the exact product (the sum of
        # absolute values rounded up by its own float32 error)
        margin = self.tie * products.abs().sum(dim=1)
        out = torch.empty(rows, dtype=torch.long)
        undecided = self._decide(r.tolist(), tokens.tolist(), exact.tolist(), margin.tolist(), rows, out)
        undecided |= {i for i, ok in enumerate(finite.tolist()) if not ok}
        if undecided:
            index = torch.tensor(sorted(undecided))
            out[index] = self.head(h.index_select(0, index)).max(dim=-1).indices
        return out.to(hidden.device)

    @staticmethod
    def _decide(r: list[int], tokens: list[int], exact: list[float], margin: list[float], rows: int,
                out: torch.Tensor) -> set[int]:
        """Write each decided row's token into ``out``; the undecided rows."""
        best: dict[int, tuple[float, float, int]] = {}  # row -> (lower, upper, token) of its best
        second: dict[int, float] = {}  # row -> the largest upper bound of its other candidates
        for row, token, value, m in zip(r, tokens, exact, margin):
            low, high = value - m, value + m
            current = best.get(row)
            if current is None or low > current[0]:
                if current is not None:
                    second[row] = max(second.get(row, float("-inf")), current[1])
                best[row] = (low, high, token)
            else:
                second[row] = max(second.get(row, float("-inf")), high)
        decided = [row for row, (low, _, _) in best.items() if low > second.get(row, float("-inf"))]
        if decided:
            out[torch.tensor(decided)] = torch.tensor([best[row][2] for row in decided])
        return set(range(rows)) - set(decided)


#: ``(vocabulary, hidden)`` of the random head :func:`screen_choice` times (the bundled model's is
#: 49,152 x 576; a smaller one weighs the screen's fixed costs more, so it errs towards the head).
TIMED_HEAD = (16384, 576)
#: Rows of the timed head: a decode step of a mid-sized batch.
TIMED_ROWS = 66


def screen_choice() -> kernels.Choice:
    """Whether float32 heads are screened on this machine: never where plain kernels are forced
    (``PEFT_AUDIT_PACKED_WEIGHTS=0``, a config's ``kernels: plain``), the oneDNN operations are
    missing or bfloat16 is not native; always (as before the choice was measured) where packed
    kernels are forced; otherwise measured once per machine (:func:`.kernels.decided`): the
    screen's :meth:`ScreenedHead.next_tokens` on a random :data:`TIMED_HEAD` at
    :data:`TIMED_ROWS` rows against the head's product and ``argmax`` with the kernels chosen for
    float32 weights."""
    forced = kernels.override()
    if forced == "plain" or not kernels.available() or not kernels.bf16_native():
        return kernels.Choice(False, "environment" if forced == "plain" else "unavailable")
    if forced == "packed":
        return kernels.Choice(True, "environment")
    return kernels.decided("screened head", torch.float32, _measure_screen)


def _measure_screen() -> tuple[bool, float, bool]:
    gen = torch.Generator().manual_seed(0)
    vocab, width = TIMED_HEAD
    with torch.no_grad():
        head = torch.nn.Linear(width, vocab, bias=False)
        head.weight.copy_(torch.randn(TIMED_HEAD, generator=gen) / width ** 0.5)
        hidden = torch.randn(TIMED_ROWS, width, generator=gen)
        screen = ScreenedHead(head)
        if kernels.packed(torch.float32).use:
            weight = kernels.reorder(head.weight)
            full = lambda: kernels.packed_linear(hidden, weight, None).max(dim=-1).indices  # noqa: E731
        else:
            full = lambda: head(hidden).max(dim=-1).indices  # noqa: E731
        return kernels.compare(lambda: screen.next_tokens(hidden), full)


_cache: "weakref.WeakKeyDictionary[torch.nn.Linear, ScreenedHead]" = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def screened_head(causal, device: torch.device) -> ScreenedHead | None:
    """The :class:`ScreenedHead` of ``causal`` (a transformers causal LM), or None where it does
    not apply: not a CPU, not the choice on this machine (:func:`screen_choice`: bfloat16 not
    native, slower than the head here, or turned off), a model whose logits are not plainly its head's output (:data:`PLAIN_HEAD_CLASSES`),
    a head that is not a plain float32 ``nn.Linear`` without bias (an adapter on it, say), a head
    smaller than :data:`MIN_ELEMENTS`, or not enough free memory for the bfloat16 copy. Built once per head (thread-safe) and rebuilt when
    the head's weight changes."""
    if device.type != "cpu" or not screen_choice().use:
        return None
    if type(causal).__name__ not in PLAIN_HEAD_CLASSES:
        return None
    head = causal.get_output_embeddings()
    if (type(head) is not torch.nn.Linear or head.bias is not None or head.weight.dtype != torch.float32
            or head.weight.device.type != "cpu" or head.weight.dim() != 2 or head.weight.numel() < MIN_ELEMENTS):
        return None
    with _lock:
        entry = _cache.get(head)
        if entry is not None and entry.current():
            return entry
        if head.weight.numel() * 2 > packed_weights.MEMORY_SHARE * free_memory(torch.device("cpu")):
            return None
        entry = _cache[head] = ScreenedHead(head)
        return entry
