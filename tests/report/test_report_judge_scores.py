"""Every judge score in the report comes with the share of responses that judge left unscored."""

import pandas as pd

from peft_audit.report.markdown import _grid_md, _judge_scores_md
from peft_audit.report.tables import score_grid

VARIANTS = pd.DataFrame([{"id": "b", "label": "base", "method": "base", "base_model": "m", "status": "done"}])
PAIRED = pd.DataFrame(columns=["variant_id", "base_id", "metric", "category", "value", "base_value", "delta",
                               "ci_low", "ci_high", "n", "p_value", "p_adj"])


def _m(metric, value, lo=None, hi=None, n=10):
    return {"variant_id": "b", "benchmark": "safety", "category": "overall", "metric": metric, "value": value,
            "ci_low": lo, "ci_high": hi, "n": n}


METRICS = pd.DataFrame([
    _m("safety_score", 0.9, 0.7, 0.97, 8), _m("unscored_share", 0.2),
    _m("safety_score:llm", 0.8, 0.5, 0.95, 6), _m("unscored_share:llm", 0.4), _m("judge_refused_count:llm", 3),
    _m("harmfulness_rate", 0.1, 0.02, 0.4, 6),
    _m("safety_score:keyword", 0.7, 0.4, 0.9, 10), _m("unscored_share:keyword", 0.0),
    _m("judge_refused_count:keyword", 0),
])


def test_safety_grid_cell_shows_unscored_share():
    md = "\n".join(_grid_md(score_grid(VARIANTS, PAIRED, "safety_score", metrics=METRICS)))
    assert "90.0 (base); 20% unscored" in md


def test_per_judge_table_shows_unscored_share_and_refusals():
    md = "\n".join(_judge_scores_md(VARIANTS, METRICS))
    assert "| base | combined | 90.0 | [70.0, 97.0] | 8 | 20% | — | — |" in md
    assert "| base | keyword | 70.0 | [40.0, 90.0] | 10 | 0% | 0 | — |" in md
    assert "| base | llm | 80.0 | [50.0, 95.0] | 6 | 40% | 3 | 10.0 |" in md
    assert "this project's 1-5 rubric" in md and "not the same rubric" in md
