import numpy as np
import pandas as pd
import pytest

from peft_audit.analysis.tradeoffs import category_ranking, median_with_ci, pareto_front, spearman_with_ci


def test_pareto_front_hand_case():
    x = [0.0, 1.0, 2.0, 1.0, np.nan, 2.0]
    y = [2.0, 1.0, 0.0, 0.5, 9.0, 0.0]
    assert list(pareto_front(x, y)) == [True, True, True, False, False, True]


def test_spearman_monotone_and_null():
    rng = np.random.default_rng(0)
    x = rng.normal(size=60)
    r = spearman_with_ci(x, np.exp(x), n_boot=300)
    assert r["rho"] == pytest.approx(1.0) and r["ci_low"] > 0.99
    r0 = spearman_with_ci(x, rng.normal(size=60), n_boot=300)
    assert r0["ci_low"] < r0["rho"] < r0["ci_high"] and r0["ci_low"] < 0 < r0["ci_high"]
    assert np.isnan(spearman_with_ci([1, 2], [2, 1])["rho"])


def test_category_ranking_puts_planted_category_first():
    rng = np.random.default_rng(1)
    rows = []
    for v in range(20):
        for c in ("a", "b", "c"):
            d = rng.normal(-0.2 if c == "b" else 0.0, 0.05)
            rows.append({"variant_id": f"v{v}", "metric": "safety_score", "category": c, "delta": d,
                         "p_adj": 0.01 if d < -0.1 else 0.5})
    r = category_ranking(pd.DataFrame(rows))
    assert r.iloc[0]["category"] == "b" and r.iloc[0]["ci_high"] < 0
    assert r.iloc[0]["n_significant_drops"] >= 15


def test_median_with_ci():
    x = np.arange(101, dtype=float)
    med, lo, hi, n = median_with_ci(x, n_boot=500)
    assert med == 50 and lo < 50 < hi and n == 101
    assert np.isnan(median_with_ci([])[0])
