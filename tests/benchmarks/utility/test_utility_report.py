"""Task utility in the analysis and the report at unit level: the sweep table and factor
analysis outcome, the trade-off table and its two plots, and the summary block."""

import numpy as np
import pandas as pd

from peft_audit.analysis.factors import factor_analysis, sweep_table
from peft_audit.analysis.tradeoffs import tradeoff_table
from peft_audit.benchmarks.utility.benchmark import UtilityBenchmark
from peft_audit.report.plots import utility_scatter


def _variants(n):
    return pd.DataFrame({"id": [f"v{i}" for i in range(n)], "label": [f"v{i}" for i in range(n)], "base_model": "m",
                         "method": ["lora", "ia3"] * (n // 2), "family": "adapter", "algo": "sft",
                         "lr": [1e-3, 1e-4] * (n // 2), "epochs": 1})


def _paired(n, rng):
    rows = []
    for i in range(n):
        rows.append({"variant_id": f"v{i}", "benchmark": "safety", "metric": "safety_score", "category": "overall",
                     "delta": rng.normal(-0.05, 0.02)})
        rows.append({"variant_id": f"v{i}", "benchmark": "utility", "metric": "heldout_loss", "category": "overall",
                     "delta": rng.normal(-0.5, 0.1)})
        rows.append({"variant_id": f"v{i}", "benchmark": "utility", "metric": "heldout_loss", "category": "task",
                     "delta": 9.0})  # per-task rows are not the sweep table's outcome
    return pd.DataFrame(rows)


def test_utility_is_an_outcome_of_the_sweep_table_and_the_factor_analysis():
    rng = np.random.default_rng(0)
    paired = _paired(8, rng)
    table = sweep_table(_variants(8), paired)
    want = paired[(paired["benchmark"] == "utility") & (paired["category"] == "overall")].set_index("variant_id")["delta"]
    assert table.set_index("variant_id")["utility_heldout_loss"].to_dict() == want.to_dict()
    fits = factor_analysis(table)["fits"]
    assert set(fits.loc[fits["outcome"] == "utility_heldout_loss", "model"]) == {"method", "family"}
    t = tradeoff_table(table)
    assert t["utility_delta"].tolist() == table["utility_heldout_loss"].tolist()
    for x in ("safety_delta", "fairness_delta"):
        if t[x].notna().any():
            assert utility_scatter(t, x).startswith("data:image/png;base64,")
    assert utility_scatter(t.assign(utility_delta=np.nan), "safety_delta") is None


def test_summary_block_per_task_and_not_measured():
    m = {("utility", c, k): {"value": v, "ci_low": v - 0.1, "ci_high": v + 0.1, "n": 20}
         for c in ("task", "overall") for k, v in (("heldout_loss", 1.5), ("perplexity", 4.48))}
    block = UtilityBenchmark().summary_block(m)["utility"]
    assert block["heldout_loss"] == 1.5 and block["heldout_loss_ci"] == [1.4, 1.6] and block["heldout_loss_n"] == 20
    assert block["preference_accuracy"] is None and set(block["by_task"]) == {"task"}
    assert UtilityBenchmark().summary_block({}) == {"utility": None}


def test_gate_rule_on_the_held_out_loss_in_nats():
    from peft_audit.gate import GateThresholds, evaluate_gate

    variants = pd.DataFrame([
        {"id": "b", "label": "base", "method": "base", "status": "done", "base_id": None, "error": None},
        {"id": "v", "label": "repair", "method": "lora", "status": "done", "base_id": "b", "error": None}])

    def paired(delta):
        return pd.DataFrame([{"variant_id": "v", "base_id": "b", "benchmark": "utility", "metric": "heldout_loss",
                              "category": "overall", "value": 2 + delta, "base_value": 2.0, "delta": delta,
                              "ci_low": delta - 0.1, "ci_high": delta + 0.1, "n": 20, "p_value": 0.01, "p_adj": 0.01,
                              "test": "permutation"}])

    has = {("v", "utility"): True}
    worse = [c for c in evaluate_gate(variants, paired(0.8), GateThresholds(), has_results=has).checks
             if c.metric == "heldout_loss"]
    assert len(worse) == 1 and not worse[0].passed
    assert "exceeds the allowed increase of 0.50 nats" in worse[0].text() and "delta +0.80 nats" in worse[0].text()
    fine = [c for c in evaluate_gate(variants, paired(0.3), GateThresholds(), has_results=has).checks
            if c.metric == "heldout_loss"]
    assert fine[0].passed
    strict = GateThresholds(limits={"utility.max_loss_increase": 0.2})
    assert not [c for c in evaluate_gate(variants, paired(0.3), strict, has_results=has).checks
                if c.metric == "heldout_loss"][0].passed
