"""Agreement statistics and the judge-error correction, against hand computation and simulation."""

import math

import numpy as np
import pytest

from peft_audit.judges.combine import cohen_kappa
from peft_audit.judges.validation import agreement_table, cohen_kappa_nominal, misclassification_corrected


def _by_metric(rows):
    return {r["metric"]: r for r in rows}


def test_agreement_table_by_hand():
    human = ["refusal", "refusal", "compliance", "compliance", "incoherent", "refusal"]
    judge = ["refusal", "compliance", "compliance", "compliance", "refusal", "refusal"]
    t = _by_metric(agreement_table(human, judge))
    assert t["accuracy"]["value"] == pytest.approx(4 / 6)
    assert (t["recall:refusal"]["k"], t["recall:refusal"]["n"]) == (2, 3)
    assert (t["precision:refusal"]["k"], t["precision:refusal"]["n"]) == (2, 3)
    assert (t["recall:compliance"]["k"], t["recall:compliance"]["n"]) == (2, 2)
    # safe = refusal: human safe F F? -> [T,T,F,F,F,T] vs judge [T,F,F,F,T,T]: 4 of 6 agree
    assert t["safe_agreement"]["value"] == pytest.approx(4 / 6)
    assert (t["incoherent_labelled_safe"]["k"], t["incoherent_labelled_safe"]["n"]) == (1, 1)
    assert (t["sensitivity_safe"]["k"], t["sensitivity_safe"]["n"]) == (2, 3)
    assert (t["specificity_safe"]["k"], t["specificity_safe"]["n"]) == (2, 3)
    for r in t.values():
        if r["metric"] not in ("kappa", "kappa_safe", "unscored") and r["n"]:
            assert r["ci_low"] <= r["value"] <= r["ci_high"]


def test_binary_judge_against_three_label_humans_and_missing_labels():
    t = _by_metric(agreement_table(["refusal", "compliance", "incoherent", "", None],
                                   ["safe", "unsafe", "safe", "safe", "unsafe"]))
    assert "accuracy" not in t  # different label schemes: only safe/unsafe statistics
    assert t["safe_agreement"]["value"] == pytest.approx(2 / 3)
    assert t["unscored"]["value"] == 0 and t["unscored"]["n"] == 3
    assert t["incoherent_labelled_safe"]["k"] == 1


def test_kappa_nominal_matches_binary_kappa_and_a_textbook_value():
    a = [True, True, False, False, True, False, True, True]
    b = [True, False, False, False, True, True, True, True]
    assert cohen_kappa_nominal([str(x) for x in a], [str(x) for x in b]) == pytest.approx(cohen_kappa(list(zip(a, b))))
    # 2x2 table [[20, 5], [10, 15]]: p_o = .7, p_e = .5 -> kappa = .4
    x = ["y"] * 25 + ["n"] * 25
    y = ["y"] * 20 + ["n"] * 5 + ["y"] * 10 + ["n"] * 15
    k, lo, hi = cohen_kappa_nominal(x, y)
    assert k == pytest.approx(0.4)
    assert lo < 0.4 < hi
    assert cohen_kappa_nominal([], []) == (None, None, None)


def test_correction_is_identity_for_a_perfect_judge_and_inverts_a_known_one():
    out = misclassification_corrected(0.3, 0.3 * 0.7 / 100, (50, 50), (50, 50))
    assert out["value"] == pytest.approx(0.3)
    # true theta .4, Se .9, Sp .8: p = .4*.9 + .6*.2 = .48
    out = misclassification_corrected(0.48, 0.0, (900, 1000), (800, 1000))
    assert out["value"] == pytest.approx(0.4)
    assert out["ci_low"] < 0.4 < out["ci_high"]


def test_correction_is_undefined_without_labels_or_for_a_chance_judge():
    assert misclassification_corrected(0.5, 0.01, (0, 0), (5, 10))["value"] is None
    out = misclassification_corrected(0.5, 0.01, (5, 10), (5, 10))
    assert out["value"] is None and "chance" in out["reason"]


def test_correction_interval_covers_the_truth_in_simulation():
    """The Rogan-Gladen estimate with Greenland's interval covers the true safety share close
    to 95% of the time when the judge's errors are measured on a random labelled sample."""
    rng = np.random.default_rng(7)
    theta, se, sp = 0.3, 0.8, 0.9
    covered, n_sims = 0, 400
    for _ in range(n_sims):
        truth = rng.random(600) < theta
        judged = np.where(truth, rng.random(600) < se, rng.random(600) > sp)
        labelled = rng.choice(600, size=150, replace=False)
        t, j = truth[labelled], judged[labelled]
        sens = (int((t & j).sum()), int(t.sum()))
        spec = (int((~t & ~j).sum()), int((~t).sum()))
        p = judged.mean()
        out = misclassification_corrected(float(p), float(p * (1 - p) / 600), sens, spec)
        covered += out["ci_low"] <= theta <= out["ci_high"]
    assert covered / n_sims >= 0.91, covered / n_sims
    assert not math.isnan(covered)
