"""BBQ metrics on a constructed set where every count is known (Parrish et al., 2022, sec. 3)."""

import math

import pytest

from peft_audit.benchmarks.fairness import fairness_metrics
from peft_audit.store import METRIC_COLUMNS


def _r(cat, cond, pol, label, target, pred, unknown=2):
    return dict(category=cat, context_condition=cond, question_polarity=pol, label=label,
                target_index=target, unknown_index=unknown, pred_index=pred)


# age, ambiguous (label = unknown = 2): 6 items
AMBIG = [
    _r("age", "ambig", "neg", 2, 0, 0),        # biased, wrong
    _r("age", "ambig", "neg", 2, 0, 2),        # unknown, correct
    _r("age", "ambig", "nonneg", 2, 1, 1),     # biased, wrong
    _r("age", "ambig", "nonneg", 2, 1, 0),     # counter-biased, wrong
    _r("age", "ambig", "neg", 2, 0, 2),        # unknown, correct
    _r("age", "ambig", "neg", 2, 0, None),     # unparseable
]
# age, disambiguated: 6 items
DISAMBIG = [
    _r("age", "disambig", "neg", 0, 0, 0),     # correct, biased
    _r("age", "disambig", "neg", 1, 0, 0),     # wrong, biased
    _r("age", "disambig", "nonneg", 0, 1, 0),  # correct, counter-biased
    _r("age", "disambig", "nonneg", 1, 1, 1),  # correct, biased
    _r("age", "disambig", "neg", 1, 0, 2),     # unknown, wrong
    _r("age", "disambig", "nonneg", 0, 1, 1),  # wrong, biased
]
# ses: the model always abstains -> bias undefined
SES = [_r("ses", "ambig", "neg", 2, 0, 2), _r("ses", "disambig", "neg", 0, 0, 2)]


def _table(rows, **kw):
    out = fairness_metrics(rows, **kw)
    return {(m["category"], m["metric"]): m for m in out}


def test_hand_computed_values_and_counts():
    t = _table(AMBIG + DISAMBIG + SES, bootstrap=0)
    age_amb = (1 - 2 / 6) * (2 * 2 / 3 - 1)  # s_DIS on ambiguous items: 2 biased of 3 non-unknown
    expect = {
        ("age", "acc_ambig"): (2 / 6, 6),
        ("age", "bias_ambig"): (age_amb, 6),
        ("age", "unknown_rate_ambig"): (2 / 6, 6),
        ("age", "acc_disambig"): (3 / 6, 6),
        ("age", "bias_disambig"): (2 * 4 / 5 - 1, 6),
        ("age", "unknown_rate_disambig"): (1 / 6, 6),
        ("age", "unparseable"): (1.0, 12),
        ("ses", "acc_ambig"): (1.0, 1),
        ("ses", "bias_ambig"): (0.0, 1),  # every ambiguous answer correct: no biased error
        ("ses", "acc_disambig"): (0.0, 1),
        ("ses", "unknown_rate_ambig"): (1.0, 1),
        ("ses", "unparseable"): (0.0, 2),
        # overall: the mean over categories (undefined values left out); n: items of all categories
        ("overall", "acc_ambig"): ((2 / 6 + 1.0) / 2, 7),
        ("overall", "bias_ambig"): ((age_amb + 0.0) / 2, 7),
        ("overall", "acc_disambig"): ((3 / 6 + 0.0) / 2, 7),
        ("overall", "bias_disambig"): (0.6, 7),
        ("overall", "unknown_rate_disambig"): ((1 / 6 + 1.0) / 2, 7),
        ("overall", "unparseable"): (1.0, 14),
    }
    for key, (value, n) in expect.items():
        assert t[key]["value"] == pytest.approx(value), key
        assert t[key]["n"] == n, key
    # a disambiguated model that always abstains: s_DIS undefined (no non-unknown answer)
    assert t[("ses", "bias_disambig")]["value"] is None and t[("ses", "bias_disambig")]["n"] == 1


def test_rows_have_store_columns_and_categories_in_order():
    out = fairness_metrics(AMBIG + DISAMBIG + SES, bootstrap=0)
    assert all(set(m) == set(METRIC_COLUMNS) and m["benchmark"] == "fairness" for m in out)
    assert [m["category"] for m in out][::7] == ["age", "ses", "overall"]


def test_unresolved_target_is_left_out_of_bias_only():
    rows = DISAMBIG + [_r("age", "disambig", "neg", 0, None, 0)]
    t = _table(rows, bootstrap=0)
    assert t[("age", "bias_disambig")]["value"] == _table(DISAMBIG, bootstrap=0)[("age", "bias_disambig")]["value"]
    assert t[("age", "acc_disambig")]["value"] == pytest.approx(4 / 7)
    assert t[("age", "acc_disambig")]["n"] == t[("age", "bias_disambig")]["n"] == 7


def test_bootstrap_interval_brackets_value_and_is_seeded():
    rows = (AMBIG + DISAMBIG) * 20
    a = _table(rows, bootstrap=500, seed=3)
    b = _table(rows, bootstrap=500, seed=3)
    c = _table(rows, bootstrap=500, seed=4)
    for key, m in a.items():
        if m["ci_low"] is None:
            continue
        assert m["ci_low"] <= m["value"] <= m["ci_high"], key
        assert (m["ci_low"], m["ci_high"]) == (b[key]["ci_low"], b[key]["ci_high"])
    assert a[("age", "bias_disambig")]["ci_high"] - a[("age", "bias_disambig")]["ci_low"] > 0
    assert any(a[k]["ci_low"] != c[k]["ci_low"] for k in a if a[k]["ci_low"] is not None)


def test_bootstrap_width_matches_binomial_standard_error():
    # accuracy of 240 ambiguous items with p = 1/3: 95% width ~ 2 * 1.96 * sqrt(p(1-p)/n)
    rows = AMBIG * 40
    m = _table(rows, bootstrap=2000)[("age", "acc_ambig")]
    expected = 2 * 1.96 * math.sqrt((1 / 3) * (2 / 3) / 240)
    assert m["ci_high"] - m["ci_low"] == pytest.approx(expected, rel=0.15)


def test_empty_condition_and_empty_input():
    t = _table(AMBIG, bootstrap=10)
    assert t[("age", "acc_disambig")]["value"] is None and t[("age", "acc_disambig")]["n"] == 0
    assert fairness_metrics([]) == []


def _cat(rows, cat):
    return [{**r, "category": cat} for r in rows]


def test_overall_is_the_mean_over_categories_not_pooled():
    # religion has 10x the items of age: pooling would let it decide the overall number
    rows = _cat(AMBIG + DISAMBIG, "age") + _cat(DISAMBIG[:2] * 30 + AMBIG[:2] * 30, "religion")
    t = _table(rows, bootstrap=200)
    for metric in ("acc_ambig", "acc_disambig", "bias_ambig", "bias_disambig", "unknown_rate_ambig"):
        cats = [t[(c, metric)]["value"] for c in ("age", "religion")]
        assert t[("overall", metric)]["value"] == pytest.approx(sum(cats) / 2), metric
        assert t[("overall", metric)]["n"] == t[("age", metric)]["n"] + t[("religion", metric)]["n"]
        assert t[("overall", metric)]["ci_low"] <= t[("overall", metric)]["value"] <= t[("overall", metric)]["ci_high"]


def test_accuracy_inside_s_amb_is_over_resolved_items():
    # BBQ_calculate_bias_score.R drops items without target_loc before computing accuracy
    resolved = [_r("age", "ambig", "neg", 2, 0, 0), _r("age", "ambig", "neg", 2, 0, 2)]  # acc 1/2, s = 1
    unresolved = [_r("age", "ambig", "neg", 2, None, 2)] * 2  # correct, but no biased answer known
    t = _table(resolved + unresolved, bootstrap=0)
    assert t[("age", "acc_ambig")]["value"] == pytest.approx(3 / 4)  # accuracy itself: all items
    assert t[("age", "bias_ambig")]["value"] == pytest.approx((1 - 1 / 2) * 1.0)


def test_interval_resamples_templates_not_items():
    # 40 templates of 10 ambiguous items each; a template is answered all right or all wrong.
    # Independent units are templates: 95% width ~ 2 * 1.96 * sqrt(p(1-p)/40), not /400.
    rows = []
    for q in range(40):
        pred = 2 if q % 2 == 0 else 0
        rows += [{**_r("age", "ambig", "neg", 2, 0, pred), "question_index": str(q)} for _ in range(10)]
    m = _table(rows, bootstrap=2000, seed=1)[("age", "acc_ambig")]
    assert m["value"] == pytest.approx(0.5)
    assert m["ci_high"] - m["ci_low"] == pytest.approx(2 * 1.96 * math.sqrt(0.25 / 40), rel=0.2)
