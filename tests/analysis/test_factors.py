"""Factor regression and variance decomposition recover planted effects."""

import itertools

import numpy as np
import pandas as pd
import pytest

from peft_audit.analysis.factors import factor_analysis, fit_factor_model, spread_by_base

METHOD = {"lora": 0.0, "ia3": 0.01, "prompt-tuning": -0.15, "p-tuning": -0.10}
BASE = {"llama": 0.0, "qwen": 0.02, "gemma": -0.06}
LR_SLOPE = -0.03  # per tenfold learning rate
DPO = 0.02


def planted_table(seed=0, noise=0.01) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for m, b, lr, ep, algo in itertools.product(METHOD, BASE, (1e-4, 1e-3, 1e-2), (1, 2), ("sft", "dpo")):
        y = METHOD[m] + BASE[b] + LR_SLOPE * np.log10(lr / 1e-4) + DPO * (algo == "dpo") + rng.normal(0, noise)
        rows.append({"method": m, "family": "prompt-based" if "tuning" in m else "adapter", "base_model": b,
                     "lr": lr, "log10_lr": np.log10(lr), "epochs": ep, "algo": algo, "safety_overall": y})
    return pd.DataFrame(rows)


def test_regression_recovers_planted_effects():
    r = fit_factor_model(planted_table(), "safety_overall")
    assert r["status"] == "ok" and r["n"] == 144
    e = r["effects"].set_index("term")
    truth = {
        "method: prompt-tuning vs lora": -0.15, "method: p-tuning vs lora": -0.10, "method: ia3 vs lora": 0.01,
        # equal counts: the reference base is the alphabetically first, gemma
        "base_model: llama vs gemma": 0.06, "base_model: qwen vs gemma": 0.08,
        "log10 lr (per 10x)": LR_SLOPE, "epochs: 2 vs 1": 0.0,
    }
    for term, value in truth.items():
        assert e.loc[term, "ci_low"] <= value <= e.loc[term, "ci_high"], term
        assert e.loc[term, "estimate"] == pytest.approx(value, abs=0.01), term
    algo = e[e["factor"] == "algo"].iloc[0]
    assert algo["estimate"] == pytest.approx(DPO if algo["level"] == "dpo" else -DPO, abs=0.01)
    shares = r["anova"].set_index("factor")["share"]
    assert shares.drop("Residual").idxmax() == "method"
    assert shares["epochs"] < 0.01


def test_family_model_is_fitted_separately():
    r = fit_factor_model(planted_table(), "safety_overall", model="family")
    e = r["effects"].set_index("term")
    # prompt-based mean (-0.125) minus adapter mean (+0.005)
    assert e.loc["family: prompt-based vs adapter", "estimate"] == pytest.approx(-0.13, abs=0.01)
    assert "method" not in set(r["effects"]["factor"])


def test_too_few_variants_gives_a_clear_status_not_a_crash():
    t = planted_table().groupby("method").head(1).head(3)
    r = fit_factor_model(t, "safety_overall")
    assert r["status"] == "not_enough_variants"
    assert any("not enough variants" in n or "single level" in n for n in r["notes"])
    fa = factor_analysis(t.iloc[:1], ["safety_overall"])
    assert set(fa["fits"]["status"]) == {"not_enough_variants"}


def test_single_level_and_confounded_factors_are_dropped_with_a_note():
    t = planted_table()
    t = t[t["algo"] == "sft"].copy()
    t["epochs"] = np.where(t["base_model"] == "gemma", 2, 1)  # epochs now confounded? no: a 0/1 of base
    r = fit_factor_model(t, "safety_overall")
    notes = " ".join(r["notes"])
    assert "algo has a single level" in notes
    assert "epochs is confounded" in notes
    assert "epochs" not in set(r["effects"]["factor"])


def test_spread_by_base_interval_contains_sd():
    t = planted_table(noise=0.05)
    s = spread_by_base(t).set_index("base_model")
    assert (s["sd_ci_low"] < s["sd"]).all() and (s["sd"] < s["sd_ci_high"]).all()
    assert s.loc["gemma", "mean"] < s.loc["qwen", "mean"]


def test_epochs_is_categorical_not_a_slope():
    # Planted: 2 epochs lowers safety by 0.05, 3 epochs by 0.01 (not linear in epochs).
    effect = {1: 0.0, 2: -0.05, 3: -0.01}
    rng = np.random.default_rng(4)
    rows = [{"method": m, "base_model": "llama", "lr": 1e-4, "log10_lr": -4.0, "epochs": ep, "algo": "sft",
             "family": "adapter", "safety_overall": METHOD[m] + effect[ep] + rng.normal(0, 0.003)}
            for m in METHOD for ep in effect for _ in range(3)]
    r = fit_factor_model(pd.DataFrame(rows), "safety_overall")
    e = r["effects"].set_index("term")
    assert e.loc["epochs: 2 vs 1", "estimate"] == pytest.approx(-0.05, abs=0.01)
    assert e.loc["epochs: 3 vs 1", "estimate"] == pytest.approx(-0.01, abs=0.01)
    assert (r["effects"]["factor"] == "epochs").sum() == 2
    assert r["anova"].set_index("factor").loc["epochs", "df"] == 2
