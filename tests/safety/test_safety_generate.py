"""Batched greedy generation: order, left padding, EOS, and PEFT adapters of every method."""

from types import SimpleNamespace

import pytest
import torch

from peft_audit.config import METHODS
from peft_audit.models.generate import Generation, chat_input_ids, generate
from tiny_models import make_lively_tiny_model, make_tiny_model

PROMPTS = ["hello there", "What is two plus two? The answer is", "fox", "Who was forgetful in the story?", "sky"]


@pytest.fixture(scope="module")
def lively():
    return make_lively_tiny_model()


def test_batched_equals_one_by_one_in_input_order(lively):
    model, tok = lively
    batched = generate(model, tok, PROMPTS, max_new_tokens=6, batch_size=3)
    single = [generate(model, tok, [p], max_new_tokens=6, batch_size=1)[0] for p in PROMPTS]
    assert batched == single
    assert len({g.text for g in batched}) > 1  # the outputs are prompt-dependent
    assert all(0 <= g.n_new_tokens <= 6 for g in batched)


def test_progress_counts_prompts(lively):
    model, tok = lively
    seen = []
    generate(model, tok, PROMPTS, max_new_tokens=2, batch_size=2, progress=seen.append)
    assert seen == [2, 2, 1]


def test_empty_prompts():
    assert generate(object(), object(), []) == []


class _ScriptedCache:
    """Carries each batch row's identity (its prompt length) through the decoding steps."""

    def __init__(self, rows: torch.Tensor):
        self.rows = rows

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        self.rows = self.rows[indices]


class _ScriptedModel(torch.nn.Module):
    """Row with prompt length ``n`` emits ``scripts[n][k]`` at decoding step ``k``; records the
    arguments of every forward call. Its step is the number of calls so far, so a batch must
    decode as one stream (``PEFT_AUDIT_GENERATION_STREAMS=1``)."""

    def __init__(self, scripts: dict[int, list[int]], vocab_size: int):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.scripts, self.vocab_size = scripts, vocab_size
        self.calls = []

    def forward(self, input_ids, attention_mask, position_ids, cache=None, use_cache=True, **_):
        self.calls.append(dict(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids))
        cache = cache if cache is not None else _ScriptedCache(attention_mask.sum(dim=1))
        step = len(self.calls) - 1
        logits = torch.zeros(input_ids.shape[0], 1, self.vocab_size)
        for j, n in enumerate(cache.rows.tolist()):
            logits[j, 0, self.scripts[n][step]] = 1.0
        return SimpleNamespace(logits=logits, cache=cache)


def test_left_padding_greedy_stop_on_eos_and_finished_rows_leave(monkeypatch):
    monkeypatch.setenv("PEFT_AUDIT_GENERATION_STREAMS", "1")  # the scripted model counts steps by calls
    _, tok = make_tiny_model()
    hi = tok.encode("hello", add_special_tokens=False)
    eos, pad = tok.eos_token_id, tok.pad_token_id
    short, long = len(chat_input_ids(tok, "a")), len(chat_input_ids(tok, "a much longer prompt here"))
    # the short row stops first; the long one goes on (a pad token is not a stop token)
    scripts = {short: hi + [eos] + [pad] * 20, long: hi + [pad] + hi + [eos] + [pad] * 20}
    model = _ScriptedModel(scripts, len(tok))
    out = generate(model, tok, ["a", "a much longer prompt here"], max_new_tokens=20, batch_size=2)
    assert out[0] == Generation("hello", len(hi))  # cut at EOS; nothing after it decoded
    assert out[1].n_new_tokens == 2 * len(hi) + 1
    first = model.calls[0]
    ids, mask = first["input_ids"], first["attention_mask"]
    # rows are length-sorted (longest first); the short row is padded on the LEFT
    assert mask[1].tolist() == [0] * (long - short) + [1] * short
    assert ids[1, : long - short].eq(pad).all() and mask[0].all()
    assert first["position_ids"][1].tolist() == [0] * (long - short) + list(range(short))
    # the short row left the batch after its EOS; the long row went on alone, one step per token
    sizes = [c["input_ids"].shape[0] for c in model.calls]
    assert sizes == [2] * (len(hi) + 1) + [1] * (len(hi) + 1)
    last = model.calls[-1]
    assert last["position_ids"].tolist() == [[long + 2 * len(hi)]]
    assert last["attention_mask"].shape == (1, long + 2 * len(hi) + 1) and last["attention_mask"].all()


def test_a_finished_row_may_wait_in_the_batch_with_its_tokens_ignored(monkeypatch):
    """Finished rows leave only once enough of them (times the steps left) make the cache copy
    worth it (``DROP_FINISHED``); until then they are decoded and their tokens thrown away."""
    import peft_audit.models.generate as generation

    _, tok = make_tiny_model()
    hi = tok.encode("hello", add_special_tokens=False)
    eos, pad = tok.eos_token_id, tok.pad_token_id
    short, long = len(chat_input_ids(tok, "a")), len(chat_input_ids(tok, "a much longer prompt here"))
    # after its EOS the short row would say "hello" again: never part of its answer
    scripts = {short: hi + [eos] + hi * 10, long: hi + [pad] + hi + [eos] + [pad] * 20}
    monkeypatch.setattr(generation, "DROP_FINISHED", 1e9)
    monkeypatch.setenv("PEFT_AUDIT_GENERATION_STREAMS", "1")  # the scripted model counts steps by calls
    model = _ScriptedModel(scripts, len(tok))
    out = generate(model, tok, ["a", "a much longer prompt here"], max_new_tokens=20, batch_size=2)
    assert out[0] == Generation("hello", len(hi))
    assert out[1].n_new_tokens == 2 * len(hi) + 1
    assert [c["input_ids"].shape[0] for c in model.calls] == [2] * (2 * len(hi) + 2)


def test_system_prompt_is_rendered():
    _, tok = make_tiny_model()
    with_sys = tok.decode(chat_input_ids(tok, "hi", "Be careful."))
    assert "system" in with_sys and "Be careful." in with_sys and with_sys.index("Be careful.") < with_sys.index("hi")


def _peft_config(method):
    from peft import (IA3Config, LoraConfig, PrefixTuningConfig, PromptEncoderConfig, PromptTuningConfig)

    return {
        "lora": lambda: LoraConfig(task_type="CAUSAL_LM", r=4, target_modules=["q_proj", "v_proj"]),
        "ia3": lambda: IA3Config(task_type="CAUSAL_LM", target_modules=["v_proj", "down_proj"],
                                 feedforward_modules=["down_proj"]),
        "prompt-tuning": lambda: PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4),
        "p-tuning": lambda: PromptEncoderConfig(task_type="CAUSAL_LM", num_virtual_tokens=4, encoder_hidden_size=16),
        "prefix-tuning": lambda: PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4),
    }[method]()


def _greedy_reference(model, tok, prompt, max_new_tokens, stop=None, system_prompt=None):
    """Cache-free greedy decoding through the model's own forward (one prompt, no padding)."""
    new = _greedy_reference_ids(model, tok, prompt, max_new_tokens, stop, system_prompt)
    return tok.decode(new, skip_special_tokens=True).strip()


def _greedy_reference_ids(model, tok, prompt, max_new_tokens, stop=None, system_prompt=None):
    stop = stop if stop is not None else {tok.eos_token_id}
    ids, new = chat_input_ids(tok, prompt, system_prompt), []
    for _ in range(max_new_tokens):
        full = torch.tensor([ids + new])
        with torch.no_grad():
            logits = model(input_ids=full, attention_mask=torch.ones_like(full)).logits
        t = int(logits[0, -1].argmax())
        if t in stop:
            break
        new.append(t)
    return new


def _random_adapter(method, seed):
    from peft import get_peft_model

    model, _ = make_lively_tiny_model()
    peft_model = get_peft_model(model, _peft_config(method))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in peft_model.parameters():
            if p.requires_grad:
                p.copy_(torch.randn(p.shape, generator=g) * 2.0)
    return peft_model.eval()


@pytest.mark.parametrize("method", METHODS)
def test_adapter_of_every_method_is_applied_during_generation(method, lively):
    """Batched, left-padded generation equals a cache-free greedy loop over the PEFT model's
    forward, and differs from the base model and between two adapters: for prompt-learning
    methods this proves the virtual tokens / prefix are injected while generating."""
    base_model, tok = lively
    base = generate(base_model, tok, PROMPTS, max_new_tokens=6, batch_size=3)
    a, b = _random_adapter(method, 1), _random_adapter(method, 2)
    out_a = generate(a, tok, PROMPTS, max_new_tokens=6, batch_size=3)
    out_b = generate(b, tok, PROMPTS, max_new_tokens=6, batch_size=3)
    assert [g.text for g in out_a] == [_greedy_reference(a, tok, p, 6) for p in PROMPTS]
    assert out_a != base and out_a != out_b


@pytest.mark.parametrize("drop", [0.0, 1e9], ids=["leave-at-once", "leave-at-the-end"])
@pytest.mark.parametrize("method", [None, *METHODS])
def test_rows_that_stop_early_leave_the_batch_without_changing_the_others(method, drop, monkeypatch):
    """With a stop token that ends rows at different steps (and not at all for others), every
    row still equals the cache-free greedy loop: dropping finished rows (and their cache, or
    their prefix) keeps the remaining rows aligned, and a finished row kept in the batch adds
    nothing to its answer."""
    import peft_audit.models.generate as generation

    monkeypatch.setattr(generation, "DROP_FINISHED", drop)
    model = make_lively_tiny_model()[0].eval() if method is None else _random_adapter(method, 1)
    tok = make_tiny_model()[1]
    free = [_greedy_reference_ids(model, tok, p, 8, stop=set()) for p in PROMPTS]
    first_step = {}
    for row in free:
        for k, t in enumerate(row):
            if t not in row[:k]:
                first_step.setdefault(t, []).append(k)
    # a token that stops some rows, after at least one new token, at two different steps
    candidates = [t for t, steps in first_step.items()
                  if len(set(steps)) >= 2 and min(steps) >= 1 and len(steps) < len(PROMPTS)]
    assert candidates, "no token stops the rows at different steps; change the seed"
    stop_token = candidates[0]
    gen_config = (model.get_base_model() if method else model).generation_config
    gen_config.eos_token_id = [tok.eos_token_id, stop_token]
    out = generate(model, tok, PROMPTS, max_new_tokens=8, batch_size=len(PROMPTS))
    expected = [_greedy_reference_ids(model, tok, p, 8, stop={tok.eos_token_id, stop_token}) for p in PROMPTS]
    assert [g.n_new_tokens for g in out] == [len(e) for e in expected]
    assert len({g.n_new_tokens for g in out}) >= 3  # rows really finished at different steps
    assert [g.text for g in out] == [tok.decode(e, skip_special_tokens=True).strip() for e in expected]


def test_generation_config_with_logits_processing_goes_through_generate(lively):
    """A repetition penalty in the model's generation config changes greedy answers; the
    hand-written loop does not apply it, so such a model is decoded by ``model.generate``."""
    model, tok = make_lively_tiny_model()
    model.generation_config.repetition_penalty = 5.0
    out = generate(model, tok, PROMPTS, max_new_tokens=6, batch_size=3)
    ids = [chat_input_ids(tok, p) for p in PROMPTS]
    direct = [model.generate(input_ids=torch.tensor([r]), attention_mask=torch.ones(1, len(r), dtype=torch.long),
                             max_new_tokens=6, do_sample=False, eos_token_id=tok.eos_token_id,
                             pad_token_id=tok.pad_token_id)[0, len(r):].tolist() for r in ids]
    expected = [tok.decode(d[:d.index(tok.eos_token_id)] if tok.eos_token_id in d else d,
                           skip_special_tokens=True).strip() for d in direct]
    assert [g.text for g in out] == expected
    assert [g.text for g in out] != [g.text for g in generate(lively[0], tok, PROMPTS, max_new_tokens=6)]


@pytest.mark.parametrize("method", [None, *METHODS])
def test_a_prefix_shared_by_every_row_is_encoded_once_with_the_same_tokens(method):
    """A system prompt makes every row start with the same tokens, which are encoded once and
    their cache repeated (after an adapter's virtual tokens or prefix); each row still equals
    the cache-free greedy loop."""
    from peft_audit.models.generate import MIN_SHARED_PREFIX, _shared_prefix_len

    model = make_lively_tiny_model()[0].eval() if method is None else _random_adapter(method, 1)
    tok = make_tiny_model()[1]
    system = "The quick brown fox jumps over the lazy dog. Answer the question."
    assert _shared_prefix_len([chat_input_ids(tok, p, system) for p in PROMPTS]) >= MIN_SHARED_PREFIX
    out = generate(model, tok, PROMPTS, system_prompt=system, max_new_tokens=6, batch_size=3)
    expected = [_greedy_reference(model, tok, p, 6, system_prompt=system) for p in PROMPTS]
    assert [g.text for g in out] == expected
    assert len(set(expected)) > 1


def test_shared_prefix_leaves_every_row_a_token_of_its_own():
    from peft_audit.models.generate import MIN_SHARED_PREFIX, _shared_prefix_len

    head = list(range(MIN_SHARED_PREFIX))
    assert _shared_prefix_len([head + [1], head + [2, 3]]) == MIN_SHARED_PREFIX
    assert _shared_prefix_len([head + [5], head + [5]]) == MIN_SHARED_PREFIX  # identical rows keep their last token
    assert _shared_prefix_len([head + [1]]) == 0  # a single row has nothing to share with
    assert _shared_prefix_len([head[:-1] + [7, 1], head + [1]]) == 0  # too short to be worth it


#: Prompts of very different lengths, so one batch of them is prefilled in several length buckets.
VARIED = [("word " * n).strip() + f" {i}?" for i, n in enumerate([1, 2, 3, 4, 6, 8, 10, 12, 15, 18, 22, 26,
                                                                  30, 35, 40, 1, 3, 5, 9, 14])]


@pytest.mark.parametrize("system", [None, "The quick brown fox jumps over the lazy dog. Answer the question."])
@pytest.mark.parametrize("method", [None, *METHODS])
def test_length_bucketed_prefill_equals_one_row_at_a_time(method, system, monkeypatch):
    """A batch whose prompts differ a lot in length is prefilled bucket by bucket and decoded as
    one batch (the inserted padding masked): every row still equals the cache-free greedy loop."""
    from peft_audit.models.generate import _shared_prefix_len, prefill_buckets

    monkeypatch.setenv("PEFT_AUDIT_GENERATION_STREAMS", "1")  # two streams of 10 rows would get one bucket each

    model = make_lively_tiny_model()[0].eval() if method is None else _random_adapter(method, 2)
    tok = make_tiny_model()[1]
    encoded = [chat_input_ids(tok, p, system) for p in VARIED]
    shared = _shared_prefix_len(encoded)
    assert len(prefill_buckets(sorted((len(e) - shared for e in encoded), reverse=True))) >= 2
    out = generate(model, tok, VARIED, system_prompt=system, max_new_tokens=5, batch_size=len(VARIED))
    assert [g.text for g in out] == [_greedy_reference(model, tok, p, 5, system_prompt=system) for p in VARIED]


def test_prefill_buckets_bound_the_padding_and_keep_small_batches_together():
    from peft_audit.models.generate import BUCKET_WASTE, MIN_BUCKET_ROWS, prefill_buckets

    lengths = sorted([29, 28, 27, 26, 25, 24, 23, 22, 21, 20, 20, 19, 19, 18, 18, 17, 17, 16, 16, 15, 15, 14] * 3,
                     reverse=True)
    buckets = prefill_buckets(lengths)
    assert buckets[0][0] == 0 and buckets[-1][1] == len(lengths)
    assert all(a[1] == b[0] for a, b in zip(buckets, buckets[1:]))  # contiguous, nothing left out
    for start, stop in buckets:
        assert stop - start >= MIN_BUCKET_ROWS
    padded = sum((stop - start) * lengths[start] for start, stop in buckets)
    assert 1 - sum(lengths) / padded < 1 - sum(lengths) / (len(lengths) * lengths[0])  # less padding than one batch
    assert prefill_buckets([9, 9, 9]) == [(0, 3)] and prefill_buckets([5]) == [(0, 1)]
    assert BUCKET_WASTE < 0.5


def test_the_preallocated_cache_layer_writes_in_place_grows_and_selects_rows():
    from peft_audit.models.generate import _preallocated_layer_class

    g = torch.Generator().manual_seed(0)
    k, v = torch.randn(3, 2, 4, 5, generator=g), torch.randn(3, 2, 4, 5, generator=g)
    layer = _preallocated_layer_class().copying(k, v, capacity=5)
    assert layer.get_seq_length() == 4 and torch.equal(layer.keys, k)
    k1, v1 = torch.randn(3, 2, 1, 5, generator=g), torch.randn(3, 2, 1, 5, generator=g)
    keys, values = layer.update(k1, v1)
    assert torch.equal(keys, torch.cat([k, k1], dim=2)) and torch.equal(values, torch.cat([v, v1], dim=2))
    k3, v3 = torch.randn(3, 2, 3, 5, generator=g), torch.randn(3, 2, 3, 5, generator=g)
    keys, _ = layer.update(k3, v3)  # past the planned capacity: it grows
    assert layer.get_seq_length() == 8 and torch.equal(keys, torch.cat([k, k1, k3], dim=2))
    layer.batch_select_indices(torch.tensor([2, 0]))
    assert torch.equal(layer.keys, torch.cat([k, k1, k3], dim=2)[[2, 0]])


@pytest.mark.parametrize("method", [None, "lora", "ia3"])
def test_static_cache_decoding_equals_the_greedy_loop(method):
    """Compiled decoding's path (``model.generate`` with a static KV cache, prompts padded to a
    multiple of STATIC_WIDTH; transformers compiles its step on CUDA only, so here it runs
    eagerly) gives the cache-free greedy loop's tokens, stop tokens and row lengths included."""
    from peft_audit.models.generate import STATIC_WIDTH, _static_batch, _stop_ids

    model = make_lively_tiny_model()[0].eval() if method is None else _random_adapter(method, 1)
    tok = make_tiny_model()[1]
    rows = [chat_input_ids(tok, p) for p in VARIED]
    assert max(map(len, rows)) % STATIC_WIDTH  # the padding to the static width is exercised
    with torch.inference_mode():
        got = _static_batch(model, rows, stop=set(_stop_ids(model, tok)), pad_id=tok.pad_token_id,
                            max_new_tokens=6, device=torch.device("cpu"))
    assert got == [_greedy_reference_ids(model, tok, p, 6) for p in VARIED]


@pytest.mark.parametrize("method", [None, "prompt-tuning"])
def test_compiled_decoding_off_cuda_says_so_and_answers_as_without(method, recwarn):
    from peft_audit.sweep.logs import Notice

    model = make_lively_tiny_model()[0].eval() if method is None else _random_adapter(method, 1)
    tok = make_tiny_model()[1]
    assert generate(model, tok, PROMPTS, max_new_tokens=5, compiled=True) == generate(model, tok, PROMPTS,
                                                                                     max_new_tokens=5)
    notes = [str(w.message) for w in recwarn if issubclass(w.category, Notice)]
    assert notes == ["compiled decoding: it applies on CUDA GPUs only, not on cpu; generating without it"]


def test_compiled_decoding_applies_on_cuda_to_models_without_virtual_tokens():
    from peft_audit.models.generate import _not_compilable

    cuda = torch.device("cuda")  # only named
    assert _not_compilable(make_lively_tiny_model()[0], cuda) is None
    assert _not_compilable(_random_adapter("lora", 1), cuda) is None
    assert "prompt-learning" in _not_compilable(_random_adapter("prefix-tuning", 1), cuda)


@pytest.mark.parametrize("method", ["lora", "ia3", "prompt-tuning"])
def test_the_output_head_gets_contiguous_rows_while_generating(method, monkeypatch):
    """A PEFT model's frozen output head sees contiguous inputs, so torch folds the last
    positions into one matrix product instead of broadcasting the vocabulary matrix to every row
    (a bmm that, in bfloat16, copied it once per row at every prefill); the hook is gone after.
    (The head itself runs: the bfloat16 screen, which would pick the tokens without it, is off.)"""
    import peft_audit.models.generate as generation

    monkeypatch.setattr(generation, "screened_head", lambda causal, device: None)
    _, tok = make_lively_tiny_model()
    model = _random_adapter(method, 1)
    head = model.get_output_embeddings()
    assert not head.weight.requires_grad  # the case torch.matmul does not fold
    seen = []
    watch = head.register_forward_hook(lambda module, args, out: seen.append(args[0].is_contiguous()))
    hooks = dict(head._forward_pre_hooks)
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        out = generate(model, tok, PROMPTS, max_new_tokens=3, batch_size=3)
    watch.remove()
    assert seen and all(seen)
    # (other bmm calls are fine: rotary embeddings use one in some transformers versions)
    vocab = head.weight.shape[0]
    assert not [e.input_shapes for e in prof.events() if e.name == "aten::bmm" and e.input_shapes[1][-1] == vocab]
    assert dict(head._forward_pre_hooks) == hooks
    assert [g.text for g in out] == [_greedy_reference(model, tok, p, 3) for p in PROMPTS]
