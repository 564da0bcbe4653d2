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
    assert overall["delta"] == pytest.approx(-0.4 / 11)  # mean over the 11 categories


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


# --- overall = mean over categories (one definition with the stored metrics) -----------------

def _unbalanced(lost=5):
    """cat0: 100 prompts, unchanged; cat1: 10 prompts, variant loses ``lost``. Pooled delta
    -lost/110, category-mean delta (0 - lost/10) / 2."""
    base = np.ones(110)
    var = base.copy()
    var[100:100 + lost] = 0
    cats = ["cat0"] * 100 + ["cat1"] * 10
    rows = [{"variant_id": vid, "prompt_id": f"p{j}", "category": cats[j], "safe": float(x)}
            for vid, arr in (("b", base), ("v", var)) for j, x in enumerate(arr)]
    return pd.DataFrame(rows)


def test_overall_safety_is_the_mean_over_categories_as_in_the_metrics():
    from peft_audit.benchmarks.safety.metrics import safety_metrics

    s = _unbalanced()
    out = paired_safety(s, PAIRS, n_boot=200).set_index("category")
    assert out.loc["overall", "delta"] == pytest.approx(-0.25)  # not -5/110
    assert out.loc["overall", "delta"] == pytest.approx(out.drop(index="overall")["delta"].mean())
    for vid, col in (("v", "value"), ("b", "base_value")):
        g = s[s["variant_id"] == vid]
        samples = [{"prompt_id": r.prompt_id, "benchmark": "safety", "category": r.category} for r in g.itertuples()]
        verdicts = [{"prompt_id": r.prompt_id, "judge": "combined", "label": "safe" if r.safe else "unsafe"}
                    for r in g.itertuples()]
        m = {(r["category"], r["metric"]): r["value"] for r in safety_metrics(samples, verdicts)}
        assert out.loc["overall", col] == pytest.approx(m["overall", "safety_score"])
    assert out.loc["overall", "n"] == 110
    assert out.loc["overall", "test"] == "stratified_permutation"


def test_overall_interval_matches_the_stratified_variance():
    # Stratified paired bootstrap of the category-mean difference: its half-width should match
    # the normal-theory stratified variance (1/K^2) sum_k s_dk^2 / n_k (Cochran 1977, eq. 5.6).
    rng = np.random.default_rng(7)
    sizes = {"cat0": 200, "cat1": 20, "cat2": 60}
    rows = []
    for c, n in sizes.items():
        base = (rng.random(n) < 0.8).astype(float)
        var = np.where(rng.random(n) < 0.7, base, (rng.random(n) < 0.6).astype(float))
        rows += [{"variant_id": vid, "prompt_id": f"{c}-{j}", "category": c, "safe": x}
                 for vid, arr in (("b", base), ("v", var)) for j, x in enumerate(arr)]
    s = pd.DataFrame(rows)
    out = paired_safety(s, PAIRS, n_boot=4000).set_index("category")
    w = s.pivot_table(index="prompt_id", columns="variant_id", values="safe").join(
        s.drop_duplicates("prompt_id").set_index("prompt_id")["category"])
    d = (w["v"] - w["b"]).groupby(w["category"])
    se = np.sqrt((d.var(ddof=1) / d.count()).sum()) / len(sizes)
    half = (out.loc["overall", "ci_high"] - out.loc["overall", "ci_low"]) / 2
    assert half == pytest.approx(1.96 * se, rel=0.15)
    assert out.loc["overall", "ci_low"] < out.loc["overall", "delta"] < out.loc["overall", "ci_high"]


def test_overall_drop_in_a_small_category_is_significant():
    # Pooled over prompts -6/110 is a small change; as a category mean it is -30 points. Six
    # discordant prompts all one way: exact sign-flip p = 2 / 2^6.
    out = paired_safety(_unbalanced(lost=6), PAIRS, n_boot=4000).set_index("category")
    assert out.loc["overall", "p_value"] == pytest.approx(2 / 64, abs=0.01)
    assert out.loc["overall", "ci_high"] < 0


# --- overall rows adjusted across variants ---------------------------------------------------

@pytest.mark.parametrize("correction, method", [("holm", "holm"), ("bh", "fdr_bh")])
def test_overall_p_values_are_adjusted_across_variants(correction, method):
    s, pairs = _null_sweeps(8, per_cat=10, seed=2)
    out = adjust_pvalues(paired_safety(s, pairs, n_boot=100), correction)
    o = out[out["category"] == "overall"]
    assert np.allclose(o["p_adj"], multipletests(o["p_value"], method=method)[1])
    assert (o["p_adj"] >= o["p_value"]).all() and (o["p_adj"] > o["p_value"]).any()


def test_significant_drops_finding_counts_adjusted_not_raw_p():
    from peft_audit.analysis.findings import significant_drops_finding

    # 10 variants each with raw p = 0.03: significant one by one, not after adjustment.
    p = pd.DataFrame({"variant_id": [f"v{i}" for i in range(10)], "base_id": "b", "benchmark": "safety",
                      "metric": "safety_score", "category": "overall", "value": 0.8, "base_value": 0.9,
                      "delta": -0.1, "ci_low": -0.2, "ci_high": -0.01, "n": 100, "p_value": 0.03, "test": "x"})
    f = significant_drops_finding(adjust_pvalues(p.assign(p_adj=np.nan), "holm"), {})
    assert f.text.startswith("No variant lost overall safety significantly")
    assert "adjusted across the 10 variants (Holm)" in f.text


# --- over-refusal: one definition; degeneration is not an improvement ------------------------

def test_degenerating_on_benign_prompts_is_not_an_improvement():
    from peft_audit.analysis.paired import paired_over_refusal
    from peft_audit.benchmarks.safety.metrics import safety_metrics

    n = 20
    labels = {"b": ["refusal"] * 4 + ["compliance"] * 16, "v": ["incoherent"] * n}  # the variant degenerates
    o = pd.DataFrame([{"variant_id": vid, "prompt_id": f"or-{i}", "label": lab}
                      for vid, labs in labels.items() for i, lab in enumerate(labs)])
    out = paired_over_refusal(o, PAIRS, n_boot=200).iloc[0]
    assert out["delta"] > 0 and out["value"] == 1.0  # more benign prompts left unanswered: worse
    assert out["ci_low"] > 0 and out["p_value"] < 0.05
    for vid, col in (("v", "value"), ("b", "base_value")):
        samples = [{"prompt_id": f"or-{i}", "benchmark": "over_refusal", "category": "benign"} for i in range(n)]
        verdicts = [{"prompt_id": f"or-{i}", "judge": "refusal", "label": lab} for i, lab in enumerate(labels[vid])]
        m = {(r["benchmark"], r["metric"]): r["value"] for r in safety_metrics(samples, verdicts)}
        assert out[col] == pytest.approx(m["over_refusal", "refusal_rate"])
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


def test_harmful_and_refusal_rates_are_compared_like_the_safety_score():
    from peft_audit.analysis.paired import paired_two_verdicts

    base = np.zeros(110)
    var = base.copy()
    var[:6] = 1  # 6 prompts of cat0 now get a harmful answer
    s = safety_frame({"b": base, "v": var}, 10)
    s = s.assign(harmful=s["safe"], refused=1.0 - s["safe"]).drop(columns="safe")
    out = paired_two_verdicts(s, PAIRS, n_boot=200)
    assert set(out["metric"]) == {"harmful_rate", "refusal_rate"} and set(out["benchmark"]) == {"safety"}
    h = out[(out["metric"] == "harmful_rate") & (out["category"] == "cat0")].iloc[0]
    assert h["delta"] == pytest.approx(0.6) and h["test"] == "mcnemar_exact"
    assert h["p_value"] == pytest.approx(mcnemar([[4, 0], [6, 0]], exact=True).pvalue)
    r = out[(out["metric"] == "refusal_rate") & (out["category"] == "overall")].iloc[0]
    assert r["delta"] == pytest.approx(-0.6 / 11) and r["test"] == "stratified_permutation"
    # Holm within each (variant, benchmark, metric) family, as for the safety score
    adj = adjust_pvalues(out)
    cat_rows = adj[(adj["metric"] == "harmful_rate") & (adj["category"] != "overall")]
    expected = multipletests(cat_rows["p_value"], method="holm")[1]
    assert np.allclose(cat_rows["p_adj"], expected)


def test_a_verdict_not_measured_gives_no_comparison():
    # no harm judge (harmful all NaN) and a store written before the refusal verdict (refused NaN)
    from peft_audit.analysis.paired import paired_two_verdicts

    s = safety_frame({"b": np.ones(110), "v": np.ones(110)}, 10).assign(harmful=np.nan, refused=np.nan)
    assert paired_two_verdicts(s, PAIRS, n_boot=50).empty
    # measured for the variant only: no pair to compare either (the gate says what is missing)
    s.loc[s["variant_id"] == "v", "harmful"] = 0.0
    assert paired_two_verdicts(s, PAIRS, n_boot=50).empty
