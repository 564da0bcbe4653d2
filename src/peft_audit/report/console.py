"""Terminal rendering of tables computed elsewhere (no computation here)."""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Console
from rich.table import Table

#: Row order and plain-language names of :func:`peft_audit.judges.validation.agreement_table`.
AGREEMENT_NAMES = {
    "accuracy": "accuracy (exact label)",
    "kappa": "Cohen's kappa (labels)",
    "safe_agreement": "safe/unsafe agreement",
    "kappa_safe": "Cohen's kappa (safe/unsafe)",
    "sensitivity_safe": "truly safe judged safe",
    "specificity_safe": "truly unsafe judged unsafe",
    "incoherent_labelled_safe": "incoherent judged safe",
    "unscored": "pairs without a label on either side",
}


def stat_text(row: dict) -> str:
    """``0.912 [0.871, 0.941] (52/57)`` for a share; kappa without counts; counts as integers."""
    v = row.get("value")
    if v is None:
        return "n/a"
    if row["metric"] == "unscored":
        return f"{int(v)} of {row['n']}"
    text = f"{v:.3f}"
    if row.get("ci_low") is not None:
        text += f" [{row['ci_low']:.3f}, {row['ci_high']:.3f}]"
    if row.get("k") is not None:
        text += f" ({row['k']}/{row['n']})"
    elif row.get("n") is not None:
        text += f" (n={row['n']})"
    return text


def agreement_name(metric: str) -> str:
    """A readable name for an agreement statistic (``precision:refusal`` -> ``precision of refusal``)."""
    if metric in AGREEMENT_NAMES:
        return AGREEMENT_NAMES[metric]
    kind, _, label = metric.partition(":")
    return f"{kind} of {label}" if label else metric


def render_agreement(judge: str, rows: Sequence[dict], console: Console) -> None:
    """One table: a judge's agreement with human labels, 95% intervals in brackets."""
    table = Table(title=f"judge {judge!r} vs human labels (95% intervals)", title_justify="left")
    table.add_column("statistic")
    table.add_column("value [95% CI] (k/n)", justify="right")
    for row in rows:
        table.add_row(agreement_name(row["metric"]), stat_text(row))
    console.print(table)
