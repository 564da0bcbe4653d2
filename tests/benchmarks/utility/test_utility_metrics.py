"""Task-utility numbers: metric rows, the paired loss and perplexity, preference accuracy (pure,
and scored on a tiny model against the naive reference scorer)."""

import math

import numpy as np
import pandas as pd
import pytest

from peft_audit.benchmarks.utility.metrics import paired_utility, preference_indicators, utility_metrics

PAIRS = pd.DataFrame({"variant_id": ["v"], "base_id": ["b"]})


def _sft_items(shift: float, n: int = 30, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    base = rng.uniform(1.5, 2.5, n)
    var = base + shift + rng.normal(0, 0.05, n)
    ids = [f"r{i}" for i in range(n)]
    return pd.DataFrame({"variant_id": ["b"] * n + ["v"] * n, "sample_id": ids + ids, "category": "task",
                         "algo": "sft", "loss": np.concatenate([base, var])})


def test_metric_rows_loss_perplexity_and_accuracy():
    samples = [{"category": "t", "algo": "sft", "loss": x} for x in (1.0, 2.0, 3.0)]
    samples += [{"category": "p", "algo": "dpo", "logp_chosen": c, "logp_rejected": r} for c, r in ((-1, -2), (-3, -2))]
    rows = {(r["category"], r["metric"]): r for r in utility_metrics(samples)}
    loss = rows[("overall", "heldout_loss")]
    assert loss["value"] == pytest.approx(2.0) and loss["n"] == 3 and loss["ci_low"] < 2.0 < loss["ci_high"]
    ppl = rows[("overall", "perplexity")]
    assert ppl["value"] == pytest.approx(math.e ** 2) and ppl["ci_low"] == pytest.approx(math.exp(loss["ci_low"]))
    acc = rows[("overall", "preference_accuracy")]
    assert acc["value"] == 0.5 and acc["n"] == 2 and acc["ci_low"] < 0.5 < acc["ci_high"]
    assert utility_metrics([]) == []


def test_paired_loss_finds_a_real_change_and_not_a_null_one():
    better = paired_utility(_sft_items(-0.3), PAIRS, n_boot=500, seed=0)
    row = better[(better["metric"] == "heldout_loss") & (better["category"] == "overall")].iloc[0]
    assert row["delta"] == pytest.approx(row["value"] - row["base_value"]) and row["n"] == 30
    assert row["delta"] == pytest.approx(-0.3, abs=0.05) and row["ci_high"] < 0 and row["p_value"] < 0.01
    ppl = better[(better["metric"] == "perplexity") & (better["category"] == "overall")].iloc[0]
    assert ppl["value"] == pytest.approx(math.exp(row["value"])) and ppl["ci_high"] < 0
    null = paired_utility(_sft_items(0.0), PAIRS, n_boot=500, seed=0)
    row = null[(null["metric"] == "heldout_loss") & (null["category"] == "overall")].iloc[0]
    assert row["ci_low"] < 0 < row["ci_high"] and row["p_value"] > 0.05


def test_paired_loss_uses_only_rows_both_have():
    items = _sft_items(-0.3)
    items = items[~((items["variant_id"] == "v") & items["sample_id"].isin(["r0", "r1"]))]
    row = paired_utility(items, PAIRS, n_boot=100, seed=0).query("metric == 'heldout_loss' and category == 'overall'")
    assert row["n"].iloc[0] == 28


def test_preference_accuracy_is_the_implicit_reward_margin_against_the_base():
    # row a: the base prefers chosen (margin +1), the variant more so (+3): both correct.
    # row b: the base prefers rejected (-2), the variant less so (-1): the variant's reward margin is +1.
    # row c: the base prefers chosen (+2), the variant less (+1): the variant's reward margin is -1.
    items = pd.DataFrame({"variant_id": ["b"] * 3 + ["v"] * 3, "sample_id": list("abc") * 2, "category": "pref",
                          "algo": "dpo", "logp_chosen": [-1, -3, -1, -1, -2, -1],
                          "logp_rejected": [-2, -1, -3, -4, -1, -2]})
    ind = preference_indicators(items, PAIRS).set_index(["variant_id", "sample_id"])["correct"]
    assert ind.to_dict() == {("b", "a"): 1, ("b", "b"): 0, ("b", "c"): 1, ("v", "a"): 1, ("v", "b"): 1, ("v", "c"): 0}
    row = paired_utility(items, PAIRS, n_boot=100, seed=0).query("category == 'overall'").iloc[0]
    assert row["metric"] == "preference_accuracy" and row["value"] == pytest.approx(2 / 3)
    assert row["base_value"] == pytest.approx(2 / 3) and row["test"] == "stratified_permutation"


@pytest.mark.parametrize("algo", ["sft", "dpo"])
def test_scores_on_a_tiny_model_match_the_naive_scorer(algo):
    """The stored log-likelihoods are the reference scorer's on the chat-formatted row, for a plain
    model and a prompt-tuning one (its virtual tokens shift positions)."""
    from peft_audit.benchmarks.utility.score import chat_pair, score_rows
    from peft_audit.benchmarks.utility.tasks import HeldoutRow
    from peft_audit.models.backends.transformers import TransformersModel
    from peft_audit.models.scoring import score_continuations_naive

    from tiny_models import make_tiny_model, prompt_learning_model

    rows = [HeldoutRow(f"id{i}", "t", algo, {"prompt": f"Say {w}.", "response": f"{w}!", "chosen": f"{w}.",
                                             "rejected": "No."}) for i, w in enumerate(["yes", "blue", "ten"])]
    for model, tok in (make_tiny_model(), prompt_learning_model("prompt-tuning")):
        assert tok.chat_template  # the tiny tokenizer has ChatML, as SmolLM2
        lm = TransformersModel(model, tok)
        got = score_rows(lm, rows, batch_size=2)
        msgs = [[{"role": "user", "content": r.row["prompt"]}] for r in rows]
        keys = ["response"] if algo == "sft" else ["chosen", "rejected"]
        pairs = [[chat_pair(lm, m, r.row[k]) for k in keys] for m, r in zip(msgs, rows)]
        ref = score_continuations_naive(model, tok, [p[0][0] for p in pairs], [[c for _, c in p] for p in pairs],
                                        add_special_tokens=False)
        for g, want in zip(got, ref):
            p = g["payload"]
            if algo == "sft":
                assert p["logp"] == pytest.approx(want[0], abs=1e-4) and p["loss"] == pytest.approx(-want[0] / p["n_tokens"])
            else:
                assert (p["logp_chosen"], p["logp_rejected"]) == pytest.approx(tuple(want), abs=1e-4)
        if algo == "dpo":
            acc = utility_metrics([{"category": "t", **g["payload"]} for g in got])[-1]
            assert acc["value"] == pytest.approx(np.mean([a > b for a, b in ref]))
