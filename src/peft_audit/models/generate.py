"""Batched greedy generation with the chat template (base models and every PEFT adapter).

Contract (the ``generate_until`` of lm-evaluation-harness, specialised to chat prompts):

* each prompt becomes ``[system?, user]`` messages rendered by the tokenizer's chat template
  with the generation prompt appended (tokenizers without a template get the plain text);
* prompts are sorted by token length (longest first, so an out-of-memory error surfaces in the
  first batch) and batched; each batch is **left**-padded so every row's last prompt token sits
  at the same position and new tokens are appended directly after it;
* decoding is greedy (argmax) and a row stops at an end-of-sequence token (the tokenizer's EOS
  plus any listed in the model's generation config) or at ``max_new_tokens``;
* results come back in input order.

Decoding is a hand-written greedy loop over the model's ``forward`` with a ``DynamicCache``:
the prompt is encoded once (only the last position's logits are computed), then one token per
step. Tokens every row of a batch starts with (the chat template's system turn, at least
:data:`MIN_SHARED_PREFIX` of them) are encoded once at batch size 1 and their cache repeated
for every row, the left-padded rest of each row following them. The rows' own tokens are
prefilled in length buckets (:func:`prefill_buckets`: short prompts are not padded to the
longest; on the quickstart's safety prompts one batch padded 29% of its prefill tokens) and
the buckets' caches are merged into one decoding batch, masked padding inserted. Decoding
then writes each step's keys and values into buffers sized for ``max_new_tokens`` more
positions (a ``DynamicLayer`` concatenates its whole cache at every step). Rows that reached a
stop token **leave the batch** (their cache rows are dropped), so long answers do not drag
finished rows through every remaining step; as dropping copies the whole cache, it waits until
the finished rows times the steps left reach :data:`DROP_FINISHED` of the batch's rows (each row
finishing alone made the quickstart's mixed LoRA batches spend 5% of their time copying caches),
and a finished row waiting to leave has its tokens ignored. Mathematically each row is
independent of the others, so this gives ``model.generate``'s tokens; only float summation can differ where
the batch shape differs (``perf/generation_throughput.py`` counts such responses). Positions
follow ``generate``: ``cumsum(attention_mask) - 1``, so left padding does not shift them.

Batches: ``batch_size="auto"`` sizes them from the device's free memory, and a batch that runs
out of memory is retried at half the size (:mod:`.batching`). On a CPU a batch decodes as two
interleaved halves in two threads, each with half of torch's threads (:func:`_decode_streams`:
one stream's Python and small kernels overlap the other's matrix products; same tokens).

Compiled decoding (``compiled=True``, the sweep's ``compile: true``): on CUDA, base models and
LoRA/IA3 adapters go through ``model.generate`` with a static KV cache, whose decoding step
transformers compiles with ``torch.compile`` (:func:`_static_batch`): fixed shapes, so finished
rows stay in the batch, and prompts padded to :data:`STATIC_WIDTH` so shapes repeat. It is off
by default: it pays only when the compiled steps outweigh the compilation and the rows kept
past their stop token, which ``perf/gpu_check.py`` measures on the GPU at hand.

A model whose generation config asks for logits processing that greedy decoding would apply
(``repetition_penalty``, ``no_repeat_ngram_size``, ``min_new_tokens``, ...) goes through
``model.generate`` instead, so its answers do not change.

PEFT prompt-learning adapters inject their virtual tokens **here**, not through
``PeftModel.generate``: with transformers 5 the generation cache argument was renamed
(``past_key_values`` -> ``cache``) and peft 0.21's ``prepare_inputs_for_generation`` no longer
sees it, so a prefix-tuning prefix is silently dropped during generation (and prompt tuning
re-injects its virtual tokens at every decoding step). So:

* prompt tuning / P-tuning: the virtual token embeddings (then the shared prefix's embeddings)
  are encoded first as ``inputs_embeds``, with the attention mask extended by ones over them;
  everything after feeds token ids to the base model;
* prefix tuning: the adapter's key/value prefix is the initial cache, the attention mask is
  extended by ones over it, and positions start after it (as in training);
* every other adapter (LoRA, IA3, ...) works inside the layers: the PEFT model's own ``forward``.

``tests/safety/test_safety_generate.py`` checks each path against a cache-free greedy loop over
the PEFT model's own ``forward``.

Mixed batches (``adapter_names``, one adapter per row; :func:`mixed_batch_reason`): rows of
several variants of one base share each batch. LoRA rows get their own adapter's update from
the adapters' stacked matrices (:class:`_LoraMatmulRows`; PEFT's ``adapter_names`` forward
where the layers cannot be stacked); IA3 rows are scaled by their own adapter's vectors
(:class:`_IA3Rows`); prompt-learning rows differ only in their head, which is encoded per
adapter and gathered per row. ``tests/models/test_mixed_batches.py`` checks every row against
its variant generating alone.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import os
import threading
from collections.abc import Callable

import torch

from .. import faults
from .backends.base import Generation
from .batching import BatchSize, generation_batch_size, in_batches
from .forward import (
    base_model, cache_kwargs, forward_params, output_cache, padded_positions, peft_type, prompt_learning_config,
    virtual_tokens,
)
from .lean_decode import lean_decoder
from .packed_weights import packed_linears
from .screened_head import screened_head


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


#: Model config keys that hold the context length, by family (llama/qwen/mistral/gemma, GPT-2, ...).
_CONTEXT_KEYS = ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length", "n_ctx")


def context_length(model, tokenizer) -> int | None:
    """The number of tokens ``model`` attends to: its config's context length, else the
    tokenizer's ``model_max_length`` when that is a real limit (transformers writes a huge
    placeholder when it is unknown); None when neither says."""
    config = getattr(model, "config", None)
    for key in _CONTEXT_KEYS:
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    value = getattr(tokenizer, "model_max_length", None)
    return value if isinstance(value, int) and 0 < value < 10**7 else None


def first_overlong(model, tokenizer, prompts: list[str], *, system_prompt: str | None,
                   max_new_tokens: int) -> tuple[int, int, int] | None:
    """``(index, prompt tokens, context)`` of the first prompt whose chat input
    (:func:`chat_input_ids`) plus ``max_new_tokens`` exceeds :func:`context_length`; None when
    all fit or the context is unknown."""
    context = context_length(model, tokenizer)
    if context is None:
        return None
    for i, prompt in enumerate(prompts):
        n = len(chat_input_ids(tokenizer, prompt, system_prompt))
        if n + max_new_tokens > context:
            return i, n, context
    return None


def _stop_ids(model, tokenizer) -> list[int]:
    ids: list[int] = []
    for src in (tokenizer.eos_token_id, getattr(getattr(model, "generation_config", None), "eos_token_id", None)):
        if src is None:
            continue
        ids.extend(src if isinstance(src, (list, tuple)) else [src])
    return sorted(set(int(i) for i in ids))


def _left_pad(rows: list[list[int]], pad_id: int, device: torch.device,
              width: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    width = max([len(r) for r in rows] + [width or 0])
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
    batch_size: BatchSize = 8,
    progress: Callable[[int], None] | None = None,
    compiled: bool = False,
    adapter_names: list[str] | None = None,
) -> list[Generation]:
    """Greedy chat completions for ``prompts`` (see module docstring), in input order.

    ``batch_size``: rows per batch, or ``"auto"`` to size batches from the device's free memory
    (:mod:`.batching`); a batch that runs out of memory is retried at half the size.
    ``compiled``: on CUDA, decode base/LoRA/IA3 models with a static KV cache and compiled
    steps (:func:`_static_batch`); elsewhere, and for prompt-learning adapters, it is ignored
    with a notice. ``progress`` is called with the number of prompts finished after each batch.
    ``adapter_names``: one adapter name per prompt (``"__base__"`` for the base model's own
    answer) on a PEFT model holding several adapters, so that several variants share every
    batch: LoRA adapters, or prompt-learning adapters with the same number of virtual tokens
    (:func:`mixed_batch_reason`). An empty ``prompts`` list returns
    ``[]`` without touching the model.
    """
    encoded = [chat_input_ids(tokenizer, p, system_prompt) for p in prompts]
    return generate_from_ids(model, tokenizer, encoded, max_new_tokens=max_new_tokens, batch_size=batch_size,
                             progress=progress, compiled=compiled, adapter_names=adapter_names)


def generate_from_ids(
    model,
    tokenizer,
    encoded: list[list[int]],
    *,
    max_new_tokens: int = 256,
    batch_size: BatchSize = 8,
    progress: Callable[[int], None] | None = None,
    compiled: bool = False,
    adapter_names: list[str] | None = None,
) -> list[Generation]:
    """:func:`generate` for already tokenised inputs (e.g. a guard model's own chat format)."""
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    if not encoded:
        return []
    if any(not row for row in encoded):
        raise ValueError("cannot generate from an empty input (0 prompt tokens)")
    if adapter_names is not None:
        if len(adapter_names) != len(encoded):
            raise ValueError(f"adapter_names has {len(adapter_names)} names for {len(encoded)} prompts")
        reason = mixed_batch_reason(model, set(adapter_names))
        if reason is not None:
            raise ValueError(f"cannot mix adapters in one batch: {reason}")
    stop = _stop_ids(model, tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (stop[0] if stop else 0)
    device = next(model.parameters()).device
    decode = _hf_generate_batch if _needs_logits_processing(model) else _greedy_batch
    if adapter_names is not None:
        compiled = False  # mixed batches decode through this module's loop (mixed_batch_reason)
    if compiled:
        reason = _not_compilable(model, device)
        if reason is None:
            decode = _static_batch
        else:
            from ..sweep.logs import notice

            notice(f"compiled decoding: {reason}; generating without it")
    order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]))
    size = generation_batch_size(model, batch_size, prompt_tokens=len(encoded[order[0]]) + virtual_tokens(model),
                                 max_new_tokens=max_new_tokens, rows=len(encoded), device=device)
    results: list[Generation | None] = [None] * len(encoded)

    def run(idx: list[int]) -> list[list[int]]:
        names = None if adapter_names is None else {"adapters": [adapter_names[i] for i in idx]}
        # compiled decoding keeps plain modules: the graph it traced holds their forward
        packing = contextlib.nullcontext() if decode is _static_batch else packed_linears(model)
        with torch.inference_mode(), _contiguous_head(model), packing:
            return decode(model, [encoded[i] for i in idx], stop=set(stop), pad_id=pad_id,
                          max_new_tokens=max_new_tokens, device=device, **(names or {}))

    for idx, new_tokens in in_batches(order, size, run, what="generation"):
        for row, i in zip(new_tokens, idx):
            results[i] = Generation.decoded(tokenizer, row)
        if progress is not None:
            progress(len(idx))
        faults.point("generate.batch")
    return results  # type: ignore[return-value]


@contextlib.contextmanager
def _contiguous_head(model):
    """Hand the output head a contiguous input while generating. The prompt's forward keeps the
    last position's hidden state (``logits_to_keep``), a strided view of ``[rows, tokens, hidden]``;
    ``torch.matmul`` folds such an input into one matrix product only when the weight requires
    grad (``should_fold`` in ATen's ``LinearAlgebra.cpp``), so with a PEFT model's frozen weights
    it broadcast the vocabulary matrix to every row instead: one ``bmm`` over ``[rows, hidden,
    vocabulary]``, which in bfloat16 copies the matrix once per row (23 rows of SmolLM2: 1.3 GB,
    ~1 s, at every prefill). Copying the ``[rows, 1, hidden]`` input costs nothing."""
    get_head = getattr(base_model(model), "get_output_embeddings", None)
    head = get_head() if get_head is not None else None
    if head is None:
        yield
        return
    # clone, not .contiguous(): a [1, 1, hidden] view counts as contiguous whatever its strides,
    # and should_fold reads the strides
    handle = head.register_forward_pre_hook(
        lambda module, args: (args[0].clone(memory_format=torch.contiguous_format), *args[1:]))
    try:
        yield
    finally:
        handle.remove()


#: The row name PEFT's mixed batches read as "no adapter": the base model's own answer.
BASE_ROWS = "__base__"

#: PEFT types whose rows share batches, each with rows of its own type only (PEFT holds one
#: adapter type per model, so prompt tuning and P-tuning never meet): see :func:`mixed_batch_reason`.
MIXABLE_TYPES = frozenset({"LORA", "IA3", "PROMPT_TUNING", "P_TUNING", "PREFIX_TUNING"})

#: Types whose adapters work inside the layers, where base-model rows can join a mixed batch.
LAYER_TYPES = frozenset({"LORA", "IA3"})


def mixed_batch_reason(model, names: set[str]) -> str | None:
    """Why the rows of ``names`` (adapter names of ``model``, or :data:`BASE_ROWS`) cannot share
    batches on ``model``; None when they can.

    * LoRA adapters (and base rows): each row gets its own adapter's update inside the layers
      (:class:`_LoraMatmulRows`, or PEFT's ``adapter_names`` forward). Plain LoRA only: this
      project does not test the mixed forward of DoRA or other LoRA variants.
    * IA3 adapters (and base rows): PEFT has no mixed forward for IA3; :class:`_IA3Rows` scales
      each row by its own adapter's vectors, as PEFT's ``ia3.Linear`` does for one adapter.
      Dense layers only, not merged, no ``modules_to_save``.
    * Prompt-tuning adapters with the same number of virtual tokens: each row's head (its
      adapter's virtual tokens, then the shared system turn) is encoded under its own adapter;
      everything after it runs through the base model, the same for every row. Likewise
      P-tuning adapters, and prefix-tuning adapters with the same prefix length. No base rows:
      their head would be shorter.

    Mixed batches decode through this module's greedy loop, so models whose generation config
    asks for logits processing are refused too."""
    configs = getattr(model, "peft_config", None)
    kind = peft_type(model)
    if not isinstance(configs, dict) or kind is None:
        return "mixed batches need a PEFT model with LoRA, IA3 or prompt-learning adapters"
    if kind not in MIXABLE_TYPES:
        return f"{kind} adapters cannot share a batch (LoRA, IA3 and prompt-learning rows are mixed here)"
    if kind not in LAYER_TYPES and BASE_ROWS in names:
        return "base-model rows cannot share a batch with prompt-learning adapters (their heads differ in length)"
    if kind == "IA3" and (reason := _IA3Rows.refusal(model)) is not None:
        return reason
    lengths = set()
    for name in sorted(names - {BASE_ROWS}):
        config = configs.get(name)
        if config is None:
            return f"the model has no adapter named {name!r}"
        this = getattr(config.peft_type, "value", str(config.peft_type))
        if this != kind:
            return f"adapter {name!r} ({this}) cannot share a batch with {kind} adapters"
        if kind == "LORA" and (getattr(config, "use_dora", False) or getattr(config, "alora_invocation_tokens", None)):
            return f"adapter {name!r} is not a plain LoRA adapter"
        if kind == "IA3" and getattr(config, "modules_to_save", None):
            return f"adapter {name!r} trains whole modules (modules_to_save), which IA3 rows cannot mix"
        if kind not in LAYER_TYPES:
            lengths.add(int(config.num_virtual_tokens))
    if len(lengths) > 1:
        return f"the adapters have different numbers of virtual tokens ({sorted(lengths)})"
    if _needs_logits_processing(model):
        return "the model's generation config adds logits processing (it generates through model.generate)"
    return None


# GenerationConfig fields that add a logits processor to greedy decoding; with any of them set
# away from its default, the hand-written loop would answer differently, so model.generate runs.
_LOGITS_PROCESSING_FIELDS = (
    "repetition_penalty", "encoder_repetition_penalty", "no_repeat_ngram_size", "encoder_no_repeat_ngram_size",
    "bad_words_ids", "min_length", "min_new_tokens", "forced_bos_token_id", "forced_eos_token_id",
    "suppress_tokens", "begin_suppress_tokens", "sequence_bias", "exponential_decay_length_penalty",
    "guidance_scale", "watermarking_config",
)


def _needs_logits_processing(model) -> bool:
    config = getattr(model, "generation_config", None)
    if config is None:
        return False
    from transformers import GenerationConfig

    default = GenerationConfig()
    return any(getattr(config, f, None) != getattr(default, f, None) for f in _LOGITS_PROCESSING_FIELDS)


# Fewest prompt tokens shared by every row of a batch worth encoding once (a chat template's
# system turn is ~20-30 tokens): below it the extra forward call costs about what it saves.
MIN_SHARED_PREFIX = 16


def _shared_prefix_len(rows: list[list[int]]) -> int:
    """Length of the token prefix common to all ``rows`` that is encoded once for the batch
    (each row keeps at least its last token, whose logits give the first new token); 0 when
    shorter than :data:`MIN_SHARED_PREFIX` or for a single row."""
    if len(rows) < 2:
        return 0
    n = min(len(r) for r in rows) - 1
    first = rows[0]
    for k in range(n):
        if any(r[k] != first[k] for r in rows):
            n = k
            break
    return n if n >= MIN_SHARED_PREFIX else 0


#: Finished rows leave the batch once their number times the decoding steps left reaches this
#: share of the batch's rows. Dropping copies every row's cache (on this project's CPU, ~0.5 ms
#: per row of the bundled model at 80 cached positions), while a finished row kept costs one row
#: of each step (~1.4 ms): 0.5 drops a few rows early in the answers and waits for more near the end.
DROP_FINISHED = 0.5


#: On a CPU, a batch decodes as this many interleaved parts ("streams"), each in its own Python
#: thread with its share of torch's intra-op threads (:func:`_decode_streams`).
#: ``PEFT_AUDIT_GENERATION_STREAMS`` overrides it (1: one stream).
GENERATION_STREAMS = 2
STREAMS_ENV = "PEFT_AUDIT_GENERATION_STREAMS"
#: Fewest rows a stream gets: below it, each part's matrix products get too few rows to run at
#: the CPU's rate, and one stream decodes the batch.
MIN_STREAM_ROWS = 16


def _greedy_batch(model, rows: list[list[int]], *, stop: set[int], pad_id: int, max_new_tokens: int,
                  device: torch.device, adapters: list[str] | None = None) -> list[list[int]]:
    """New token ids of each of ``rows`` (one batch), up to (not including) its stop token.
    Finished rows leave the batch (:data:`DROP_FINISHED`): their cache rows, mask and position
    are dropped. On a CPU the batch may decode as parallel streams (:func:`_decode_streams`).
    ``adapters``: each row's adapter in a mixed batch (:func:`generate`'s ``adapter_names``)."""
    row_adapters = _row_adapters(model) if adapters is not None else None
    try:
        streams = _stream_count(model, rows, adapters, device)
        if streams > 1:
            return _decode_streams(model, rows, streams, stop=stop, pad_id=pad_id, max_new_tokens=max_new_tokens,
                                   device=device, adapters=adapters, row_adapters=row_adapters)
        return _decode(model, rows, stop=stop, pad_id=pad_id, max_new_tokens=max_new_tokens, device=device,
                       adapters=adapters, row_adapters=row_adapters)
    finally:
        if row_adapters is not None:
            row_adapters.close()


def _stream_count(model, rows: list[list[int]], adapters: list[str] | None, device: torch.device) -> int:
    """How many streams decode ``rows`` (:func:`_decode_streams`): :data:`GENERATION_STREAMS`
    (or ``PEFT_AUDIT_GENERATION_STREAMS``) on a CPU with at least that many intra-op threads,
    while every stream gets :data:`MIN_STREAM_ROWS` rows; 1 on other devices, for mixed
    prompt-learning batches (their per-adapter heads switch the model's active adapter) and for
    models whose forward changes their own state (:func:`_forward_changes_state`)."""
    raw = os.environ.get(STREAMS_ENV, "").strip()
    try:
        wanted = int(raw) if raw else GENERATION_STREAMS
    except ValueError:
        raise ValueError(f"{STREAMS_ENV}={raw!r}: expected a whole number of decoding streams (1 turns them off)")
    if device.type != "cpu" or (adapters is not None and prompt_learning_config(model) is not None):
        return 1
    streams = max(1, min(wanted, torch.get_num_threads(), len(rows) // MIN_STREAM_ROWS))
    return 1 if streams > 1 and _forward_changes_state(model) else streams


def _forward_changes_state(model) -> bool:
    """Whether a forward pass of ``model`` rewrites module state that parallel streams would
    race on: rotary embeddings of the dynamic-NTK and LongRoPE kinds recompute their
    frequencies from the longest position seen (transformers' ``dynamic_rope_update``)."""
    for module in model.modules():
        kind = getattr(module, "rope_type", None)
        for name in (kind.values() if isinstance(kind, dict) else [kind]):
            if isinstance(name, str) and ("dynamic" in name or name == "longrope"):
                return True
    return False


class _Cancelled(Exception):
    """A stream stops because another one failed."""


def _decode_streams(model, rows: list[list[int]], streams: int, *, adapters: list[str] | None,
                    row_adapters: "_RowAdapters | None", **kwargs) -> list[list[int]]:
    """:func:`_decode` of ``rows`` as ``streams`` interleaved parts (rows sorted by length, so
    every part gets long and short ones), each in its own thread with ``threads // streams`` of
    torch's intra-op threads, results back in row order.

    Why: a decoding step is ~70% matrix products, which keep every core busy, and ~30% work
    that does not: the Python of the model's forward, attention over each row's own cache and
    elementwise kernels on small tensors, which run on one core or split poorly. Two streams
    each running on one core overlap one's Python and small kernels with the other's products
    (torch releases the GIL inside its kernels). On this project's 2-core CPU the quickstart's
    135 prompts generated 7-12% faster (alternating runs), with the same tokens: every row depends on its own inputs
    only, and the packed matrix products give a row the same sums whatever the batch
    (``perf/generation_throughput.py`` counts differing answers).

    The model is shared read-only; what changes per row in a mixed LoRA or IA3 batch
    (``row_adapters``) is kept per thread. A failing stream stops the others at their next step
    and its error is raised (an out-of-memory error then halves the batch, :mod:`.batching`)."""
    parts = [list(range(k, len(rows), streams)) for k in range(streams)]
    threads = torch.get_num_threads()
    each = max(1, threads // streams)
    cancel = threading.Event()
    modes = torch.is_grad_enabled(), torch.is_inference_mode_enabled()
    done: list = [None] * streams
    errors: list[BaseException | None] = [None] * streams

    def work(k: int) -> None:
        try:
            # this thread's OpenMP team, before its first kernel (torch's count is process-wide:
            # restored below once every stream is done)
            torch.set_num_threads(each)
            with torch.inference_mode(modes[1]), torch.set_grad_enabled(modes[0]):
                part = parts[k]
                done[k] = _decode(model, [rows[i] for i in part], adapters=None if adapters is None else
                                  [adapters[i] for i in part], row_adapters=row_adapters, cancel=cancel, **kwargs)
        except BaseException as exc:  # noqa: BLE001 -- handed to the calling thread below
            errors[k] = exc
            cancel.set()

    workers = [threading.Thread(target=work, args=(k,), name=f"peft-audit-decode-{k}", daemon=True)
               for k in range(streams)]
    try:
        for worker in workers:
            worker.start()
        try:
            for worker in workers:
                worker.join()
        except BaseException:  # an interrupt while waiting: stop the streams at their next step
            cancel.set()
            for worker in workers:
                worker.join()
            raise
    finally:
        torch.set_num_threads(threads)
    failed = [e for e in errors if e is not None]
    if failed:  # the error that stopped the others, not theirs
        raise next((e for e in failed if not isinstance(e, _Cancelled)), failed[0])
    out: list[list[int]] = [[] for _ in rows]
    for part, new in zip(parts, done):
        for i, tokens in zip(part, new):
            out[i] = tokens
    return out


def _decode(model, rows: list[list[int]], *, stop: set[int], pad_id: int, max_new_tokens: int, device: torch.device,
            adapters: list[str] | None, row_adapters: "_RowAdapters | None", cancel=None) -> list[list[int]]:
    """:func:`_greedy_batch`'s loop; ``row_adapters`` gives the rows of a mixed LoRA or IA3 batch
    their adapters (the model's transformer is then called directly). ``cancel``: a
    ``threading.Event`` set when another stream failed (:func:`_decode_streams`). Where
    :func:`~.screened_head.screened_head` applies (a CPU fp32 head), each step runs the decoder
    alone and the screened head picks the float32 head's tokens at about half its cost; where
    :func:`~.lean_decode.lean_decoder` applies (a Llama decoder on a CPU), the decoder's step is
    its bit-identical lean one."""
    shared = _shared_prefix_len(rows)
    tokens = _NextTokens(base_model(model), device)
    next_ids, cache, mask = _bucketed_first_step(model, rows[0][:shared], [r[shared:] for r in rows], pad_id, device,
                                                 adapters, row_adapters, tokens, room=max_new_tokens)
    batch_rows = list(range(len(rows)))  # batch row -> input row, shrinking as rows finish
    finished: set[int] = set()  # batch rows that stopped and wait to leave the batch
    new: list[list[int]] = [[] for _ in rows]
    if tokens.decoder is not None:
        forward = tokens.decoder
    else:
        forward = tokens.causal if row_adapters is not None else _decoding_forward(model)
    for n in range(max_new_tokens):
        if cancel is not None and cancel.is_set():
            raise _Cancelled
        for j, token in enumerate(next_ids.tolist()):
            if j in finished:
                continue
            if token in stop:
                finished.add(j)
            else:
                new[batch_rows[j]].append(token)
        if len(finished) == len(batch_rows) or n + 1 == max_new_tokens:
            break
        if finished and len(finished) * (max_new_tokens - n - 1) >= DROP_FINISHED * len(batch_rows):
            keep = [j for j in range(len(batch_rows)) if j not in finished]
            kept = torch.tensor(keep, device=mask.device)
            cache.batch_select_indices(kept)
            mask, next_ids, batch_rows = mask[kept], next_ids[kept], [batch_rows[j] for j in keep]
            finished = set()
        mask = torch.cat([mask, mask.new_ones((len(batch_rows), 1))], dim=1)
        positions = mask.sum(dim=1, keepdim=True) - 1
        if row_adapters is not None:
            row_adapters.set([adapters[i] for i in batch_rows])
        out = forward(input_ids=next_ids[:, None], attention_mask=mask, position_ids=positions, use_cache=True,
                      **cache_kwargs(forward, cache))
        next_ids = tokens(out)
    return new


class _NextTokens:
    """Each row's greedy next token from a forward pass of ``causal`` (a transformers causal LM).

    Where :func:`~.screened_head.screened_head` or :func:`~.lean_decode.lean_decoder` applies,
    :attr:`decoder` is what runs (the lean step, or transformers' decoder without its head) and
    the tokens come from its last hidden states: through the screened head, or the head itself.
    Otherwise :attr:`decoder` is None, the whole model runs and the tokens are its logits'
    argmax. Either way, each token is the first maximum of the float head's logits."""

    def __init__(self, causal, device: torch.device):
        self.causal = causal
        self.screened = screened_head(causal, device)
        self.lean = lean_decoder(causal, device)
        self.decoder = self.lean or (causal.get_decoder() if self.screened is not None else None)

    def __call__(self, out) -> torch.Tensor:
        if self.decoder is None:
            return out.logits[:, -1].max(dim=-1).indices  # argmax's first maximum, 20% faster on a CPU
        hidden = out.last_hidden_state[:, -1]
        if self.screened is not None:
            return self.screened.next_tokens(hidden)
        # the causal LM's own head (LlamaForCausalLM applies nothing after it)
        return self.causal.get_output_embeddings()(hidden).max(dim=-1).indices


def _row_adapters(model) -> "_RowAdapters | None":
    """What gives each row of a mixed batch its adapter inside the layers: for LoRA
    :class:`_LoraMatmulRows`, or :class:`_LoraRows` (PEFT's own mixed forward) where the layers
    cannot be stacked; :class:`_IA3Rows`; None for prompt-learning adapters (each row's head
    carries its adapter)."""
    kind = peft_type(model)
    if kind == "LORA":
        return _LoraMatmulRows(model) if _LoraMatmulRows.usable(model) else _LoraRows(model)
    if kind == "IA3":
        return _IA3Rows(model)
    return None


class _LoraRows:
    """Each row's adapter in a mixed LoRA batch, handed to every LoRA layer of ``model`` as PEFT's
    ``adapter_names`` argument by forward pre-hooks registered once for the batch; ``set``
    changes the names before a forward call (rows leave the batch as they finish).

    Why not ``model(..., adapter_names=...)``: PEFT's ``_enable_peft_forward_hooks`` walks every
    module twice and registers a hook on each LoRA layer at every forward call, 8% of a mixed
    decode of the bundled model on this CPU and host time a GPU would wait for at every step.
    The names are checked once, by :func:`mixed_batch_reason`."""

    def __init__(self, model):
        from peft.tuners.lora import LoraLayer
        from peft.utils.other import AuxiliaryTrainingWrapper

        self._state = threading.local()  # the rows' names, per decoding stream (_decode_streams)
        self._handles = [m.register_forward_pre_hook(self._inject, with_kwargs=True) for m in model.modules()
                         if isinstance(m, (LoraLayer, AuxiliaryTrainingWrapper))]

    def _inject(self, module, args, kwargs):
        kwargs["adapter_names"] = getattr(self._state, "names", None)
        return args, kwargs

    def set(self, names: list[str]) -> None:
        self._state.names = names

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()


class _HookedLayers:
    """Adapter layers switched off for a mixed batch while hooks on their base layers do their
    work row by row (:class:`_LoraMatmulRows`, :class:`_IA3Rows`); ``close`` removes the hooks
    and gives each layer back the on/off state it had."""

    def _switch_off(self, layers: list) -> None:
        self._layers = layers
        self._disabled = [layer._disable_adapters for layer in layers]
        self._handles: list = []

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
        for layer, disabled in zip(self._layers, self._disabled):
            layer._disable_adapters = disabled


class _LoraMatmulRows(_HookedLayers):
    """Each row's LoRA adapter in a mixed batch, with two matmuls per layer instead of PEFT's
    sub-batch per adapter. Per LoRA layer, every adapter's ``A`` is stacked into one
    ``[sum of ranks, in]`` matrix and every ``B`` into one ``[out, sum of ranks]``; a row's
    update is ``((x A_all^T) * m) B_all^T * s``, where the mask ``m`` keeps the columns of the
    row's own adapter (zeros elsewhere, all zeros for base rows) and ``s`` is its adapter's
    scaling: Hu et al. 2021's ``W x + (alpha / r) B A x``, with ``B A x`` summed over the
    row's own rank only (the zeros add nothing). PEFT's ``adapter_names`` forward (the
    fallback, :class:`_LoraRows`) gathers, multiplies and scatters each adapter's rows at every
    layer: on the bundled model, base + 4 rank-8 adapters on every projection, 55 rows at
    sweep12's settings, it decoded 84-99 new tokens/s where the base alone did 135-169; stacked,
    108-114 where the base did 150-158. For the batch, the LoRA layers are
    switched off and a hook on each base layer adds the update as PEFT's ``lora.Linear`` adds one
    adapter's (the input cast to the adapter's dtype, the sum cast back to the output's).
    Only float summation order differs from one adapter alone. ``close`` restores the layers."""

    def __init__(self, model):
        from peft.tuners.lora import LoraLayer

        self._switch_off([m for m in model.modules() if isinstance(m, LoraLayer)])
        self._order = [BASE_ROWS, *sorted(model.peft_config)]
        self._weights: list[tuple[torch.Tensor, torch.Tensor, tuple, tuple]] = []
        # per decoding stream (_decode_streams): the rows' adapter indices and the masks and
        # scalings computed from them (_row_terms)
        self._state = threading.local()
        try:
            for k, layer in enumerate(self._layers):
                names = [n for n in self._order[1:] if n in layer.lora_A]
                a = torch.cat([layer.lora_A[n].weight.detach() for n in names])
                b = torch.cat([layer.lora_B[n].weight.detach() for n in names], dim=1)
                # the adapter (index into self._order) of each stacked rank column, and each
                # adapter's scaling (0 where the layer has none: base rows and untargeted adapters)
                owner = tuple(self._order.index(n) for n in names for _ in range(layer.lora_A[n].weight.shape[0]))
                scale = tuple(float(layer.scaling.get(n, 0.0)) if n in layer.lora_A else 0.0 for n in self._order)
                self._weights.append((a, b, owner, scale))
                layer._disable_adapters = True  # the hook below does its work, row by row
                self._handles.append(layer.base_layer.register_forward_hook(self._hook(k)))
        except BaseException:
            self.close()
            raise

    @staticmethod
    def usable(model) -> bool:
        """Whether every LoRA layer of ``model`` is a plain dense ``lora.Linear`` this class can
        mix (no LoRA variant, bias, merged weights or trained whole modules); else PEFT's own
        mixed forward (:class:`_LoraRows`) runs."""
        from peft.tuners.lora import LoraLayer
        from peft.tuners.lora.layer import Linear
        from peft.utils.other import AuxiliaryTrainingWrapper

        for module in model.modules():
            if isinstance(module, AuxiliaryTrainingWrapper):
                return False
            if isinstance(module, LoraLayer):
                if type(module) is not Linear or module.merged or module.lora_variant \
                        or any(module.lora_bias.values()) or any(module.use_dora.values()):
                    return False
        return True

    def _hook(self, k: int):
        def hook(module, args, output):
            a, b, owner, scale = self._weights[k]
            mask, scaling = self._row_terms(owner, scale, a.dtype)
            x = args[0].to(a.dtype)
            delta = torch.nn.functional.linear(torch.nn.functional.linear(x, a) * mask, b) * scaling
            return (output + delta).to(output.dtype)
        return hook

    def _row_terms(self, owner: tuple, scale: tuple, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """The rows' rank mask ``[rows, 1, sum of ranks]`` and scaling ``[rows, 1, 1]`` for a layer
        of this stacking, computed once per ``set`` for every layer that shares it."""
        key = (owner, scale, dtype)
        rows = self._state.rows
        if key not in rows:
            index = self._state.index
            owners = torch.tensor(owner, device=index.device)
            mask = (owners[None, :] == index[:, None]).to(dtype)[:, None, :]
            scaling = torch.tensor(scale, dtype=dtype, device=index.device)[index][:, None, None]
            rows[key] = (mask, scaling)
        return rows[key]

    def set(self, names: list[str]) -> None:
        device = self._weights[0][0].device if self._weights else None
        self._state.index = torch.tensor([self._order.index(n) for n in names], device=device)
        self._state.rows = {}


class _IA3Rows(_HookedLayers):
    """Each row's IA3 adapter in a mixed batch (PEFT has none for IA3: Liu et al. 2022, "Few-Shot
    Parameter-Efficient Fine-Tuning is Better and Cheaper than In-Context Learning",
    arXiv:2205.05638, sec. 3.3, rescale keys, values and the feed-forward's inner activations by
    learned vectors). For the batch, every IA3 layer is switched off and hooks on its base layer
    apply, per row, what PEFT's ``ia3.Linear.forward`` applies for one adapter: the input times
    the row's vector (feed-forward layers) or the output times it (others), in the vector's
    dtype and cast back as PEFT casts. Base rows, and adapters that do not target a layer, are
    scaled by ones there, which leaves every value as it is. ``set`` changes the rows' names
    before a forward call (rows leave the batch as they finish); ``close`` restores the layers."""

    def __init__(self, model):
        from peft.tuners.ia3.layer import IA3Layer

        self._switch_off([m for m in model.modules() if isinstance(m, IA3Layer)])
        self._order = [BASE_ROWS, *sorted(model.peft_config)]
        self._tables: list[torch.Tensor] = []
        self._state = threading.local()  # the rows' scales per layer, per decoding stream (_decode_streams)
        try:
            for k, layer in enumerate(self._layers):
                vectors = {n: v.detach().flatten() for n, v in layer.ia3_l.items()}
                ones = torch.ones_like(next(iter(vectors.values())))
                # row i of the table: the vector of self._order[i]
                self._tables.append(torch.stack([vectors.get(n, ones) for n in self._order]))
                layer._disable_adapters = True  # the hooks below do its work, row by row
                if layer.is_feedforward:
                    self._handles.append(layer.base_layer.register_forward_pre_hook(self._input_hook(k)))
                else:
                    self._handles.append(layer.base_layer.register_forward_hook(self._output_hook(k)))
        except BaseException:
            self.close()
            raise

    @staticmethod
    def refusal(model) -> str | None:
        """Why this class cannot mix ``model``'s IA3 layers; None when it can."""
        from peft.tuners.ia3.layer import IA3Layer, Linear

        for name, module in model.named_modules():
            if isinstance(module, IA3Layer):
                if type(module) is not Linear:
                    return f"IA3 layer {name} is a {type(module).__name__}, not a dense ia3.Linear"
                if module.merged:
                    return f"IA3 layer {name} has adapters merged into its weights"
        return None

    def _input_hook(self, k: int):
        def hook(module, args):
            x, *rest = args
            scale = self._state.scale[k]
            return ((x.to(scale.dtype) * scale).to(x.dtype), *rest)
        return hook

    def _output_hook(self, k: int):
        def hook(module, args, output):
            return (output * self._state.scale[k]).to(output.dtype)
        return hook

    def set(self, names: list[str]) -> None:
        index = torch.tensor([self._order.index(n) for n in names], device=self._tables[0].device)
        self._state.scale = [table[index][:, None, :] for table in self._tables]



#: What gives the rows of a mixed batch their adapters inside the layers (:func:`_row_adapters`).
_RowAdapters = _LoraRows | _LoraMatmulRows | _IA3Rows


#: A prefill bucket closes when the next (shorter) row would waste more than this share of the
#: bucket's padded tokens, and holds at least :data:`MIN_BUCKET_ROWS` rows. On the quickstart's
#: 135 prompts, 0.06 pads 2,905 tokens for 2,712 (0.15 padded 3,168) and generated 2.5% faster
#: (median of 3 alternating runs; 0.03, with more, smaller buckets, was slower).
BUCKET_WASTE = 0.06
MIN_BUCKET_ROWS = 8


def prefill_buckets(lengths: list[int]) -> list[tuple[int, int]]:
    """Contiguous ``(start, stop)`` index ranges of ``lengths`` (sorted longest first) encoded as
    one prefill batch each: a row joins the open bucket while the bucket's padding stays within
    :data:`BUCKET_WASTE` of its tokens, or while the bucket has fewer than
    :data:`MIN_BUCKET_ROWS` rows (a tiny batch costs more in overhead than padding saves)."""
    buckets: list[tuple[int, int]] = []
    start = 0
    for i in range(1, len(lengths)):
        width, n = lengths[start], i + 1 - start
        waste = 1 - sum(lengths[start:i + 1]) / (width * n)
        if waste > BUCKET_WASTE and i - start >= MIN_BUCKET_ROWS:
            buckets.append((start, i))
            start = i
    if buckets and len(lengths) - start < MIN_BUCKET_ROWS:  # a short tail joins the bucket before it
        start = buckets.pop()[0]
    buckets.append((start, len(lengths)))
    return buckets


def _bucketed_first_step(model, prefix: list[int], rests: list[list[int]], pad_id: int, device: torch.device,
                         adapters: list[str] | None, row_adapters: "_RowAdapters | None", tokens: "_NextTokens", *,
                         room: int):
    """:func:`_first_step` for ``rests`` (sorted longest first) in length buckets
    (:func:`prefill_buckets`), so short prompts are not padded to the longest one, then merged
    into one decoding batch: ``(first new token [B], cache, mask)`` with the cache laid out
    ``[head, padding, row tokens]`` for every row, exactly as one left-padded batch would be
    (the inserted padding is masked). Falls back to one batch when the cache is not a plain
    :class:`~transformers.DynamicCache` (sliding-window or quantised layers). A plain cache comes
    back with buffers for ``room`` more positions (:func:`_preallocate`); merged buckets are
    written straight into them, one copy instead of a concatenation and then a copy."""
    buckets = prefill_buckets([len(r) for r in rests])
    parts = []
    heads: dict = {}  # the head's cache per adapter, encoded by the first bucket and copied for the others
    for start, stop in buckets:
        ids, mask = _left_pad(rests[start:stop], pad_id, device)
        step, cache, full_mask = _first_step(model, prefix, ids, mask, tokens,
                                             None if adapters is None else adapters[start:stop], row_adapters, heads)
        if len(buckets) > 1 and not _plain_dynamic(cache):
            # not mergeable: known after the first bucket, so only that one is encoded twice
            ids, mask = _left_pad(rests, pad_id, device)
            return _first_step(model, prefix, ids, mask, tokens, adapters, row_adapters, heads)
        parts.append((step, cache, full_mask, full_mask.shape[1] - ids.shape[1]))
    if len(parts) == 1:
        _preallocate(parts[0][1], room)
        return parts[0][0], parts[0][1], parts[0][2]
    width = max(m.shape[1] for _, _, m, _ in parts)
    head = parts[0][3]
    cache = parts[0][1]
    layer_class = _preallocated_layer_class()
    total = sum(m.shape[0] for _, _, m, _ in parts)
    merged = []
    for li in range(len(cache.layers)):
        buffers = []
        for kind in ("keys", "values"):
            first = getattr(cache.layers[li], kind)
            buffer = first.new_empty((total, first.shape[1], width + room, first.shape[3]))
            row = 0
            for _, c, m, _ in parts:
                t = getattr(c.layers[li], kind)
                n, pad = t.shape[0], width - m.shape[1]
                buffer[row:row + n, :, :head] = t[:, :, :head]
                # masked zeros between the head and the row's own (left-padded) tokens
                buffer[row:row + n, :, head:head + pad] = 0
                buffer[row:row + n, :, head + pad:width] = t[:, :, head:]
                row += n
            buffers.append(buffer)
        merged.append(layer_class(*buffers, width))
    cache.layers = merged
    masks = [torch.cat([m[:, :head], m.new_zeros(m.shape[0], width - m.shape[1]), m[:, head:]], dim=1) for _, _, m, _ in parts]
    return torch.cat([first for first, _, _, _ in parts]), cache, torch.cat(masks)


@functools.cache
def _preallocated_layer_class() -> type:
    """``DynamicLayer`` with preallocated buffers (transformers is imported lazily, hence a
    class built on first use): each decoding step writes its key and value in place instead of
    concatenating the whole cache (``DynamicLayer.update`` copies every cached position at
    every step: 18% of a batch-128 decode here). ``keys``/``values`` are views of the buffers."""
    from transformers.cache_utils import DynamicLayer

    class PreallocatedLayer(DynamicLayer):
        def __init__(self, keys: torch.Tensor, values: torch.Tensor, n: int):
            """A layer over buffers ``keys``/``values`` whose first ``n`` positions are filled."""
            super().__init__()
            self._k, self._v, self._n = keys, values, n
            self.device, self.is_initialized = keys.device, True
            self._views()

        @classmethod
        def copying(cls, keys: torch.Tensor, values: torch.Tensor, capacity: int) -> "PreallocatedLayer":
            """A layer holding a copy of ``keys``/``values`` in buffers of ``capacity`` positions."""
            b, h, n, d = keys.shape
            k = keys.new_empty((b, h, capacity, d))
            v = values.new_empty((b, values.shape[1], capacity, values.shape[3]))
            k[:, :, :n] = keys
            v[:, :, :n] = values
            return cls(k, v, n)

        def _views(self) -> None:
            self.keys, self.values = self._k[:, :, :self._n], self._v[:, :, :self._n]

        def update(self, key_states, value_states, *args, **kwargs):
            m = key_states.shape[-2]
            if self._n + m > self._k.shape[2]:  # more than planned: grow by half at once
                grow = max(m, self._k.shape[2] // 2)
                self._k = torch.cat([self._k, self._k.new_empty(self._k.shape[:2] + (grow, self._k.shape[3]))], dim=2)
                self._v = torch.cat([self._v, self._v.new_empty(self._v.shape[:2] + (grow, self._v.shape[3]))], dim=2)
            self._k[:, :, self._n:self._n + m] = key_states
            self._v[:, :, self._n:self._n + m] = value_states
            self._n += m
            self._views()
            return self.keys, self.values

        def get_seq_length(self) -> int:
            return self._n

        def batch_select_indices(self, indices: torch.Tensor) -> None:
            self._k, self._v = self._k[indices], self._v[indices]
            self._views()

    return PreallocatedLayer


def _preallocate(cache, extra: int) -> None:
    """Give every layer of a plain ``DynamicCache`` room for ``extra`` more positions."""
    if not _plain_dynamic(cache):
        return
    layer_class = _preallocated_layer_class()
    cache.layers = [layer_class.copying(layer.keys, layer.values, layer.keys.shape[2] + extra) for layer in cache.layers]


def _plain_dynamic(cache) -> bool:
    from transformers.cache_utils import DynamicLayer

    layers = getattr(cache, "layers", None)
    return bool(layers) and all(type(layer) is DynamicLayer for layer in layers)


def _first_step(model, prefix: list[int], input_ids: torch.Tensor, attention_mask: torch.Tensor,
                tokens: "_NextTokens", adapters: list[str] | None = None, row_adapters: "_RowAdapters | None" = None,
                heads: dict | None = None):
    """The prompt's forward pass: ``(first new token [B], cache, mask)`` where ``mask`` covers
    everything in the cache. Only the last position's logits are computed: through
    ``tokens`` (:class:`_NextTokens`), whose decoder, where it has one, runs without the head
    (the lean step then skips what only the other positions' outputs need).

    The *head* -- a prompt-learning adapter's virtual tokens or prefix, then ``prefix`` (tokens
    every row starts with) -- is encoded once at batch size 1 and its cache repeated for every
    row; the left-padded rest of each row follows it, so the cache reads
    ``[head, padding, row tokens]`` and positions count only unmasked entries. In a mixed batch
    (``adapters``: each row's adapter) the head is encoded once per adapter, and each row gets
    its own adapter's (:func:`_per_row_heads`); for LoRA and IA3, ``row_adapters`` passes each row's
    adapter to the layers of the transformer, which is then called directly. ``heads``: a dict
    shared by the calls for one batch's prefill buckets, which keeps each adapter's head cache
    (at batch size 1, the same computation whichever bucket asks) so it is encoded once per batch,
    not once per bucket (4 x 24 tokens through 30 layers for the quickstart's prompts: 3% of the prefill)."""
    cfg = prompt_learning_config(model)
    # the transformer itself (LoRA/IA3 layers live inside it): PeftModel.forward takes **kwargs,
    # so whether logits_to_keep is understood is read from the model it forwards them to
    base = base_model(model)
    keep = {"logits_to_keep": 1} if _accepts(base, "logits_to_keep") else {}
    bs, device = input_ids.shape[0], input_ids.device
    head_ids = torch.tensor([prefix], dtype=input_ids.dtype, device=device)
    if cfg is None:
        head_len = len(prefix)

        def head(name: str | None):
            if name is not None and row_adapters is not None:
                row_adapters.set([name])
            return output_cache((model if row_adapters is None else base)(
                input_ids=head_ids, attention_mask=torch.ones_like(head_ids), use_cache=True, **keep))
    else:
        head_len = cfg.num_virtual_tokens + len(prefix)

        def head(name: str | None):
            if name is None:
                return _prompt_head(model, cfg, head_ids, keep)
            active = model.active_adapter
            model.set_adapter(name, inference_mode=True)
            try:
                return _prompt_head(model, cfg, head_ids, keep)
            finally:
                model.set_adapter(active, inference_mode=True)
    if heads is not None:
        encode = head

        def head(name: str | None):
            if name not in heads:
                heads[name] = encode(name)
            # a copy: batch_repeat_interleave and _per_row_heads replace the layers' tensors
            return copy.deepcopy(heads[name])
    cache = None
    if adapters is not None and head_len:
        cache = _per_row_heads(head, adapters, device)
    elif head_len:
        cache = head(None)
        cache.batch_repeat_interleave(bs)
    mask = torch.cat([attention_mask.new_ones((bs, head_len)), attention_mask], dim=1)
    if row_adapters is not None:
        row_adapters.set(adapters)
    positions = padded_positions(mask)[:, head_len:]
    if tokens.lean is not None:
        # a mixed LoRA or IA3 batch's hooks give each batch row its adapter: its padding stays in
        out = tokens.lean(input_ids=input_ids, attention_mask=mask, position_ids=positions, cache=cache, last_only=True,
                          skip_padding=row_adapters is None)
    elif tokens.decoder is not None:
        out = tokens.decoder(input_ids=input_ids, attention_mask=mask, position_ids=positions, use_cache=True,
                             **cache_kwargs(tokens.decoder, cache))
    else:
        out = (model if cfg is None and row_adapters is None else base)(
            input_ids=input_ids, attention_mask=mask, position_ids=positions, use_cache=True,
            **keep, **cache_kwargs(base, cache))
    return tokens(out), output_cache(out), mask


def _prompt_head(model, cfg, head_ids: torch.Tensor, keep: dict):
    """The cache of a prompt-learning adapter's head at batch size 1: its virtual tokens or
    prefix, then ``head_ids`` (the rows' shared tokens, possibly none) after them."""
    from peft import PeftType

    base, device = base_model(model), head_ids.device
    nvt = cfg.num_virtual_tokens
    head_len = nvt + head_ids.shape[1]
    head_mask = torch.ones((1, head_len), dtype=torch.long, device=device)
    if cfg.peft_type == PeftType.PREFIX_TUNING:
        cache = model.get_prompt(batch_size=1)
        if head_ids.shape[1]:
            cache = output_cache(base(input_ids=head_ids, attention_mask=head_mask,
                                      position_ids=torch.arange(nvt, head_len, device=device)[None],
                                      use_cache=True, **keep, **cache_kwargs(base, cache)))
        return cache
    if cfg.peft_type in (PeftType.PROMPT_TUNING, PeftType.P_TUNING):
        tokens = model.word_embeddings(head_ids)
        embeds = torch.cat([model.get_prompt(batch_size=1).to(tokens.dtype), tokens], dim=1)
        return output_cache(base(inputs_embeds=embeds, attention_mask=head_mask, use_cache=True, **keep))
    raise NotImplementedError(f"generation with a {cfg.peft_type} adapter is not supported")


def _per_row_heads(head: Callable, adapters: list[str], device: torch.device):
    """The head's cache for a mixed batch: ``head(name)`` (batch size 1) under each distinct
    adapter of ``adapters``, as a one-adapter batch encodes it, laid out one row per entry of
    ``adapters``."""
    names = sorted(set(adapters))
    heads = [head(name) for name in names]
    if not all(_plain_dynamic(h) for h in heads):
        raise ValueError("cannot mix adapters in one batch: the model's cache is not a plain DynamicCache "
                         "(sliding-window or quantised layers)")
    index = torch.tensor([names.index(a) for a in adapters], device=device)
    cache = heads[0]
    for li, layer in enumerate(cache.layers):
        layer.keys = torch.cat([h.layers[li].keys for h in heads])[index]
        layer.values = torch.cat([h.layers[li].values for h in heads])[index]
    return cache


def _decoding_forward(model):
    """What one decoding step calls: the base model for prompt-learning adapters (their virtual
    tokens are already in the cache), the model itself otherwise."""
    return model.get_base_model() if prompt_learning_config(model) is not None else model


def _accepts(module, argument: str) -> bool:
    return argument in forward_params(type(module))


#: Compiled decoding pads prompts to a multiple of this many tokens, so that batches of
#: similar prompts share one static cache shape and one compiled graph.
STATIC_WIDTH = 64


def _not_compilable(model, device: torch.device) -> str | None:
    """Why compiled decoding does not apply to ``model`` on ``device``; None when it does."""
    if device.type != "cuda":
        return f"it applies on CUDA GPUs only, not on {device.type}"
    if prompt_learning_config(model) is not None:
        return "prompt-learning adapters decode through this module's own loop"
    return None


def _static_batch(model, rows: list[list[int]], *, stop: set[int], pad_id: int, max_new_tokens: int,
                  device: torch.device) -> list[list[int]]:
    """:func:`_greedy_batch` through ``model.generate`` with a static KV cache, which
    transformers decodes with ``torch.compile`` (``CompileConfig``: inductor, CUDA graphs) on
    CUDA. Every row stays in the batch until the last one stops (a fixed shape is what lets
    the compiled step be replayed); prompts are left-padded to a multiple of
    :data:`STATIC_WIDTH` tokens, so a new graph is compiled only for a new width or batch size.
    The first batch of each shape pays the compilation (tens of seconds on a 7-8B model)."""
    return _hf_generate_batch(model, rows, stop=stop, pad_id=pad_id, max_new_tokens=max_new_tokens, device=device,
                              static=True)


def _hf_generate_batch(model, rows: list[list[int]], *, stop: set[int], pad_id: int, max_new_tokens: int,
                       device: torch.device, static: bool = False) -> list[list[int]]:
    """:func:`_greedy_batch` through ``model.generate`` (for models whose generation config adds
    logits processing; with ``static``, see :func:`_static_batch`); rows are cut at their first
    stop token."""
    width = -(-max(len(r) for r in rows) // STATIC_WIDTH) * STATIC_WIDTH if static else None
    input_ids, attention_mask = _left_pad(rows, pad_id, device, width)
    gen_kwargs = dict(max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=sorted(stop) or None,
                      pad_token_id=pad_id)
    if static:
        gen_kwargs["cache_implementation"] = "static"
    cfg = prompt_learning_config(model)
    if cfg is None:
        out = model.generate(input_ids=input_ids, attention_mask=attention_mask, **gen_kwargs)[:, input_ids.shape[1]:]
    else:
        from peft import PeftType

        base = model.get_base_model()
        bs, nvt = input_ids.shape[0], cfg.num_virtual_tokens
        mask = torch.cat([attention_mask.new_ones((bs, nvt)), attention_mask], dim=1)
        if cfg.peft_type == PeftType.PREFIX_TUNING:
            # placeholders stand for the positions the prefix cache covers, which generate skips
            ids = torch.cat([input_ids.new_full((bs, nvt), pad_id), input_ids], dim=1)
            out = base.generate(input_ids=ids, attention_mask=mask, **cache_kwargs(base, model.get_prompt(batch_size=bs)),
                                **gen_kwargs)[:, ids.shape[1]:]
        elif cfg.peft_type in (PeftType.PROMPT_TUNING, PeftType.P_TUNING):
            embeds = model.word_embeddings(input_ids)
            prompts = model.get_prompt(batch_size=bs).to(embeds.dtype)
            # with inputs_embeds only, generate() returns just the new tokens
            out = base.generate(inputs_embeds=torch.cat([prompts, embeds], dim=1), attention_mask=mask, **gen_kwargs)
        else:
            raise NotImplementedError(f"generation with a {cfg.peft_type} adapter is not supported")
    return [row[:next((k for k, t in enumerate(row) if t in stop), len(row))] for row in out.tolist()]
