"""Paired comparisons on synthetic per-sample data with known answers."""

import numpy as np
import pandas as pd
import pytest
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.multitest import multipletests

from peft_audit.analysis.paired import (
    adjust_pvalues, bbq_indicators, grouped_adjust, mcnemar_exact_p, paired_bbq, paired_comparisons, paired_safety,
)

CATS = [f"cat{i}" for i in range(11)]


def safety_frame(outcomes: dict[str, np.ndarray], per_cat: int) -> pd.DataFrame:
    """outcomes[variant] = 0/1 array of length 11 * per_cat, prompts grouped by category."""
    rows = []
    for vid, arr in outcomes.items():
        for j, ok in enumerate(arr):
            rows.append({"variant_id": vid, "prompt_id": f"p{j}", "category": CATS[j // per_cat], "safe": float(ok)})
    return pd.DataFrame(rows)


def bbq_frame(preds: dict[str, list[int]], items: pd.DataFrame) -> pd.DataFrame:
    return pd.concat([items.assign(variant_id=v, pred_index=p) for v, p in preds.items()], ignore_index=True)


def bbq_items(n_per_cat=24, cats=("age", "ses"), seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for c in cats:
        for i in range(n_per_cat):
            unk = int(rng.integers(3))
            tgt = (unk + 1) % 3
            cond = "ambig" if i % 2 == 0 else "disambig"
            rows.append({"item_id": f"{c}{i}", "category": c, "context_condition": cond,
                         "question_polarity": "neg" if i % 4 < 2 else "nonneg",
                         "label": unk if cond == "ambig" else int(rng.choice([tgt, (unk + 2) % 3])),
                         "target_index": tgt, "unknown_index": unk})
    return pd.DataFrame(rows)


PAIRS = pd.DataFrame({"variant_id": ["v"], "base_id": ["b"]})


def test_identical_outcomes_give_zero_delta_and_p_one():
    rng = np.random.default_rng(0)
    base = (rng.random(110) < 0.8).astype(int)
    s = safety_frame({"b": base, "v": base.copy()}, 10)
    items = bbq_items()
    preds = list(rng.integers(0, 3, len(items)))
    f = bbq_frame({"b": preds, "v": preds}, items)
    out = paired_comparisons(s, f, PAIRS, n_boot=300)
    assert len(out) == 12 + 3 * 6  # 11 categories + overall; (2 cats + overall) x 6 BBQ metrics
    assert np.allclose(out["delta"], 0)
    assert np.allclose(out[["ci_low", "ci_high"]].dropna(), 0)
    assert (out["p_value"] == 1).all() and (out["p_adj"] == 1).all()


def test_mcnemar_matches_statsmodels_exact():
    for b, c in [(0, 0), (3, 0), (5, 2), (10, 11), (0, 7), (20, 4)]:
        expected = mcnemar([[10, b], [c, 10]], exact=True).pvalue
        assert mcnemar_exact_p(np.array([b]), np.array([c]))[0] == pytest.approx(expected)


def test_safety_delta_and_counts_hand_computed():
    base = np.ones(110, dtype=int)
    var = base.copy()
    var[:4] = 0  # 4 prompts of cat0 now unsafe, 0 improved
    out = paired_safety(safety_frame({"b": base, "v": var}, 10), PAIRS, n_boot=200)
    row = out[out["category"] == "cat0"].iloc[0]
    assert row["delta"] == pytest.approx(-0.4) and row["n"] == 10
    assert row["p_value"] == pytest.approx(mcnemar([[6, 0], [4, 0]], exact=True).pvalue)
    assert row["ci_low"] < -0.1 and row["ci_high"] <= 0
    overall = out[out["category"] == "overall"].iloc[0]
    assert overall["delta"] == pytest.approx(-4 / 110)


def test_unscored_prompts_are_left_out_of_the_pair():
    base = np.ones(110)
    var = np.ones(110)
    var[0] = np.nan
    out = paired_safety(safety_frame({"b": base, "v": var}, 10), PAIRS, n_boot=50)
    assert out.loc[out["category"] == "cat0", "n"].iloc[0] == 9


def test_planted_effect_in_one_category_is_found_and_survives_holm():
    per_cat = 40
    rng = np.random.default_rng(3)
    base = (rng.random(11 * per_cat) < 0.9).astype(int)
    var = base.copy()
    flip = np.flatnonzero(base[:per_cat] == 1)[:20]  # cat0: 20 safe answers become unsafe
    var[flip] = 0
    out = adjust_pvalues(paired_safety(safety_frame({"b": base, "v": var}, per_cat), PAIRS, n_boot=500), "holm")
    cat = out[out["category"] != "overall"].set_index("category")
    assert cat.loc["cat0", "p_adj"] < 0.05 and cat.loc["cat0", "delta"] < -0.4
    assert (cat.drop(index="cat0")["p_adj"] >= 0.05).all()
    assert cat.loc["cat0", "p_adj"] >= cat.loc["cat0", "p_value"]


def _null_sweeps(n_sweeps: int, per_cat: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """n_sweeps independent (base, variant) pairs with exchangeable outcomes: H0 is true."""
    rng = np.random.default_rng(seed)
    p_cat = rng.uniform(0.5, 0.95, 11)
    shape = (n_sweeps, 11, per_cat)
    base = (rng.random(shape) < p_cat[None, :, None]).astype(float)
    fresh = (rng.random(shape) < p_cat[None, :, None]).astype(float)
    var = np.where(rng.random(shape) < 0.6, base, fresh)
    s, c, i = np.meshgrid(np.arange(n_sweeps), np.arange(11), np.arange(per_cat), indexing="ij")
    prompt = np.char.add(np.char.add(c.ravel().astype(str), "-"), i.ravel().astype(str))
    cat = np.array(CATS)[c.ravel()]
    frames = [pd.DataFrame({"variant_id": np.char.add(pre, s.ravel().astype(str)), "prompt_id": prompt, "category": cat,
                            "safe": arr.ravel()}) for pre, arr in (("b", base), ("v", var))]
    pairs = pd.DataFrame({"variant_id": [f"v{k}" for k in range(n_sweeps)], "base_id": [f"b{k}" for k in range(n_sweeps)]})
    return pd.concat(frames, ignore_index=True), pairs


@pytest.mark.parametrize("correction", ["holm", "bh"])
def test_false_positive_rate_under_no_effect(correction):
    n = 500
    s, pairs = _null_sweeps(n, per_cat=30, seed=11)
    out = adjust_pvalues(paired_safety(s, pairs, n_boot=50), correction)
    fwer = out[out["category"] != "overall"].groupby("variant_id")["p_adj"].min().lt(0.05).mean()
    overall = out[out["category"] == "overall"]["p_value"].lt(0.05).mean()
    bound = 0.05 + 2.33 * np.sqrt(0.05 * 0.95 / n)  # one-sided 99% sampling allowance
    assert fwer <= bound
    assert overall <= bound


def test_bbq_scores_hand_computed():
    # 4 disambiguated items, unknown=2, stereotyped group = option 0. target_index is the biased
    # answer (store semantics): 0 for negative questions, 1 (the non-stereotyped group) for
    # non-negative ones. neg->pred 0 (biased), neg->pred 1 (not), nonneg->pred 1 (biased),
    # nonneg->pred unknown (excluded). s_DIS = 2*2/3 - 1.
    items = pd.DataFrame({
        "item_id": ["a", "b", "c", "d", "e", "f"], "category": "age",
        "context_condition": ["disambig"] * 4 + ["ambig"] * 2, "question_polarity": ["neg", "neg", "nonneg", "nonneg", "neg", "neg"],
        "label": [0, 1, 1, 0, 2, 2], "target_index": [0, 0, 1, 1, 0, 0], "unknown_index": 2,
    })
    base = bbq_frame({"b": [2, 2, 2, 2, 2, 2]}, items)
    var = bbq_frame({"v": [0, 1, 1, 2, 0, 2]}, items)
    ind = bbq_indicators(var)
    assert list(ind["biased"]) == [1, 0, 1, 0, 1, 0]
    out = paired_bbq(pd.concat([base, var]), PAIRS, n_boot=100).set_index(["metric", "category"])
    assert out.loc[("bias_disambig", "age"), "value"] == pytest.approx(2 * 2 / 3 - 1)
    assert out.loc[("acc_disambig", "age"), "value"] == pytest.approx(0.75)
    # ambiguous: acc = 1/2, s over ambig items = 2*1/1 - 1 = 1 -> s_AMB = 0.5
    assert out.loc[("bias_ambig", "age"), "value"] == pytest.approx(0.5)
    assert out.loc[("bias_ambig", "age"), "base_value"] == 0.0  # all-unknown answers: no bias


def test_grouped_adjust_matches_statsmodels():
    rng = np.random.default_rng(5)
    p = pd.Series(rng.uniform(0, 0.2, 60))
    g = pd.Series(np.repeat(["a", "b", "c"], 20))
    for corr, method in (("holm", "holm"), ("bh", "fdr_bh")):
        adj = grouped_adjust(p, [g], corr)
        for key in "abc":
            sel = (g == key).to_numpy()
            assert np.allclose(adj[sel], multipletests(p[sel], method=method)[1])


def test_results_are_seeded_and_reproducible():
    rng = np.random.default_rng(1)
    base = (rng.random(110) < 0.8).astype(int)
    var = (rng.random(110) < 0.7).astype(int)
    s = safety_frame({"b": base, "v": var}, 10)
    a = paired_safety(s, PAIRS, n_boot=200, seed=4)
    b = paired_safety(s, PAIRS, n_boot=200, seed=4)
    pd.testing.assert_frame_equal(a, b)


def test_unknown_correction_is_rejected():
    with pytest.raises(ValueError, match="holm"):
        paired_comparisons(pd.DataFrame(), pd.DataFrame(), PAIRS, correction="bonferonni")


def test_bbq_permutation_false_positive_rate_under_no_effect():
    """Exchangeable answers (H0 true): the BBQ p-values reject about 5% or less."""
    n_sweeps, rng = 500, np.random.default_rng(21)
    items = bbq_items(n_per_cat=30, cats=("age", "ses"), seed=3)
    n = len(items)
    base = rng.integers(0, 3, (n_sweeps, n))
    fresh = rng.integers(0, 3, (n_sweeps, n))
    var = np.where(rng.random((n_sweeps, n)) < 0.6, base, fresh)
    frames = [items.assign(variant_id=f"{pre}{k}", pred_index=arr[k]) for pre, arr in (("b", base), ("v", var))
              for k in range(n_sweeps)]
    pairs = pd.DataFrame({"variant_id": [f"v{k}" for k in range(n_sweeps)], "base_id": [f"b{k}" for k in range(n_sweeps)]})
    out = paired_bbq(pd.concat(frames, ignore_index=True), pairs, n_boot=200)
    rates = out[out["category"] == "overall"].groupby("metric")["p_value"].apply(lambda p: (p < 0.05).mean())
    bound = 0.05 + 2.33 * np.sqrt(0.05 * 0.95 / n_sweeps)
    assert (rates <= bound).all(), rates.to_dict()


def test_bbq_overall_is_the_mean_over_categories():
    """'overall' is the unweighted mean of the category rows (value, base value, delta), not a
    pooled score in which a large category decides."""
    items = pd.concat([bbq_items(n_per_cat=16, cats=("age",), seed=1), bbq_items(n_per_cat=160, cats=("ses",), seed=2)],
                      ignore_index=True)
    rng = np.random.default_rng(4)
    f = bbq_frame({"b": list(rng.integers(0, 3, len(items))), "v": list(rng.integers(0, 3, len(items)))}, items)
    out = paired_bbq(f, PAIRS, n_boot=200).set_index(["metric", "category"])
    for metric in ("acc_ambig", "acc_disambig", "bias_ambig", "bias_disambig", "abs_bias_ambig", "abs_bias_disambig"):
        cats = out.loc[[(metric, "age"), (metric, "ses")]]
        row = out.loc[(metric, "overall")]
        for col in ("value", "base_value", "delta"):
            assert row[col] == pytest.approx(cats[col].mean()), (metric, col)
        assert row["n"] == cats["n"].sum()
        assert row["ci_low"] <= row["delta"] <= row["ci_high"]


def test_bbq_permutation_keeps_its_level_when_items_of_a_template_are_correlated():
    """H0 true, but each model answers all items of a template the same way (a template-level
    draw): the test must swap templates, not items, or it rejects far more than 5%."""
    n_sweeps, rng = 300, np.random.default_rng(8)
    n_templates, per_template = 12, 8
    rows = []
    for t in range(n_templates):
        for j in range(per_template):
            rows.append({"item_id": f"age{t}-{j}", "category": "age", "question_index": str(t),
                         "context_condition": "disambig", "question_polarity": "neg", "label": 0, "target_index": 0,
                         "unknown_index": 2})
    items = pd.DataFrame(rows)
    tmpl = items["question_index"].astype(int).to_numpy()
    frames = []
    for k in range(n_sweeps):
        for pre in ("b", "v"):
            pick = rng.integers(0, 2, n_templates)  # per template: all answers biased (0) or not (1)
            frames.append(items.assign(variant_id=f"{pre}{k}", pred_index=pick[tmpl]))
    pairs = pd.DataFrame({"variant_id": [f"v{k}" for k in range(n_sweeps)], "base_id": [f"b{k}" for k in range(n_sweeps)]})
    out = paired_bbq(pd.concat(frames, ignore_index=True), pairs, n_boot=200)
    rate = (out[(out["category"] == "age") & (out["metric"] == "acc_disambig")]["p_value"] < 0.05).mean()
    assert rate <= 0.05 + 2.33 * np.sqrt(0.05 * 0.95 / n_sweeps)
