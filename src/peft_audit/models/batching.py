"""Batch sizes for the device: ``batch_size: auto`` sized from free memory, and a batch that
runs out of memory retried at half its size instead of failing the variant.

**Auto sizing** (lm-evaluation-harness's ``--batch_size auto``, computed instead of probed): a
batch takes ``share * free memory / bytes per row`` rows, at most the device's cap and never
more rows than there are. Bytes per row are estimated from the model's config for the work at
hand (:func:`row_bytes`):

* the KV cache: ``2 * layers * kv_heads * head_dim * element bytes`` per cached token, counted
  twice over the prompt (a prefill's buckets are merged into new buffers, and the decoding
  buffers are laid out while the prompt's cache still exists);
* one layer's activations for the tokens of a forward pass: ``4 * hidden + 3 * intermediate``
  elements per token (residual, q/k/v/o projections; gate, up and their product);
* attention scores in fp32, ``heads * query tokens * key tokens`` (the size the math kernel of
  ``scaled_dot_product_attention`` materialises; the fused kernels need less, so this errs safe);
* fp32 vocabulary logits and their log-softmax at every scored position.

Free memory: ``torch.cuda.mem_get_info`` plus what PyTorch's caching allocator already holds but
does not use, on CUDA; ``psutil``'s available memory on the CPU; ``torch.mps`` counters on Apple
GPUs. The caps are where throughput stops growing: on the CPU, a decode step of the bundled
model stops being memory-bound near 100 rows (issue #13), and its matmuls still gain from 128 to
256 rows (270 prompts in one batch: 244 new tokens/s, in two of 135: 227), so 256; on a GPU, 512
generation rows and 256 scoring rows (an H200 with an 8B model still gained from 64 to 128 BBQ
items per batch, issue #16). Generation rows are then split into equal batches (the fewest that
fit): 135 prompts at a cap of 128 would leave a last batch of 7 rows, which decodes every step at
a fraction of the matmul rate (on this CPU, 128 + 128 + 14 rows ran at 218 new tokens/s, 2 x 135
at 227). Rows are independent, so the batch size changes only float summation order.

**Out of memory** (:func:`in_batches`): a batch that raises an out-of-memory error (accelerate's
``should_reduce_batch_size``: CUDA, MPS, XPU and CPU allocators) is retried at half its size,
down to one row; the smaller size is kept for the remaining batches, and the user is told once.
Finished batches are never redone. Any other error propagates unchanged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from typing import Literal, TypeVar

import torch

from .forward import base_model

AUTO = "auto"
#: A config's ``batch_size``: a positive number of rows, or ``"auto"`` (sized from free memory).
BatchSize = int | Literal["auto"]

#: Share of free memory a batch may take (the rest absorbs allocator fragmentation and the
#: estimate's error; an out-of-memory error still only halves the batch).
MEMORY_SHARE = 0.7
GENERATION_CAP = {"cuda": 512, "mps": 64, "cpu": 256}
SCORING_CAP = {"cuda": 256, "mps": 32, "cpu": 16}

T = TypeVar("T")
R = TypeVar("R")
log = logging.getLogger(__name__)


def _text_config(model):
    config = base_model(model).config
    return config.get_text_config() if hasattr(config, "get_text_config") else config


def _element_bytes(model) -> int:
    param = next(base_model(model).parameters(), None)
    if param is None or not param.dtype.is_floating_point:  # quantised weights: activations are bf16/fp16
        return 2
    return param.element_size()


def row_bytes(model, *, cached_tokens: int, forward_tokens: int, scored_positions: int,
              transient_cached_tokens: int = 0) -> int:
    """Estimated peak bytes one batch row needs (see the module docstring): a KV cache of
    ``cached_tokens`` (+ ``transient_cached_tokens`` held twice while caches are merged), one
    layer's activations and fp32 attention scores for a pass of ``forward_tokens`` over the
    cache, and fp32 logits at ``scored_positions``."""
    c = _text_config(model)
    elem = _element_bytes(model)
    hidden = int(c.hidden_size)
    heads = int(c.num_attention_heads)
    kv_heads = int(getattr(c, "num_key_value_heads", None) or heads)
    head_dim = int(getattr(c, "head_dim", None) or hidden // heads)
    layers = int(c.num_hidden_layers)
    intermediate = int(getattr(c, "intermediate_size", None) or 4 * hidden)
    vocab = int(c.vocab_size)
    kv = 2 * layers * kv_heads * head_dim * elem * (cached_tokens + transient_cached_tokens)
    activations = forward_tokens * (4 * hidden + 3 * intermediate) * elem
    scores = heads * forward_tokens * max(cached_tokens, forward_tokens) * 4
    logits = scored_positions * vocab * 4 * 2
    return kv + activations + scores + logits


def free_memory(device: torch.device) -> int:
    """Bytes a new batch may still allocate on ``device`` (see the module docstring)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device))
    if device.type == "mps":
        return int(torch.mps.recommended_max_memory() - torch.mps.driver_allocated_memory())
    import psutil

    return int(psutil.virtual_memory().available)


def _device_kind(device: torch.device) -> str:
    return device.type if device.type in GENERATION_CAP else "cuda"  # xpu, npu...: accelerator caps


def _fixed(requested: BatchSize) -> int | None:
    """``requested`` as a number of rows; None for ``"auto"``."""
    if requested == AUTO:
        return None
    if not isinstance(requested, int) or isinstance(requested, bool) or requested < 1:
        raise ValueError(f"batch_size must be a positive integer or 'auto', got {requested!r}")
    return requested


def _fit(rows: int, cap: int, per_row: int, device: torch.device, free: int | None) -> int:
    free = free_memory(device) if free is None else free
    fits = int(MEMORY_SHARE * free // max(per_row, 1))
    size = max(1, min(cap, fits, max(rows, 1)))
    log.info("batch_size auto on %s: %d rows (%.1f MiB per row, %.0f MiB free, cap %d, %d rows to do)",
             device, size, per_row / 2**20, free / 2**20, cap, rows)
    return size


def generation_batch_size(model, requested: BatchSize, *, prompt_tokens: int, max_new_tokens: int, rows: int,
                          device: torch.device | None = None, free: int | None = None) -> int:
    """``requested`` itself if a number; for ``"auto"``, the rows of greedy generation
    (``prompt_tokens``: the longest prompt; ``max_new_tokens``) that fit the device's free
    memory (``free`` overrides the measurement), capped (:data:`GENERATION_CAP`), then evened
    out over the batches ``rows`` need at that size (no short last batch)."""
    if (size := _fixed(requested)) is not None:
        return size
    device = device or next(model.parameters()).device
    per_row = row_bytes(model, cached_tokens=prompt_tokens + max_new_tokens, forward_tokens=prompt_tokens,
                        scored_positions=1, transient_cached_tokens=prompt_tokens)
    size = _fit(rows, GENERATION_CAP[_device_kind(device)], per_row, device, free)
    batches = -(-max(rows, 1) // size)
    return -(-max(rows, 1) // batches)


def scoring_batch_size(model, requested: BatchSize, *, prompt_tokens: int, continuation_tokens: int, rows: int,
                       full_logits: bool = False, scored_positions: int | None = None,
                       device: torch.device | None = None, free: int | None = None) -> int:
    """``requested`` itself if a number; for ``"auto"``, the rows of log-likelihood scoring
    (``prompt_tokens``: the longest prompt, or a row's tokens in one pass; ``continuation_tokens``:
    the most continuation tokens of one row fed on top of the prompt's cache) that fit free
    memory, capped (:data:`SCORING_CAP`). Vocabulary logits are counted at ``scored_positions``
    (default: one per continuation token, or, with ``full_logits`` for the naive scorer, at
    every position of a row)."""
    if (size := _fixed(requested)) is not None:
        return size
    device = device or next(model.parameters()).device
    tokens = prompt_tokens + continuation_tokens
    if scored_positions is None:
        scored_positions = tokens if full_logits else continuation_tokens + 1
    per_row = row_bytes(model, cached_tokens=tokens, forward_tokens=prompt_tokens, scored_positions=scored_positions)
    return _fit(rows, SCORING_CAP[_device_kind(device)], per_row, device, free)


def in_batches(items: Sequence[T], size: int, run: Callable[[list[T]], R], *,
               what: str = "batch") -> Iterator[tuple[list[T], R]]:
    """``(chunk, run(chunk))`` for consecutive chunks of ``items`` of ``size`` rows. A chunk
    that runs out of memory is retried at half the size (down to 1), and the smaller size is
    kept for the rest (see the module docstring); ``what`` names the work in the notice."""
    start = 0
    while start < len(items):
        chunk = list(items[start:start + size])
        shrink = False
        try:
            out = run(chunk)
        except Exception as exc:  # noqa: BLE001 -- only out-of-memory errors are handled; others re-raise
            from accelerate.utils.memory import should_reduce_batch_size

            if size == 1 or not should_reduce_batch_size(exc):
                raise
            shrink = True  # handled below: the exception's frames hold the batch's tensors until here
        if shrink:
            from accelerate.utils.memory import clear_device_cache

            clear_device_cache(garbage_collection=True)
            from ..sweep.logs import notice

            notice(f"{what}: a batch of {size} rows ran out of memory; continuing with batches of {size // 2} "
                   "(set batch_size to a smaller number to start there)")
            size //= 2
            continue
        yield chunk, out
        start += len(chunk)
