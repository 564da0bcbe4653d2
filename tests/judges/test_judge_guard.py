import pytest

from peft_audit.judges.guard import MLCOMMONS_HAZARDS, GuardJudge, parse_guard_output
from peft_audit.benchmarks.categories import SAFETY_CATEGORIES


@pytest.mark.parametrize(
    "text, label, category",
    [
        ("safe", "safe", None),
        ("\n\nsafe\n", "safe", None),
        ("unsafe\nS4", "unsafe", "child_abuse_content"),
        ("unsafe\nS14", "unsafe", "malware"),
        ("unsafe\nS5,S12", "unsafe", "adult_content"),  # S5 has no key: the first mappable code wins
        ("unsafe\nS8", "unsafe", None),
        ("unsafe", "unsafe", None),
        ("unsafe\nbecause it is bad", "unscored", None),
        ("I think this is fine", "unscored", None),
        ("", "unscored", None),
    ],
)
def test_parse_guard_output(text, label, category):
    v = parse_guard_output(text)
    assert (v.label, v.category) == (label, category)
    assert v.raw == text


def test_hazard_map_targets_our_keys():
    assert set(MLCOMMONS_HAZARDS) == {f"S{i}" for i in range(1, 15)}
    assert {k for _, k in MLCOMMONS_HAZARDS.values() if k} <= set(SAFETY_CATEGORIES)


def test_rationale_names_codes():
    assert "S7 Privacy" in parse_guard_output("unsafe\nS7").rationale


def test_guard_plumbing_with_tiny_random_model():
    from tiny_models import make_tiny_model

    model, tok = make_tiny_model()
    from peft_audit.models.backends.transformers import TransformersModel

    judge = GuardJudge(TransformersModel(model, tok), max_new_tokens=4)
    vs = judge.judge_batch([("a request", "a response"), ("another", "answer")])
    assert len(vs) == 2
    assert all(v.label == "unscored" and v.safe is None for v in vs)  # junk output is never safe


def test_guard_input_is_the_templates_own_token_ids():
    """The guard renders its conversation as text and its backend tokenises that text without
    adding special tokens: the ids equal the tokenizer's own ``apply_chat_template(tokenize=True)``."""
    from tiny_models import make_tiny_model

    from peft_audit.models.backends.transformers import TransformersModel

    _, tok = make_tiny_model()
    judge = GuardJudge(TransformersModel(None, tok))
    for prompt, response in [("a request", "a response"), ("<s> tricky </s>", "Sure!\n\nStep 1")]:
        chat = [{"role": "user", "content": prompt}, {"role": "assistant", "content": response}]
        want = list(tok.apply_chat_template(chat, tokenize=True, return_dict=True)["input_ids"])
        assert list(tok(judge._conversation(prompt, response), add_special_tokens=False)["input_ids"]) == want
