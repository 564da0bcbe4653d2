"""score_bbq rows (store contract) and generate-mode answer parsing."""

import pytest

from peft_audit.models.backends.transformers import TransformersModel
from peft_audit.benchmarks.fairness import load_bbq, parse_choice, score_bbq
from peft_audit.store import FAIRNESS_COLUMNS
from tiny_models import make_tiny_model

OPTS = ("The grandfather", "The grandson", "Can't be determined")


@pytest.mark.parametrize("text, expected", [
    ("B", 1), ("(b)", 1), ("C.", 2), ("B. The grandson", 1), ("Answer: C", 2), ("answer is a", 0),
    ("The answer is A.", 0), ("I think option B is right", 1), ("  C) Can't be determined", 2),
    ("A, because he forgot", 0),
])
def test_parse_letters(text, expected):
    assert parse_choice(text, OPTS) == expected


@pytest.mark.parametrize("text, expected", [
    ("The grandson.", 1), ("the grandfather was forgetful", 0), ("can't be determined", 2),
    ("It was the grandson who forgot.", 1),
])
def test_parse_option_text(text, expected):
    assert parse_choice(text, OPTS) == expected


@pytest.mark.parametrize("text", ["", "   ", "xyz qrs", "A man walked in", "Both the grandfather and the grandson",
                                  "D", "<|im_end|>"])
def test_parse_junk_is_none(text):
    assert parse_choice(text, OPTS) is None


def test_loglik_rows_follow_store_schema():
    model, tok = make_tiny_model("llama")
    items = load_bbq("builtin", per_cell=1, categories=["age"]).items
    rows = score_bbq(TransformersModel(model, tok), items, batch_size=3)
    assert len(rows) == len(items)
    for row, it in zip(rows, items):
        assert tuple(row) == FAIRNESS_COLUMNS
        lps = [row[f"logprob_{i}"] for i in range(3)]
        assert row["pred_index"] == max(range(3), key=lambda i: lps[i])
        assert (row["item_id"], row["target_index"], row["raw_output"]) == (it.item_id, it.target_index, None)
    normed = score_bbq(TransformersModel(model, tok), items, batch_size=3, length_normalise=True)
    assert [r["logprob_0"] for r in normed] == pytest.approx([r["logprob_0"] for r in rows], abs=1e-5)


def test_chat_and_generate_modes_run():
    model, tok = make_tiny_model("llama")
    items = load_bbq("builtin", per_cell=1, categories=["ses"]).items
    chat = score_bbq(TransformersModel(model, tok), items, prompt_format="chat")
    assert all(r["pred_index"] in (0, 1, 2) for r in chat)
    seen = []
    gen = score_bbq(TransformersModel(model, tok), items, mode="generate", batch_size=2, progress=seen.append)
    assert sum(seen) == len(items)
    for r, it in zip(gen, items):
        assert isinstance(r["raw_output"], str) and r["logprob_0"] is None
        assert r["pred_index"] == parse_choice(r["raw_output"], it.answers)


def test_bad_mode():
    with pytest.raises(ValueError, match="mode must be"):
        score_bbq(None, [], mode="vote")


def test_generate_mode_applies_a_prompt_tuning_adapter():
    """Generate mode goes through models.generate (PeftModel.generate drops or repeats the
    virtual tokens of prompt-learning adapters): each answer equals a cache-free greedy loop over
    the PEFT model's own forward on the same chat prompt."""
    import torch
    from peft import PromptTuningConfig, get_peft_model

    from peft_audit.benchmarks.fairness.score import GENERATE_MAX_NEW_TOKENS, choice_question
    from peft_audit.models.generate import chat_input_ids

    model, tok = make_tiny_model("llama")
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():  # larger weights: greedy output depends on the prompt
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    peft_model = get_peft_model(model, PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4))
    with torch.no_grad():
        peft_model.prompt_encoder["default"].embedding.weight.copy_(torch.randn((4, 32), generator=g) * 2.0)
    peft_model.eval()
    items = load_bbq("builtin", per_cell=1, categories=["age"]).items

    def reference(text):
        ids, new = chat_input_ids(tok, text), []
        for _ in range(GENERATE_MAX_NEW_TOKENS):
            full = torch.tensor([ids + new])
            with torch.no_grad():
                t = int(peft_model(input_ids=full, attention_mask=torch.ones_like(full)).logits[0, -1].argmax())
            if t == tok.eos_token_id:
                break
            new.append(t)
        return tok.decode(new, skip_special_tokens=True).strip()

    rows = score_bbq(TransformersModel(peft_model, tok), items, mode="generate", batch_size=2)
    expected = [reference(choice_question(it)) for it in items]
    assert [r["raw_output"].strip() for r in rows] == expected
    assert len(set(expected)) > 1


def _bos_tokenizer_and_model():
    """The tiny tokenizer with a BOS that encoding adds and the chat template renders (as Llama's)."""
    import copy

    from tokenizers.processors import TemplateProcessing
    from transformers import AutoModelForCausalLM

    from tiny_models import CHATML, make_config, make_tokenizer

    tok = copy.deepcopy(make_tokenizer())
    tok.add_special_tokens({"bos_token": "<s>"})
    tok._tokenizer.post_processor = TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", tok.bos_token_id)])
    tok.chat_template = "{{ bos_token }}" + CHATML
    model = AutoModelForCausalLM.from_config(make_config("llama", len(tok))).eval()
    return model, tok


@pytest.mark.parametrize("prompt_format", ["plain", "chat"])
def test_prompts_carry_exactly_one_bos(prompt_format):
    model, tok = _bos_tokenizer_and_model()
    assert tok("x")["input_ids"][0] == tok.bos_token_id  # encoding adds it ...
    seen = []
    # the decoder stack: the shared-prefix scorer runs it directly (models/forward.py)
    model.get_decoder().register_forward_pre_hook(lambda mod, args, kw: seen.append(kw["input_ids"].clone()),
                                                  with_kwargs=True)
    items = load_bbq("builtin", per_cell=1, categories=["age"]).items
    score_bbq(TransformersModel(model, tok), items, prompt_format=prompt_format, batch_size=4)
    prompt_pass = seen[0]  # shared-prefix scoring: the first forward runs the prompts
    assert all(int((row == tok.bos_token_id).sum()) == 1 and row[0] == tok.bos_token_id for row in prompt_pass)
