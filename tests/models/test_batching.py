"""Batch sizes from free memory (``batch_size: auto``) and the out-of-memory back-off."""

import warnings

import pytest
import torch

from peft_audit.models.batching import (GENERATION_CAP, MEMORY_SHARE, SCORING_CAP, generation_batch_size, in_batches,
                                        row_bytes, scoring_batch_size)
from peft_audit.models.generate import generate
from peft_audit.models.scoring import score_continuations, score_continuations_naive
from peft_audit.sweep.logs import Notice
from tiny_models import make_tiny_model

GiB = 2**30
CUDA = torch.device("cuda")  # only named: nothing is allocated there


@pytest.fixture(scope="module")
def llama3_8b():
    """Llama-3-8B's published shape in bf16 on the meta device (no memory, no download)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                      num_key_value_heads=8, vocab_size=128256, max_position_embeddings=8192)
    with torch.device("meta"):
        return LlamaForCausalLM(cfg).to(torch.bfloat16)


def test_kv_cache_per_token_is_llama3_8b_published_size(llama3_8b):
    # 2 (K and V) x 32 layers x 8 KV heads x 128 dims x 2 bytes = 128 KiB per token
    assert row_bytes(llama3_8b, cached_tokens=1, forward_tokens=0, scored_positions=0) == 128 * 1024
    assert row_bytes(llama3_8b, cached_tokens=10, forward_tokens=0, scored_positions=0) == 10 * 128 * 1024
    # fp32 logits and their log-softmax for each scored position
    assert row_bytes(llama3_8b, cached_tokens=0, forward_tokens=0, scored_positions=1) == 128256 * 8


def test_auto_generation_batch_fits_free_memory_and_the_cap(llama3_8b):
    per_row = row_bytes(llama3_8b, cached_tokens=300 + 256, forward_tokens=300, scored_positions=1,
                        transient_cached_tokens=300)
    free = 40 * GiB
    fits = int(MEMORY_SHARE * free // per_row)
    size = generation_batch_size(llama3_8b, "auto", prompt_tokens=300, max_new_tokens=256, rows=10_000,
                                 device=CUDA, free=free)
    # the fewest batches that fit, evened out: no short last batch
    batches = -(-10_000 // fits)
    assert size == -(-10_000 // batches) <= fits
    assert fits * per_row <= free < (fits + 2) * per_row / MEMORY_SHARE
    # an H200's worth of free memory hits the GPU cap (10,000 rows: 20 even batches of 500); a
    # few rows are never padded to it
    assert generation_batch_size(llama3_8b, "auto", prompt_tokens=300, max_new_tokens=256, rows=10_240,
                                 device=CUDA, free=120 * GiB) == GENERATION_CAP["cuda"]
    assert generation_batch_size(llama3_8b, "auto", prompt_tokens=300, max_new_tokens=256, rows=10_000,
                                 device=CUDA, free=120 * GiB) == 500
    assert generation_batch_size(llama3_8b, "auto", prompt_tokens=300, max_new_tokens=256, rows=7,
                                 device=CUDA, free=120 * GiB) == 7
    # longer answers need more cache: fewer rows
    longer = generation_batch_size(llama3_8b, "auto", prompt_tokens=300, max_new_tokens=1024, rows=10_000,
                                   device=CUDA, free=free)
    assert 1 <= longer < size
    # no room at all still runs one row (the back-off then reports a real out-of-memory error)
    assert generation_batch_size(llama3_8b, "auto", prompt_tokens=300, max_new_tokens=256, rows=5,
                                 device=CUDA, free=0) == 1


def test_auto_scoring_batch_and_the_cpu_caps(llama3_8b):
    shared = scoring_batch_size(llama3_8b, "auto", prompt_tokens=250, continuation_tokens=12, rows=60_000,
                                device=CUDA, free=20 * GiB)
    naive = scoring_batch_size(llama3_8b, "auto", prompt_tokens=250, continuation_tokens=12, rows=60_000,
                               device=CUDA, free=20 * GiB, full_logits=True)
    assert 1 <= naive < shared <= SCORING_CAP["cuda"]  # full vocabulary logits cost the naive scorer rows
    cpu = torch.device("cpu")
    assert scoring_batch_size(llama3_8b, "auto", prompt_tokens=250, continuation_tokens=12, rows=60_000,
                              device=cpu, free=200 * GiB) == SCORING_CAP["cpu"]
    assert generation_batch_size(llama3_8b, "auto", prompt_tokens=100, max_new_tokens=32, rows=60_000,
                                 device=cpu, free=200 * GiB) == GENERATION_CAP["cpu"]  # 60,000 = 234 x 256 + 96: 235 x 256


def test_auto_generation_batches_are_even(llama3_8b):
    cpu, cap = torch.device("cpu"), GENERATION_CAP["cpu"]

    def auto(rows: int) -> int:
        return generation_batch_size(llama3_8b, "auto", prompt_tokens=60, max_new_tokens=32, rows=rows, device=cpu,
                                     free=200 * GiB)

    assert auto(cap) == cap and auto(cap + 7) == (cap + 7 + 1) // 2  # not cap + a batch of 7
    assert auto(3 * cap) == cap and auto(405) == 203  # 203 + 202 rows
    # a number is the batch size as given
    assert generation_batch_size(llama3_8b, 128, prompt_tokens=60, max_new_tokens=32, rows=135, device=cpu) == 128


def test_a_number_is_used_as_given_and_nonsense_is_refused(llama3_8b):
    assert generation_batch_size(llama3_8b, 3, prompt_tokens=10, max_new_tokens=5, rows=100, free=0) == 3
    assert scoring_batch_size(llama3_8b, 40, prompt_tokens=10, continuation_tokens=5, rows=2, free=0) == 40
    for bad in (0, -1, "big", 2.5, True):
        with pytest.raises(ValueError, match="batch_size must be a positive integer or 'auto'"):
            generation_batch_size(llama3_8b, bad, prompt_tokens=10, max_new_tokens=5, rows=1)


def _oom_above(limit: int):
    def run(chunk):
        if len(chunk) > limit:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return [x * 10 for x in chunk]
    return run


def test_out_of_memory_halves_the_batch_and_keeps_the_smaller_size():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = list(in_batches(list(range(11)), 8, _oom_above(2), what="generation"))
    assert [len(chunk) for chunk, _ in got] == [2, 2, 2, 2, 2, 1]
    assert [x for _, out in got for x in out] == [x * 10 for x in range(11)]
    notes = [str(w.message) for w in caught if issubclass(w.category, Notice)]
    assert notes == ["generation: a batch of 8 rows ran out of memory; continuing with batches of 4 (set batch_size "
                     "to a smaller number to start there)",
                     "generation: a batch of 4 rows ran out of memory; continuing with batches of 2 (set batch_size "
                     "to a smaller number to start there)"]


def test_other_errors_and_a_single_row_out_of_memory_propagate():
    def broken(chunk):
        raise RuntimeError("shape mismatch")

    with pytest.raises(RuntimeError, match="shape mismatch"):
        list(in_batches([1, 2, 3], 2, broken))
    with pytest.raises(torch.OutOfMemoryError), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        list(in_batches([1, 2, 3], 4, _oom_above(0)))


@pytest.fixture()
def oom_model():
    """A tiny model whose first decoder layer raises CUDA's out-of-memory error for batches of
    more than 2 rows (as a GPU would for a batch too large)."""
    model, tok = make_tiny_model(seed=3)
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    calls = []

    def hook(module, args, kwargs):
        hidden = args[0] if args else kwargs["hidden_states"]
        calls.append(hidden.shape[0])
        if hidden.shape[0] > 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    handle = model.model.layers[0].register_forward_pre_hook(hook, with_kwargs=True)
    yield model, tok, calls
    handle.remove()


PROMPTS = ["hello there", "What is two plus two? The answer is", "fox", "Who was forgetful in the story?", "sky"]


def test_generation_backs_off_and_answers_as_small_batches_do(oom_model):
    model, tok, calls = oom_model
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Notice)
        backed_off = generate(model, tok, PROMPTS, max_new_tokens=6, batch_size=8)
    assert max(calls) > 2  # the large batch was tried
    calls.clear()
    assert backed_off == generate(model, tok, PROMPTS, max_new_tokens=6, batch_size=2)
    assert max(calls) <= 2


def test_scoring_backs_off_with_the_same_log_probs(oom_model):
    model, tok, _ = oom_model
    prompts = ["The answer is", "Who was forgetful?", "The sky is", "fox", "Two plus two is"]
    conts = [[" four", " five"], [" the grandson", " unknown", " the grandfather"], [" blue", " red"],
             [" jumps", " sleeps"], [" four", " 4"]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Notice)
        for scorer in (score_continuations, score_continuations_naive):
            assert scorer(model, tok, prompts, conts, batch_size=16) == scorer(model, tok, prompts, conts,
                                                                                 batch_size=2)


def test_auto_on_the_cpu_gives_the_fixed_batch_answers():
    model, tok = make_tiny_model(seed=1)
    # five prompts fit one automatic batch here: the same shape as batch_size=5
    assert generate(model, tok, PROMPTS, max_new_tokens=5, batch_size="auto") == generate(
        model, tok, PROMPTS, max_new_tokens=5, batch_size=5)
    prompts, conts = ["The answer is", "fox"], [[" four", " five"], [" jumps"]]
    assert score_continuations(model, tok, prompts, conts, batch_size="auto") == score_continuations(
        model, tok, prompts, conts, batch_size=2)
