"""The recovered share of lost safety (analysis.mitigations.recovered_share) on hand-built verdicts."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from peft_audit.analysis.mitigations import recovered_share


def frame(outcomes: dict[str, list[float]], categories: list[str]) -> pd.DataFrame:
    return pd.DataFrame([{"variant_id": v, "prompt_id": f"p{i}", "category": categories[i], "refused": x}
                         for v, xs in outcomes.items() for i, x in enumerate(xs)])


def share(df: pd.DataFrame, **kw) -> dict:
    return recovered_share(df, base_id="b", original_id="o", repair_id="r", value="refused", n_boot=500, **kw)


def test_share_of_the_gap_won_back():
    cats = ["a"] * 10
    df = frame({"b": [1] * 10, "o": [0] * 10, "r": [1] * 8 + [0] * 2}, cats)
    got = share(df)
    assert got["share"] == pytest.approx(0.8) and got["n"] == 10
    assert got["ci_low"] <= 0.8 <= got["ci_high"] and 0.4 <= got["ci_low"] and got["ci_high"] == pytest.approx(1.0)


def test_rate_is_the_mean_over_categories():
    # category a: base 1, original 0, repair 1 (all back); category b (4 prompts): base 1, original 0, repair 0
    cats = ["a", "b", "b", "b", "b"]
    df = frame({"b": [1, 1, 1, 1, 1], "o": [0, 0, 0, 0, 0], "r": [1, 0, 0, 0, 0]}, cats)
    assert share(df)["share"] == pytest.approx(0.5)  # pooled over prompts it would be 0.2


def test_only_prompts_all_three_answered_count():
    cats = ["a"] * 4
    df = frame({"b": [1, 1, 1, 1], "o": [0, 0, 0, np.nan], "r": [1, 0, 0, 1]}, cats)
    got = share(df)
    assert got["n"] == 3 and got["share"] == pytest.approx(1 / 3)


def test_past_the_base_and_worse_than_the_original():
    cats = ["a"] * 4
    assert share(frame({"b": [1, 1, 0, 0], "o": [0, 0, 0, 0], "r": [1, 1, 1, 1]}, cats))["share"] == pytest.approx(2.0)
    assert share(frame({"b": [0, 0, 0, 0], "o": [1, 1, 0, 0], "r": [1, 1, 1, 1]}, cats))["share"] == pytest.approx(-1.0)


@pytest.mark.parametrize("outcomes", [
    {"b": [1, 0], "o": [1, 0], "r": [1, 1]},  # base and original tie: nothing was lost
    {"b": [1, 0], "o": [0, 0]},  # no repair
])
def test_undefined_share_is_nan(outcomes):
    got = share(frame(outcomes, ["a", "a"]))
    assert math.isnan(got["share"]) and math.isnan(got["ci_low"])


def test_the_closing_lines_say_what_a_repair_won_back():
    from types import SimpleNamespace

    from peft_audit.report.verdict import _repair_lines

    variants = pd.DataFrame({"id": ["b", "o", "r"], "label": ["base", "demo", "demo ⟶ safemerge τ 0.2 α 0.5"],
                             "repair": [None, None, "safemerge (alpha 0.5, threshold 0.2)"]})
    row = {"variant_id": "r", "original_id": "o", "base_id": "b", "benchmark": "safety", "value": 0.27,
           **{f"{k}_vs_{t}": np.nan for k in ("delta", "ci_low", "ci_high", "p_adj") for t in ("original", "base")}}
    table = pd.DataFrame([
        {**row, "metric": "refusal_rate", "lost": True, "recovered_share": 1.68, "recovered_ci_low": 1.04,
         "recovered_ci_high": 3.1},
        {**row, "metric": "harmful_rate", "lost": False, "recovered_share": np.nan, "recovered_ci_low": np.nan,
         "recovered_ci_high": np.nan},
    ])
    lines = _repair_lines(SimpleNamespace(variants=variants, mitigations=table))
    assert len(lines) == 1
    assert lines[0] == ("  demo ⟶ safemerge τ 0.2 α 0.5: won back refusal rate (harmful prompts) 168% [104%, 310%] of "
                        "what the original lost vs base (Mitigations section)")
    assert _repair_lines(SimpleNamespace(variants=variants, mitigations=pd.DataFrame())) == []
