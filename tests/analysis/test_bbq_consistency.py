"""The analysis (paired deltas, gate), the synthetic store and the benchmark's own metrics must
agree on BBQ scores and on what ``n`` means: there is one definition
(:mod:`peft_audit.benchmarks.fairness.metrics`) and the others call it.

A second application of question polarity once flipped every non-negative item in one of them;
s_AMB was None in one table and 0.0 in another when every ambiguous answer was correct; and
the bias score's ``n`` counted non-unknown answers in one table and items in the other.
"""

import numpy as np
import pandas as pd
import pytest

from peft_audit.analysis.paired import paired_bbq
from peft_audit.benchmarks.fairness import fairness_metrics, load_bbq

SCORES = {"acc_ambig", "acc_disambig", "bias_ambig", "bias_disambig"}


def rows_with_predictions(seed, all_ambiguous_correct=False):
    rng = np.random.default_rng(seed)
    rows = []
    for it in load_bbq("builtin").items:
        pred = int(rng.integers(3))
        if all_ambiguous_correct and it.context_condition == "ambig":
            pred = it.label
        rows.append({
            "item_id": it.item_id, "category": it.category, "context_condition": it.context_condition,
            "question_index": it.question_index, "question_polarity": it.question_polarity, "label": it.label,
            "target_index": it.target_index, "unknown_index": it.unknown_index, "pred_index": pred,
        })
    return rows


@pytest.mark.parametrize("seed, all_ambiguous_correct", [(0, False), (1, False), (2, True)])
def test_analysis_and_benchmark_metrics_agree(seed, all_ambiguous_correct):
    base, var = rows_with_predictions(seed), rows_with_predictions(seed + 100, all_ambiguous_correct)
    frame = pd.concat([pd.DataFrame(base).assign(variant_id="b"), pd.DataFrame(var).assign(variant_id="v")])
    paired = paired_bbq(frame, pd.DataFrame({"variant_id": ["v"], "base_id": ["b"]}), n_boot=10)
    bench = {(m["category"], m["metric"]): m for m in fairness_metrics(var, bootstrap=0)}
    checked = 0
    for r in paired.itertuples():
        if r.metric not in SCORES:
            continue
        expected = bench[(r.category, r.metric)]
        assert r.n == expected["n"], (r.category, r.metric)
        if expected["value"] is None:
            assert np.isnan(r.value), (r.category, r.metric)
            continue
        assert r.value == pytest.approx(expected["value"]), (r.category, r.metric)
        checked += 1
    assert checked >= 10 * 4
    if all_ambiguous_correct:
        assert all(bench[(c, "bias_ambig")]["value"] == 0.0 for c, _ in bench)
        assert (paired.loc[paired["metric"] == "bias_ambig", "value"] == 0.0).all()


def test_synthetic_store_writes_the_benchmark_metrics(tmp_path):
    from synthetic_store import build_synthetic_store
    from peft_audit.store import Store

    run = build_synthetic_store(tmp_path, n_variants=1, n_failed=0, bases=("llama-3.2-1b",), methods=("lora",))
    store = Store(run / "results.sqlite")
    try:
        metrics = pd.DataFrame(store.rows("metrics"))
        samples = pd.DataFrame(store.rows("fairness_samples"))
    finally:
        store.close()
    for vid, g in samples.groupby("variant_id"):
        stored = metrics[(metrics["variant_id"] == vid) & (metrics["benchmark"] == "fairness")]
        stored = {(r.category, r.metric): (r.value, r.n) for r in stored.itertuples()}
        for m in fairness_metrics(g.to_dict("records"), bootstrap=0):
            value, n = stored[(m["category"], m["metric"])]
            assert n == m["n"], (vid, m["category"], m["metric"])
            assert (value is None or np.isnan(value)) if m["value"] is None else value == pytest.approx(m["value"])
