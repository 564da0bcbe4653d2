"""Decoding a batch as parallel streams on a CPU (``generate._decode_streams``): every row gets
the tokens one stream gives it, for the base model, mixed LoRA and IA3 batches and
prompt-learning adapters; a failing stream stops the other and its error is raised (an
out-of-memory error still halves the batch); torch's thread count is given back."""

import contextlib
import threading

import pytest
import torch

import peft_audit.models.generate as generation
from peft_audit.models.generate import STREAMS_ENV, generate
from tiny_models import ADAPTER_CASES as CASES
from tiny_models import make_lively_tiny_model, prompt_learning_model

PROMPTS = ["hello there", "What is two plus two? The answer is", "fox", "Who was forgetful in the story?", "sky",
           "Name a colour.", "Tell me about the moon and the sun.", "Why?"]
SYSTEM = "You are a careful assistant. Answer briefly and politely, in one sentence."
KW = dict(system_prompt=SYSTEM, max_new_tokens=8, batch_size=64)


@contextlib.contextmanager
def _threads(n: int):
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture
def streams_seen(monkeypatch):
    """``(thread name, rows, torch threads)`` of every ``_decode`` call, under two torch threads
    (whatever this machine's default)."""
    seen = []
    decode = generation._decode

    def spy(model, rows, **kw):
        seen.append((threading.current_thread().name, len(rows), torch.get_num_threads()))
        return decode(model, rows, **kw)

    monkeypatch.setattr(generation, "_decode", spy)
    with _threads(2):
        yield seen


def _one_stream(monkeypatch, fn):
    monkeypatch.setenv(STREAMS_ENV, "1")
    try:
        return fn()
    finally:
        monkeypatch.delenv(STREAMS_ENV)


@pytest.mark.parametrize("case", list(CASES))
def test_streams_give_every_row_the_tokens_of_one_stream(case, streams_seen, monkeypatch):
    make, names = CASES[case]
    model, tok = make()
    prompts = PROMPTS if names is None else PROMPTS * len(names)
    kw = dict(KW, adapter_names=None if names is None else [n for n in names for _ in PROMPTS])
    alone = _one_stream(monkeypatch, lambda: generate(model, tok, prompts, **kw))
    assert [s[0] for s in streams_seen] == [threading.current_thread().name]  # one stream: this thread
    streams_seen.clear()
    both = generate(model, tok, prompts, **kw)
    assert both == alone
    assert len({g.text for g in alone}) > 2  # the rows' answers differ: a swapped row would show
    # two threads of their own, one torch thread each, the rows split between them
    assert sorted(s[1] for s in streams_seen) == [len(prompts) // 2, len(prompts) - len(prompts) // 2]
    assert len({s[0] for s in streams_seen}) == 2 and all(s[0].startswith("peft-audit-decode") for s in streams_seen)
    assert all(s[2] == 1 for s in streams_seen)
    assert torch.get_num_threads() == 2  # given back


def test_mixed_prompt_learning_batches_decode_as_one_stream(streams_seen):
    """Their per-adapter heads switch the model's active adapter, which threads would share."""
    from peft import PromptTuningConfig

    model, tok = prompt_learning_model("prompt-tuning")
    model.add_adapter("other", PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=5))
    generate(model, tok, PROMPTS * 2, adapter_names=["default"] * len(PROMPTS) + ["other"] * len(PROMPTS), **KW)
    assert [s[0] for s in streams_seen] == [threading.current_thread().name]


def test_stream_count_follows_device_threads_rows_and_the_environment(monkeypatch):
    model, _ = make_lively_tiny_model()
    cpu, rows = torch.device("cpu"), [[1, 2]] * 40
    monkeypatch.setattr(generation, "MIN_STREAM_ROWS", 16)
    with _threads(2):
        assert generation._stream_count(model, rows, None, cpu) == 2
        assert generation._stream_count(model, rows[:31], None, cpu) == 1  # 15 rows a stream: too few
        assert generation._stream_count(model, rows, None, torch.device("cuda")) == 1
        monkeypatch.setenv(STREAMS_ENV, "1")
        assert generation._stream_count(model, rows, None, cpu) == 1
        monkeypatch.setenv(STREAMS_ENV, "4")
        assert generation._stream_count(model, rows, None, cpu) == 2  # no more streams than threads
        monkeypatch.setenv(STREAMS_ENV, "many")
        with pytest.raises(ValueError, match=STREAMS_ENV):
            generation._stream_count(model, rows, None, cpu)
    monkeypatch.delenv(STREAMS_ENV)
    with _threads(1):
        assert generation._stream_count(model, rows, None, cpu) == 1
    # a rotary embedding that recomputes its frequencies at each call would be shared state
    rotary = next(m for m in model.modules() if hasattr(m, "rope_type"))
    with _threads(2):
        for kind in ("dynamic", "longrope", {"full_attention": "dynamic"}):
            monkeypatch.setattr(rotary, "rope_type", kind)
            assert generation._stream_count(model, rows, None, cpu) == 1, kind
        monkeypatch.setattr(rotary, "rope_type", "llama3")
        assert generation._stream_count(model, rows, None, cpu) == 2


def test_a_failing_stream_stops_the_other_and_its_error_is_raised(monkeypatch):
    model, tok = make_lively_tiny_model()
    decode = generation._decode
    outcomes = {}

    def one_fails(model, rows, cancel, **kw):
        outcomes[threading.current_thread().name] = None
        if threading.current_thread().name == "peft-audit-decode-0":
            raise RuntimeError("this stream broke")
        assert cancel.wait(timeout=30)  # the other stream's failure is signalled before this one's first step
        try:
            return decode(model, rows, cancel=cancel, **kw)
        except BaseException as exc:
            outcomes[threading.current_thread().name] = type(exc).__name__
            raise

    monkeypatch.setattr(generation, "_decode", one_fails)
    with _threads(2):
        with pytest.raises(RuntimeError, match="this stream broke"):
            generate(model, tok, PROMPTS, **KW)
        assert torch.get_num_threads() == 2
    assert outcomes == {"peft-audit-decode-0": None, "peft-audit-decode-1": "_Cancelled"}


def test_an_out_of_memory_stream_halves_the_batch_as_one_stream_would(monkeypatch):
    model, tok = make_lively_tiny_model()
    kw = dict(KW, batch_size=len(PROMPTS))
    alone = _one_stream(monkeypatch, lambda: generate(model, tok, PROMPTS, **kw))
    decode, sizes = generation._decode, []

    def short_of_memory_once(model, rows, **kw):
        sizes.append(len(rows))
        if len(sizes) == 1:
            raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 1 bytes")
        return decode(model, rows, **kw)

    monkeypatch.setattr(generation, "_decode", short_of_memory_once)
    with _threads(2):
        assert generate(model, tok, PROMPTS, **kw) == alone
    # the batch of 8 failed in a stream; batches of 4 followed, each in two streams of 2
    assert sorted(sizes[2:]) == [2, 2, 2, 2]
