"""The Mitigations section of the reports: each repair of a variant (``peft-audit mitigate``)
against its original and its base, formatted from :func:`peft_audit.analysis.mitigations.mitigation_table`
(no computation here), with each repair's gate result."""

from __future__ import annotations

import math

import pandas as pd

from .tables import num

#: Row titles of the section's metrics; rates and BBQ scores are shown in points, the held-out
#: loss (nats per token) as it is.
TITLES = {
    ("over_refusal", "refusal_rate"): "over-refusal rate (benign prompts)",
    "harmful_rate": "harmful-response rate", "refusal_rate": "refusal rate (harmful prompts)",
    "safety_score": "safety score", "abs_bias_ambig": "absolute BBQ bias, ambiguous", "abs_bias_disambig":
    "absolute BBQ bias, disambiguated", "heldout_loss": "utility: held-out loss",
}
NOT_MEASURED = "not measured"


def _finite(x) -> bool:
    return x is not None and isinstance(x, (int, float)) and math.isfinite(x)


def _change(delta, lo, hi, p_adj, points: bool) -> str:
    if not _finite(delta):
        return NOT_MEASURED
    scale, fmt = (100.0, "{:+.1f}") if points else (1.0, "{:+.3f}")
    star = "*" if _finite(p_adj) and p_adj < 0.05 else ""
    f = (lambda x: num(x, signed=True)) if points else (lambda x: num(x, scale, fmt))
    return f"{f(delta)}{star} [{f(lo)}, {f(hi)}]" if _finite(lo) else f"{f(delta)}{star}"


def _share(r: dict) -> str:
    if not r["lost"]:
        return "—"
    if not _finite(r["recovered_share"]):
        return "n/a"
    f = lambda x: f"{100 * x:.0f}%"  # noqa: E731
    return f"{f(r['recovered_share'])} [{f(r['recovered_ci_low'])}, {f(r['recovered_ci_high'])}]"


def mitigation_groups(variants: pd.DataFrame, table: pd.DataFrame, gate=None) -> list[dict]:
    """Per original variant: ``{'original', 'original_id', 'repairs': [{'label', 'id', 'how', 'gate',
    'rows': [{'metric', 'value', 'vs_original', 'vs_base', 'recovered'}]}]}``; [] without repairs.
    Changes are 'Δ* [CI]' (points for rates and BBQ scores; `*`: adjusted p < 0.05); ``recovered``
    is the share of the original's significant loss won back, '—' where it lost nothing there."""
    if table is None or table.empty:
        return []
    by_id = variants.set_index("id")
    groups: dict[str, dict] = {}
    for vid, rows in table.groupby("variant_id", sort=False):
        original = rows["original_id"].iloc[0]
        g = groups.setdefault(original, {"original": by_id.at[original, "label"], "original_id": original,
                                         "repairs": []})
        checks = [c for c in gate.checks if c.variant_id == vid] if gate is not None else []
        failed = [c for c in checks if not c.passed]
        verdict = "not checked" if not checks else ("pass" if not failed else f"FAIL ({len(failed)})")
        out = []
        for r in rows.to_dict("records"):
            points = r["metric"] != "heldout_loss"
            if not _finite(r["value"]):
                value = NOT_MEASURED
            elif not points:
                value = num(r["value"], 1.0, "{:.3f}")
            else:  # rates in %, BBQ bias scores in points
                value = num(r["value"]) + (" pts" if r["benchmark"] == "fairness" else "%")
            title = TITLES.get((r["benchmark"], r["metric"])) or TITLES.get(r["metric"], r["metric"])
            out.append({"metric": title, "value": value,
                        "vs_original": _change(r["delta_vs_original"], r["ci_low_vs_original"], r["ci_high_vs_original"],
                                               r["p_adj_vs_original"], points),
                        "vs_base": _change(r["delta_vs_base"], r["ci_low_vs_base"], r["ci_high_vs_base"],
                                           r["p_adj_vs_base"], points),
                        "recovered": _share(r)})
        g["repairs"].append({"label": by_id.at[vid, "label"], "id": vid, "how": by_id.at[vid, "repair"],
                             "gate": verdict, "gate_title": "; ".join(c.text() for c in failed[:5]), "rows": out})
    return list(groups.values())


INTRO = ("Each repair made by `peft-audit mitigate` against the variant it repairs (its original) and against the "
         "base model, on the same prompts and items: change in points [95% paired bootstrap CI], `*` = significant "
         "after adjustment across the repairs (vs original) or the variants (vs base). Recovered: the share of the "
         "original's significant loss vs the base won back on that rate, (repair − original) / (base − original) "
         "[95% paired bootstrap CI over the prompts all three answered]; above 100%: past the base (check the "
         "over-refusal row). Gate: `peft-audit gate` under its default "
         "thresholds.")
