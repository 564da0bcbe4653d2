"""paired_item_scores: the paired comparison every plug-in benchmark uses, for 0/1 and graded scores."""

import itertools

import numpy as np
import pandas as pd
import pytest

from peft_audit.analysis.paired import paired_item_scores, paired_safety

PAIRS = pd.DataFrame({"variant_id": ["v"], "base_id": ["b"]})


def frame(values: dict[str, list[float]], cats: list[str]) -> pd.DataFrame:
    return pd.DataFrame([{"variant_id": vid, "sample_id": f"s{i}", "category": cats[i], "score": x}
                         for vid, xs in values.items() for i, x in enumerate(xs)])


def test_binary_scores_match_the_safety_comparison_exactly():
    rng = np.random.default_rng(3)
    cats = ["a"] * 12 + ["b"] * 9
    vals = {"b": rng.integers(0, 2, 21).astype(float), "v": rng.integers(0, 2, 21).astype(float)}
    items = frame(vals, cats)
    got = paired_item_scores(items, PAIRS, value="score", benchmark="safety", metric="safety_score",
                             id_col="sample_id", n_boot=300)
    want = paired_safety(items.rename(columns={"sample_id": "prompt_id", "score": "safe"}), PAIRS, n_boot=300)
    pd.testing.assert_frame_equal(got, want)
    assert set(got["test"]) == {"mcnemar_exact", "stratified_permutation"}


def test_graded_scores_get_an_exact_sign_flip_test_per_category():
    # 6 items: every one of the 2**6 sign patterns is enumerable, so the exact permutation
    # p-value is known; the Monte Carlo one (2000 draws) must be close to it.
    base = [0.0, 0.25, 0.5, 0.0, 0.125, 0.0]
    var = [0.5, 0.75, 0.5, 0.375, 0.125, 0.25]
    items = frame({"b": base, "v": var}, ["a"] * 6)
    out = paired_item_scores(items, PAIRS, value="score", benchmark="toy", metric="toy_score", id_col="sample_id",
                             n_boot=2000)
    cat = out[out["category"] == "a"].iloc[0]
    d = np.subtract(var, base)
    assert cat["delta"] == pytest.approx(d.mean()) and cat["test"] == "permutation"
    exact = np.mean([abs((d * s).mean()) >= abs(d.mean()) - 1e-12 for s in itertools.product((1, -1), repeat=6)])
    assert cat["p_value"] == pytest.approx(exact, abs=0.03)
    assert cat["ci_low"] < cat["delta"] < cat["ci_high"]
    assert set(out["benchmark"]) == {"toy"} and set(out["metric"]) == {"toy_score"}


def test_overall_is_the_mean_over_categories_and_unscored_items_drop_out():
    items = frame({"b": [0.0, 0.0, 0.0, 1.0], "v": [1.0, 0.5, np.nan, 1.0]}, ["a", "a", "a", "b"])
    out = paired_item_scores(items, PAIRS, value="score", benchmark="toy", metric="m", id_col="sample_id", n_boot=100)
    by = out.set_index("category")
    assert by.loc["a", "n"] == 2 and by.loc["a", "delta"] == pytest.approx(0.75)
    assert by.loc["overall", "delta"] == pytest.approx((0.75 + 0.0) / 2)
    assert by.loc["overall", "n"] == 3


def test_identical_models_have_p_one_and_no_change():
    items = frame({"b": [0.2, 0.4, 0.9], "v": [0.2, 0.4, 0.9]}, ["a", "a", "a"])
    out = paired_item_scores(items, PAIRS, value="score", benchmark="toy", metric="m", id_col="sample_id", n_boot=100)
    assert (out["delta"] == 0).all() and (out["p_value"] == 1).all()
