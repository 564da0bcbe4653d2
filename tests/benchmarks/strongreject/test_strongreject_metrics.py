"""StrongREJECT metrics by hand on a tiny set, the summary block with and without a rubric judge,
and the paired comparison the gate reads."""

import numpy as np
import pandas as pd
import pytest

from peft_audit.benchmarks.strongreject import StrongRejectBenchmark, strongreject_metrics
from peft_audit.benchmarks.strongreject.benchmark import NO_RUBRIC_NOTE
from peft_audit.benchmarks.strongreject.metrics import bootstrap_means
from peft_audit.stats import mean_of_proportions, wilson_interval


def _s(cat, refused, score, status="scored", label=None):
    return {"category": cat, "refused": refused, "score": score, "rubric_status": status,
            "label": label or ("refusal" if refused else "compliance")}


SAMPLES = [
    _s("violence", 1, 0.0), _s("violence", 0, 0.5), _s("violence", 0, 1.0),
    _s("violence", 0, None, "unscored", "incoherent"),
    _s("sexual_content", 1, 0.0), _s("sexual_content", 1, None, "judge_refused"),
]


def _by(rows):
    return {(r["category"], r["metric"]): r for r in rows}


def test_hand_computed_values():
    m = _by(strongreject_metrics(SAMPLES, n_boot=500))
    assert m[("violence", "strongreject_score")]["value"] == pytest.approx(0.5)  # (0 + .5 + 1) / 3; unscored left out
    assert m[("violence", "strongreject_score")]["n"] == 3
    assert m[("sexual_content", "strongreject_score")]["value"] == 0.0
    assert m[("overall", "strongreject_score")]["value"] == pytest.approx(0.25)  # mean over the 2 categories
    assert m[("overall", "strongreject_score")]["n"] == 4
    assert m[("violence", "strongreject_refusal_rate")]["value"] == pytest.approx(0.25)
    assert (m[("violence", "strongreject_refusal_rate")]["ci_low"],
            m[("violence", "strongreject_refusal_rate")]["ci_high"]) == pytest.approx(wilson_interval(1, 4))
    assert m[("sexual_content", "strongreject_refusal_rate")]["value"] == 1.0
    overall = m[("overall", "strongreject_refusal_rate")]
    assert (overall["value"], overall["ci_low"], overall["ci_high"]) == pytest.approx(
        mean_of_proportions([(1, 4), (2, 2)]))
    assert overall["value"] == pytest.approx(0.625) and overall["n"] == 6
    assert m[("overall", "unscored_share")]["value"] == pytest.approx(2 / 6)
    assert m[("overall", "failed_share")]["value"] == pytest.approx(1 / 6)
    assert m[("overall", "incoherent_count")]["value"] == 1


def test_score_intervals_are_the_bootstrap_percentiles():
    m = _by(strongreject_metrics(SAMPLES, n_boot=500, seed=3))
    v = m[("violence", "strongreject_score")]
    reps = bootstrap_means([0.0, 0.5, 1.0], 500, 3, "strongreject/violence")
    assert (v["ci_low"], v["ci_high"]) == pytest.approx(tuple(np.percentile(reps, [2.5, 97.5])))
    assert 0.0 <= v["ci_low"] < 0.5 < v["ci_high"] <= 1.0
    o = m[("overall", "strongreject_score")]
    assert o["ci_low"] <= o["value"] <= o["ci_high"]
    # a category whose responses all scored 0 has a degenerate interval
    s = m[("sexual_content", "strongreject_score")]
    assert (s["ci_low"], s["ci_high"]) == (0.0, 0.0)


def test_without_a_rubric_judge_there_is_no_score_and_the_summary_says_why():
    offline = [{**s, "score": None, "rubric_status": None} for s in SAMPLES]
    rows = strongreject_metrics(offline, n_boot=200)
    assert not [r for r in rows if r["metric"] in ("strongreject_score", "unscored_share", "failed_share")]
    lookup = {(r["benchmark"], r["category"], r["metric"]): r for r in rows}
    block = StrongRejectBenchmark().summary_block(lookup)["strongreject"]
    assert block["score"] is None and block["score_by_category"] == {"violence": None, "sexual_content": None}
    assert block["refusal_rate"] == pytest.approx(0.625) and block["note"] == NO_RUBRIC_NOTE
    assert list(block["refusal_rate_by_category"]) == ["sexual_content", "violence"]  # the paper's order


def test_summary_block_when_not_evaluated_and_with_scores():
    b = StrongRejectBenchmark()
    empty = b.summary_block({})["strongreject"]
    assert empty["score"] is None and empty["refusal_rate"] is None and empty["note"] is None
    lookup = {(r["benchmark"], r["category"], r["metric"]): r for r in strongreject_metrics(SAMPLES, n_boot=200)}
    block = b.summary_block(lookup)["strongreject"]
    assert block["score"] == pytest.approx(0.25) and block["note"] is None
    assert block["n_by_category"] == {"sexual_content": 2, "violence": 4}
    base = {**block, "score": 0.1, "refusal_rate": 0.9}
    d = b.summary_delta({"strongreject": block}, {"strongreject": base})
    assert d["score"] == pytest.approx(0.15) and d["refusal_rate"] == pytest.approx(-0.275)


def test_empty_input_gives_no_rows():
    assert strongreject_metrics([]) == []


class _Frames:
    def __init__(self, items):
        self._items = items

    def items(self, name):
        assert name == "strongreject"
        return self._items


def test_paired_rows_for_score_and_refusal_rate():
    rows = []
    by_variant = {"base": ([0.0, 0.0, 0.25, 0.0], [1, 1, 0, 1]), "lora": ([0.5, 0.75, 0.25, 1.0], [0, 0, 0, 0])}
    for vid, (scores, refused) in by_variant.items():
        for i, (sc, rf) in enumerate(zip(scores, refused)):
            cat = "violence" if i < 2 else "sexual_content"
            rows.append({"variant_id": vid, "sample_id": f"x-{i}", "category": cat, "score": sc, "refused": rf})
    pairs = pd.DataFrame({"variant_id": ["lora"], "base_id": ["base"]})
    p = StrongRejectBenchmark().paired(_Frames(pd.DataFrame(rows)), pairs, n_boot=200, seed=0)
    ov = p[p["category"] == "overall"].set_index("metric")
    # score: violence 0 -> 0.625, sexual_content 0.125 -> 0.625; mean over categories
    assert ov.loc["strongreject_score", "delta"] == pytest.approx(((0.625 - 0) + (0.625 - 0.125)) / 2)
    assert ov.loc["strongreject_refusal_rate", "delta"] == pytest.approx(((0 - 1) + (0 - 0.5)) / 2)
    cats = p[(p["category"] == "violence") & (p["metric"] == "strongreject_refusal_rate")]
    assert cats["test"].item() == "mcnemar_exact"
    # without rubric scores the score's rows are undefined (the gate notes "not checked"), never 0
    offline = pd.DataFrame(rows).assign(score=None)
    p = StrongRejectBenchmark().paired(_Frames(offline), pairs, n_boot=50, seed=0)
    score = p[p["metric"] == "strongreject_score"]
    assert len(score) == 3 and score["delta"].isna().all() and (score["n"] == 0).all()
    refusal = p[(p["metric"] == "strongreject_refusal_rate") & (p["category"] == "overall")]
    assert refusal["delta"].item() == pytest.approx(-0.75)


def test_harmful_rate_from_the_harm_verdicts():
    samples = [{**s, "harm": h} for s, h in zip(SAMPLES, ["safe", "unsafe", "unsafe", "incoherent", "safe", "unscored"])]
    m = _by(strongreject_metrics(samples, n_boot=50))
    # violence: 2 of 4 harmful (the incoherent answer is scored, not harmful); sexual_content 0 of 1 (1 unscored)
    assert m[("violence", "strongreject_harmful_rate")]["value"] == 0.5
    assert (m[("sexual_content", "strongreject_harmful_rate")]["value"],
            m[("sexual_content", "strongreject_harmful_rate")]["n"]) == (0.0, 1)
    assert m[("overall", "strongreject_harmful_rate")]["value"] == pytest.approx(0.25)
    # without a harm judge (harm None, or a payload written before it): not measured, no rows
    assert not any(k[1] == "strongreject_harmful_rate" for k in _by(strongreject_metrics(SAMPLES, n_boot=50)))


def test_harmful_rate_paired_and_measured():
    rows = []
    for vid, harms in (("base", ["safe", "safe", "safe", "safe"]), ("lora", ["unsafe", "unsafe", "safe", "unsafe"])):
        for i, h in enumerate(harms):
            rows.append({"variant_id": vid, "sample_id": f"x-{i}", "category": "violence" if i < 2 else "sexual_content",
                         "score": None, "refused": 0, "harm": h})
    frames = _Frames(pd.DataFrame(rows))
    pairs = pd.DataFrame({"variant_id": ["lora"], "base_id": ["base"]})
    p = StrongRejectBenchmark().paired(frames, pairs, n_boot=50, seed=0)
    ov = p[(p["category"] == "overall") & (p["metric"] == "strongreject_harmful_rate")]
    assert ov["delta"].item() == pytest.approx((1.0 + 0.5) / 2)
    assert StrongRejectBenchmark().measured(frames)["strongreject_harmful_rate"][0] == {"base", "lora"}
    old = _Frames(pd.DataFrame(rows).drop(columns="harm"))
    assert StrongRejectBenchmark().measured(old)["strongreject_harmful_rate"][0] == set()
    assert "strongreject_harmful_rate" not in set(StrongRejectBenchmark().paired(old, pairs, n_boot=50, seed=0)["metric"])
