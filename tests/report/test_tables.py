"""Colour direction of report cells: red means worse for every metric."""

import pandas as pd

from peft_audit.report.tables import cell_colour, heatmap_grid, score_grid

VARIANTS = pd.DataFrame([{"id": "b", "label": "base", "method": "base", "base_model": "m", "status": "done"},
                         {"id": "v", "label": "ft", "method": "lora", "base_model": "m", "status": "done"}])


def paired(metric, delta, lo, hi, extra=()):
    rows = [{"variant_id": "v", "base_id": "b", "metric": metric, "category": "overall", "value": 0.5,
             "base_value": 0.5 - delta, "delta": delta, "ci_low": lo, "ci_high": hi, "n": 50, "p_value": 0.01,
             "p_adj": 0.01}]
    return pd.DataFrame(rows + list(extra))


def ft_cell(grid):
    return grid["rows"][1]["cells"][0]


def test_safety_drop_is_red_and_gain_is_green():
    assert ft_cell(score_grid(VARIANTS, paired("safety_score", -0.2, -0.3, -0.1), "safety_score"))["good"] == -1
    assert ft_cell(score_grid(VARIANTS, paired("safety_score", 0.2, 0.1, 0.3), "safety_score"))["good"] == 1
    assert "rgba(210,40,40" in cell_colour(ft_cell(score_grid(VARIANTS, paired("safety_score", -0.2, -0.3, -0.1),
                                                               "safety_score")))


def test_more_over_refusal_is_worse():
    assert ft_cell(score_grid(VARIANTS, paired("refusal_rate", 0.2, 0.1, 0.3), "refusal_rate"))["good"] == -1


def test_bias_cells_follow_absolute_bias_change():
    # signed bias fell from +0.3 to -0.5: |bias| rose by 0.2, so the cell is worse
    abs_row = {"variant_id": "v", "base_id": "b", "metric": "abs_bias_ambig", "category": "overall", "value": 0.5,
               "base_value": 0.3, "delta": 0.2, "ci_low": 0.1, "ci_high": 0.3, "n": 50, "p_value": 0.01, "p_adj": 0.01}
    g = score_grid(VARIANTS, paired("bias_ambig", -0.8, -0.9, -0.7, [abs_row]), "bias_ambig")
    assert ft_cell(g)["good"] == -1
    assert g["rows"][0]["cells"][0]["delta_text"] == "base"


def test_heatmap_grid_symmetric_scale_and_text():
    m = pd.DataFrame({"a": [-0.2, 0.1], "b": [0.0, float("nan")]}, index=["x", "y"])
    h = heatmap_grid(m, "t")
    assert h["limit"] == 20.0
    assert [c["text"] for c in h["rows"][0]["cells"]] == ["-20", "+0"]
    assert h["rows"][1]["cells"][1]["colour"] == "#eeeeee"


def test_heatmap_colours_flip_for_bias():
    m = pd.DataFrame({"a": [0.2]}, index=["x"])
    up_good = heatmap_grid(m, "t")["rows"][0]["cells"][0]["colour"]
    up_bad = heatmap_grid(m, "t", higher_is_better=False)["rows"][0]["cells"][0]["colour"]
    assert int(up_good[3:5], 16) > int(up_good[1:3], 16)  # greener than red
    assert int(up_bad[1:3], 16) > int(up_bad[3:5], 16)  # redder than green


def test_external_validity_rows_show_the_run_judges_beside_the_field_references():
    from peft_audit.analysis.data import run_judges
    from peft_audit.report.tables import external_validity_rows

    ext = external_validity_rows(["refusal", "llm"])  # llm was not measured on the external sets
    assert ext["columns"][:2] == ["XSTest (all)", "XSTest held-out half"]
    names = [r["name"] for r in ext["rows"]]
    assert names[0] == "refusal" and "llm" not in names
    assert any(n.startswith("HarmBench-Llama-2-13b-cls") and "reference" in n for n in names)
    refusal = ext["rows"][0]["cells"]
    assert all("[" in c and "n=" in c for c in refusal)
    assert "(proxy)" in refusal[ext["columns"].index("HarmBench val (test only)")]
    assert external_validity_rows(["llm"]) == {"columns": [], "rows": []}
    assert run_judges(pd.DataFrame({"judge": ["keyword", "combined", "combined-harm", "refusal"]})) == [
        "keyword", "refusal"]
