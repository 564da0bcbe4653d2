"""Matplotlib (Agg) figures as base64 PNG data URIs, so the HTML report needs no network."""

from __future__ import annotations

import base64
import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

FAMILY_COLOURS = {"adapter": "#1f77b4", "prompt-based": "#d62728", "base": "#7f7f7f"}


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def forest(effects: pd.DataFrame, title: str, *, scale: float = 100.0, unit: str = "points") -> str | None:
    """Forest plot: one row per term, estimate with 95% CI (times ``scale``, in ``unit``), vertical line at 0."""
    if effects is None or effects.empty:
        return None
    e = effects.iloc[::-1]
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(e) + 1.2))
    y = np.arange(len(e))
    ax.errorbar(e["estimate"] * scale, y, xerr=[(e["estimate"] - e["ci_low"]) * scale, (e["ci_high"] - e["estimate"]) * scale],
                fmt="o", color="#333", ecolor="#888", capsize=3)
    ax.axvline(0, color="#c00", lw=0.8)
    ax.set_yticks(y, e["term"], fontsize=8)
    ax.set_xlabel(f"effect on change vs base ({unit}), 95% CI")
    ax.set_title(title, fontsize=10)
    return _png(fig)


#: the trade-off scatter's axes: tradeoff_table column -> (label, scale)
_AXES = {"safety_delta": ("overall safety change vs base (points)", 100.0),
         "fairness_delta": ("fairness change: fall in |BBQ ambiguous bias| (points)", 100.0),
         "utility_delta": ("held-out task loss change vs base (nats; lower = better at its task)", 1.0)}


def tradeoff_scatter(t: pd.DataFrame, *, scale: float = 100.0) -> str | None:
    """Safety delta vs fairness delta per variant, coloured by family, Pareto front joined."""
    if t is None or t.empty or t[["safety_delta", "fairness_delta"]].dropna().empty:
        return None
    fig, ax = plt.subplots(figsize=(6.5, 5))
    for fam, g in t.groupby("family"):
        ax.scatter(g["safety_delta"] * scale, g["fairness_delta"] * scale, s=22, alpha=0.75,
                   color=FAMILY_COLOURS.get(fam, "#555"), label=fam)
    front = t[t["pareto"]].sort_values("safety_delta")
    ax.plot(front["safety_delta"] * scale, front["fairness_delta"] * scale, "-o", color="#000", lw=1, ms=7,
            mfc="none", label="Pareto front")
    ax.axhline(0, color="#999", lw=0.6)
    ax.axvline(0, color="#999", lw=0.6)
    ax.set_xlabel(_AXES["safety_delta"][0])
    ax.set_ylabel(_AXES["fairness_delta"][0])
    ax.legend(fontsize=8)
    return _png(fig)


def utility_scatter(t: pd.DataFrame, x: str) -> str | None:
    """``x`` (``safety_delta`` or ``fairness_delta``) against the held-out task loss change, per
    variant, coloured by family: what a gain in safety or fairness costs in task quality. None
    when no variant has both."""
    if t is None or t.empty or x not in t or "utility_delta" not in t or t[[x, "utility_delta"]].dropna().empty:
        return None
    fig, ax = plt.subplots(figsize=(6.5, 5))
    (xlabel, xs), (ylabel, ys) = _AXES[x], _AXES["utility_delta"]
    for fam, g in t.groupby("family"):
        ax.scatter(g[x] * xs, g["utility_delta"] * ys, s=22, alpha=0.75, color=FAMILY_COLOURS.get(fam, "#555"), label=fam)
    ax.axhline(0, color="#999", lw=0.6)
    ax.axvline(0, color="#999", lw=0.6)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8)
    return _png(fig)


def base_distributions(table: pd.DataFrame, outcome: str = "safety_overall", *, scale: float = 100.0) -> str | None:
    """Box plot with points of an outcome per base model."""
    if table is None or table.empty or outcome not in table:
        return None
    groups = [(b, g[outcome].dropna().to_numpy() * scale) for b, g in table.groupby("base_model")]
    groups = [(b, x) for b, x in groups if len(x)]
    if not groups:
        return None
    fig, ax = plt.subplots(figsize=(max(5, 1.3 * len(groups) + 2), 4))
    ax.boxplot([x for _, x in groups], tick_labels=[b for b, _ in groups], showfliers=False)
    rng = np.random.default_rng(0)  # jitter only, for legibility
    for i, (_, x) in enumerate(groups, start=1):
        ax.scatter(i + rng.uniform(-0.15, 0.15, len(x)), x, s=10, alpha=0.6, color="#1f77b4")
    ax.axhline(0, color="#c00", lw=0.6)
    ax.set_ylabel("overall safety change vs base (points)")
    ax.tick_params(axis="x", rotation=20)
    return _png(fig)
