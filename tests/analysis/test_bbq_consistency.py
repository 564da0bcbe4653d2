"""The analysis (paired deltas, gate) and the benchmark's own metrics must agree on BBQ scores.

Both read ``target_index`` from the store; a second application of question polarity in one of
them once flipped every non-negative item. This test runs both on the built-in BBQ sample with
random predictions and compares every category's numbers.
"""

import numpy as np
import pandas as pd
import pytest

from peft_audit.analysis.paired import paired_bbq
from peft_audit.benchmarks.fairness import fairness_metrics, load_bbq


def rows_with_predictions(seed):
    rng = np.random.default_rng(seed)
    rows = []
    for it in load_bbq("builtin").items:
        rows.append({
            "item_id": it.item_id, "category": it.category, "context_condition": it.context_condition,
            "question_polarity": it.question_polarity, "label": it.label, "target_index": it.target_index,
            "unknown_index": it.unknown_index, "pred_index": int(rng.integers(3)),
        })
    return rows


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_analysis_and_benchmark_metrics_agree(seed):
    base, var = rows_with_predictions(seed), rows_with_predictions(seed + 100)
    frame = pd.concat([pd.DataFrame(base).assign(variant_id="b"), pd.DataFrame(var).assign(variant_id="v")])
    paired = paired_bbq(frame, pd.DataFrame({"variant_id": ["v"], "base_id": ["b"]}), n_boot=10)
    bench = {(m["category"], m["metric"]): m["value"] for m in fairness_metrics(var, bootstrap=0)}
    checked = 0
    for r in paired.itertuples():
        if r.metric not in {"acc_ambig", "acc_disambig", "bias_ambig", "bias_disambig"}:
            continue
        expected = bench.get((r.category, r.metric))
        if expected is None or (isinstance(expected, float) and np.isnan(expected)):
            continue
        assert r.value == pytest.approx(expected), (r.category, r.metric)
        checked += 1
    assert checked >= 9 * 4
