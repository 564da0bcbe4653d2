"""score_bbq rows (store contract) and generate-mode answer parsing."""

import pytest

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
    rows = score_bbq(model, tok, items, batch_size=3)
    assert len(rows) == len(items)
    for row, it in zip(rows, items):
        assert tuple(row) == FAIRNESS_COLUMNS
        lps = [row[f"logprob_{i}"] for i in range(3)]
        assert row["pred_index"] == max(range(3), key=lambda i: lps[i])
        assert (row["item_id"], row["target_index"], row["raw_output"]) == (it.item_id, it.target_index, None)
    normed = score_bbq(model, tok, items, batch_size=3, length_normalise=True)
    assert [r["logprob_0"] for r in normed] == pytest.approx([r["logprob_0"] for r in rows], abs=1e-5)


def test_chat_and_generate_modes_run():
    model, tok = make_tiny_model("llama")
    items = load_bbq("builtin", per_cell=1, categories=["ses"]).items
    chat = score_bbq(model, tok, items, prompt_format="chat")
    assert all(r["pred_index"] in (0, 1, 2) for r in chat)
    seen = []
    gen = score_bbq(model, tok, items, mode="generate", batch_size=2, progress=seen.append)
    assert sum(seen) == len(items)
    for r, it in zip(gen, items):
        assert isinstance(r["raw_output"], str) and r["logprob_0"] is None
        assert r["pred_index"] == parse_choice(r["raw_output"], it.answers)


def test_bad_mode():
    with pytest.raises(ValueError, match="mode must be"):
        score_bbq(None, None, [], mode="vote")
