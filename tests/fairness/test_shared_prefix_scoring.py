"""Shared-prefix (prefix-tree) scoring equals naive per-option scoring (1e-4), also for PEFT
adapters whose virtual tokens shift positions (prompt tuning, P-tuning, prefix tuning), and for
items whose prompts share a prefix and so share a row."""

import pytest
import torch

from peft_audit.models import scoring
from peft_audit.models.scoring import (encode_pairs, prefix_groups, score_continuations, score_continuations_naive,
                                       tree_extent)
from tiny_models import make_tiny_model

PROMPTS = [
    "The grandfather and the grandson were talking.\n\nQ: Who was forgetful?\nA:",
    "What is two plus two?\nA:",
    "Sure",
    "abc def ghi jkl mno pqr stu vwx yz abc def ghi",
    "I cannot help with that request.",
]
CONTS = [
    [" The grandfather", " The grandson", " Can't be determined"],
    [" four", " five"],              # a different number of options
    [" here is a poem", "x", " no"],  # one-token and no-leading-space continuations
    [" one"],
    [" I'm sorry", " Sure, here is", " The answer is four."],
]

# BBQ's shape: a context asked two questions, and the same context with a disambiguating
# sentence added, so prompts share long prefixes (and one prompt appears twice).
_AMBIG = "At the concert last night a grandfather and his grandson were both looking for their seats near the front."
_DISAMBIG = _AMBIG + " The grandson had left the tickets at home."
SHARED_PROMPTS = [f"{ctx}\n\nQ: {q}\nA:" for ctx in (_AMBIG, _DISAMBIG)
                  for q in ("Who forgot the tickets?", "Who remembered the tickets?")]
SHARED_PROMPTS += [SHARED_PROMPTS[0], "An unrelated short prompt.\nA:"]
SHARED_CONTS = [[" The grandfather", " The grandson", " Can't be determined"]] * 5 + [[" yes", " no"]]


def _max_diff(a, b):
    assert [len(r) for r in a] == [len(r) for r in b]
    return max(abs(x - y) for ra, rb in zip(a, b) for x, y in zip(ra, rb))


@pytest.mark.parametrize("family", ["llama", "qwen2", "mistral", "gemma"])
def test_equal_to_naive_and_batch_invariant(family):
    model, tok = make_tiny_model(family)
    naive = score_continuations_naive(model, tok, PROMPTS, CONTS, batch_size=4)
    for bs in (1, 2, 16):
        shared = score_continuations(model, tok, PROMPTS, CONTS, batch_size=bs)
        assert _max_diff(shared, naive) < 1e-4
    assert all(x < 0 for row in naive for x in row)


def test_naive_matches_unbatched_reference():
    # Independent check of the reference itself: one unpadded sequence at a time.
    model, tok = make_tiny_model("llama")
    enc = encode_pairs(tok, PROMPTS[:2], CONTS[:2])
    naive = score_continuations_naive(model, tok, PROMPTS[:2], CONTS[:2], batch_size=8)
    for (p, cs), row in zip(enc, naive):
        for c, value in zip(cs, row):
            ids = torch.tensor([p + c])
            lp = torch.log_softmax(model(input_ids=ids).logits[0].float(), -1)
            ref = sum(lp[len(p) - 1 + k, t].item() for k, t in enumerate(c))
            assert value == pytest.approx(ref, abs=1e-4)


def _peft_configs():
    from peft import IA3Config, LoraConfig, PrefixTuningConfig, PromptEncoderConfig, PromptTuningConfig

    return {
        "prompt-tuning": PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=5),
        "p-tuning": PromptEncoderConfig(task_type="CAUSAL_LM", num_virtual_tokens=4, encoder_hidden_size=16),
        "prefix-tuning": PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=3),
        "lora": LoraConfig(task_type="CAUSAL_LM", r=4, init_lora_weights=False),
        "ia3": IA3Config(task_type="CAUSAL_LM", init_ia3_weights=False),
    }


@pytest.mark.parametrize("method", ["prompt-tuning", "p-tuning", "prefix-tuning", "lora", "ia3"])
def test_equal_to_naive_for_peft_models(method):
    from peft import get_peft_model

    base, tok = make_tiny_model("llama")
    plain = score_continuations_naive(base, tok, PROMPTS, CONTS)
    torch.manual_seed(1)
    model = get_peft_model(base, _peft_configs()[method]).eval()
    naive = score_continuations_naive(model, tok, PROMPTS, CONTS, batch_size=3)
    shared = score_continuations(model, tok, PROMPTS, CONTS, batch_size=2)
    assert _max_diff(shared, naive) < 1e-4
    assert _max_diff(naive, plain) > 1e-3  # the adapter really changes the scores


def test_final_logit_softcapping_is_applied():
    # Gemma 2 soft-caps its logits in forward(); the shared scorer applies its own head, so it
    # must cap too (a large cap-sensitive spread: weights scaled up so logits reach the cap).
    import transformers as tf

    from tiny_models import make_config, make_tokenizer

    tok = make_tokenizer()
    common = make_config("gemma", len(tok)).to_dict()
    cfg = tf.Gemma2Config(**{k: common[k] for k in ("vocab_size", "hidden_size", "intermediate_size",
                                                   "num_hidden_layers", "num_attention_heads",
                                                   "num_key_value_heads", "head_dim")},
                          final_logit_softcapping=2.0, pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    model = tf.AutoModelForCausalLM.from_config(cfg).eval()
    with torch.no_grad():
        model.get_output_embeddings().weight.mul_(30)
    naive = score_continuations_naive(model, tok, PROMPTS, CONTS, batch_size=4)
    shared = score_continuations(model, tok, PROMPTS, CONTS, batch_size=2)
    assert _max_diff(shared, naive) < 1e-4


def test_shared_scorer_never_relies_on_tensor_logits_to_keep(monkeypatch):
    # transformers 5.17 sliced a [B, 1] logits_to_keep into [B, B, 1, V] logits (an
    # out-of-bounds index on CUDA). The scorer gathers positions itself: the causal-LM forward,
    # where that slicing lives, is never called by it.
    model, tok = make_tiny_model("llama")
    naive = score_continuations_naive(model, tok, PROMPTS, CONTS, batch_size=4)

    def refuse(*args, **kwargs):
        raise AssertionError("the shared-prefix scorer called the causal-LM forward")

    monkeypatch.setattr(type(model), "forward", refuse)
    shared = score_continuations(model, tok, PROMPTS, CONTS, batch_size=3)
    assert _max_diff(shared, naive) < 1e-4


def test_boundary_tokenisation_uses_the_joint_text():
    _, tok = make_tiny_model("llama")
    (p, [c]), = encode_pairs(tok, ["A:"], [[" The grandson"]])
    assert p + c == tok("A: The grandson")["input_ids"]


def test_empty_continuation_is_an_error():
    model, tok = make_tiny_model("llama")
    with pytest.raises(ValueError, match="continuation 0 of prompt 0"):
        score_continuations(model, tok, ["Q"], [[""]])


def test_progress_reports_every_prompt():
    model, tok = make_tiny_model("llama")
    seen = []
    score_continuations(model, tok, PROMPTS, CONTS, batch_size=2, progress=seen.append)
    assert sum(seen) == len(PROMPTS)


@pytest.mark.slow
def test_equal_to_naive_on_bundled_smollm2():
    from peft_audit.benchmarks.fairness import load_bbq
    from peft_audit.benchmarks.fairness.score import plain_prompt
    from peft_audit.models import load_base

    lm = load_base("smollm2-135m-instruct", device="cpu", dtype=torch.float32)
    items = load_bbq("builtin", per_cell=1, categories=["religion"]).items  # 4 items, both contexts
    prompts = [plain_prompt(it) for it in items]
    conts = [[f" {a}" for a in it.answers] for it in items]
    shared = score_continuations(lm.model, lm.tokenizer, prompts, conts, batch_size=4)
    naive = score_continuations_naive(lm.model, lm.tokenizer, prompts, conts, batch_size=4)
    assert _max_diff(shared, naive) < 1e-4


def test_prompts_sharing_a_prefix_share_a_row():
    _, tok = make_tiny_model("llama")
    encoded = encode_pairs(tok, SHARED_PROMPTS, SHARED_CONTS)
    groups = prefix_groups(encoded)
    assert sorted(i for g in groups for i in g) == list(range(len(SHARED_PROMPTS)))
    assert sorted(map(sorted, groups)) == [[0, 1, 2, 3, 4], [5]]
    tree = scoring._Tree([(0, encoded[0]), (3, encoded[4])])  # one prompt twice: no new node
    alone = scoring._Tree([(0, encoded[0])])
    assert len(tree.tokens) == len(alone.tokens)
    assert len(alone.tokens) < _own_nodes_without_sharing(encoded[0])  # " The grandfather/grandson" share " The"
    # every node sees exactly its ancestors and itself
    seen = alone.ancestors()
    for i, parent in enumerate(alone.parent):
        expected = {i} | ({j for j in range(len(alone.tokens)) if seen[parent, j]} if parent >= 0 else set())
        assert {j for j in range(len(alone.tokens)) if seen[i, j]} == expected
        assert alone.depth[i] == (0 if parent < 0 else alone.depth[parent] + 1)


def _own_nodes_without_sharing(pair):
    p, cs = pair
    return len(p) + sum(len(c) - 1 for c in cs)


@pytest.mark.parametrize("family", ["llama", "qwen2", "mistral", "gemma"])
def test_shared_rows_equal_naive(family, monkeypatch):
    model, tok = make_tiny_model(family)
    widths = []
    body = scoring.decoder(model)
    real = type(body).forward

    def spy(self, *args, **kwargs):
        widths.append(tuple(kwargs["attention_mask"].shape[i] for i in (0, -2)))
        return real(self, *args, **kwargs)

    naive = score_continuations_naive(model, tok, SHARED_PROMPTS, SHARED_CONTS, batch_size=4)
    monkeypatch.setattr(type(body), "forward", spy)
    for bs in (1, 3, 16):
        widths.clear()
        shared = score_continuations(model, tok, SHARED_PROMPTS, SHARED_CONTS, batch_size=bs)
        assert _max_diff(shared, naive) < 1e-4
    # one pass of two rows: the five context prompts in one tree, narrower than their tokens
    # one by one, and the unrelated prompt in its own
    encoded = encode_pairs(tok, SHARED_PROMPTS, SHARED_CONTS)
    [(rows, width)] = widths
    assert rows == 2 and width < sum(_own_nodes_without_sharing(encoded[i]) for i in range(5)) / 2


@pytest.mark.parametrize("method", ["prompt-tuning", "p-tuning", "prefix-tuning", "lora", "ia3"])
def test_shared_rows_equal_naive_for_peft_models(method):
    from peft import get_peft_model

    base, tok = make_tiny_model("llama")
    torch.manual_seed(1)
    model = get_peft_model(base, _peft_configs()[method]).eval()
    naive = score_continuations_naive(model, tok, SHARED_PROMPTS, SHARED_CONTS, batch_size=3)
    for bs in ("auto", 2):
        shared = score_continuations(model, tok, SHARED_PROMPTS, SHARED_CONTS, batch_size=bs)
        assert _max_diff(shared, naive) < 1e-4


def test_auto_batches_count_tree_rows():
    model, tok = make_tiny_model("llama")
    encoded = encode_pairs(tok, SHARED_PROMPTS, SHARED_CONTS)
    extent = tree_extent(model, encoded, prefix_groups(encoded))
    assert extent["prompt_tokens"] == sum(_own_nodes_without_sharing(encoded[i]) for i in (0, 1, 2, 3, 4)) - sum(
        scoring._lcp(encoded[a][0], encoded[b][0]) for a, b in ((0, 4), (4, 1), (1, 2), (2, 3)))
    assert extent["scored_positions"] == sum(sum(map(len, encoded[i][1])) for i in range(5))


def test_sliding_window_models_past_the_window_are_scored_naively(monkeypatch):
    # a tree row's 4D mask is used by every layer: past a sliding window it would let a token see
    # what the model's own mask hides, so such rows go to the naive scorer
    model, tok = make_tiny_model("mistral")
    calls = []
    real = scoring.score_continuations_naive
    monkeypatch.setattr(scoring, "score_continuations_naive", lambda *a, **k: calls.append(1) or real(*a, **k))
    score_continuations(model, tok, SHARED_PROMPTS, SHARED_CONTS, batch_size=4)
    assert calls == []
    model.config.sliding_window = 8
    naive = real(model, tok, SHARED_PROMPTS, SHARED_CONTS, batch_size=4)
    assert score_continuations(model, tok, SHARED_PROMPTS, SHARED_CONTS, batch_size=4) == naive
    assert calls == [1]


def test_chat_prompts_share_their_template_and_equal_naive():
    # chat-format BBQ prompts all open with the template's turn markers (and the model's system
    # turn, where it has one), so unrelated contexts share a tree row too
    from peft_audit.benchmarks.fairness import load_bbq
    from peft_audit.benchmarks.fairness.score import chat_prompt
    from peft_audit.models.backends.transformers import TransformersModel

    model, tok = make_tiny_model("llama")
    items = load_bbq("builtin", per_cell=1, categories=["age", "religion"]).items
    prompts = [chat_prompt(TransformersModel(model, tok), it) for it in items]
    conts = [list(it.answers) for it in items]
    groups = prefix_groups(encode_pairs(tok, prompts, conts, add_special_tokens=False))
    assert len(groups) < len(items)
    shared = score_continuations(model, tok, prompts, conts, batch_size=4, add_special_tokens=False)
    naive = score_continuations_naive(model, tok, prompts, conts, batch_size=4, add_special_tokens=False)
    assert _max_diff(shared, naive) < 1e-4


@pytest.mark.parametrize("family", ["llama", "mistral"])  # mistral: the sliding-window check too
def test_nothing_to_score_returns_nothing(family):
    model, tok = make_tiny_model(family)
    for scorer in (score_continuations, score_continuations_naive):
        for bs in (4, "auto"):
            assert scorer(model, tok, [], [], batch_size=bs) == []


def test_a_prompt_without_options_gets_an_empty_row():
    model, tok = make_tiny_model("llama")
    naive = score_continuations_naive(model, tok, ["hello there", "x"], [[], [" y"]])
    for bs in (1, 4):
        shared = score_continuations(model, tok, ["hello there", "x"], [[], [" y"]], batch_size=bs)
        assert shared[0] == [] and _max_diff(shared, naive) < 1e-4
