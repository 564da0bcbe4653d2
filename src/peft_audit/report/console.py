"""Terminal rendering of tables computed elsewhere (no computation here)."""

from __future__ import annotations

import math

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


def _given(x) -> bool:
    return x is not None and not (isinstance(x, float) and math.isnan(x))


def stat_text(row: dict) -> str:
    """``0.912 [0.871, 0.941] (52/57)`` for a share; kappa without counts; n/a when undefined."""
    v, n = row.get("value"), row.get("n")
    n_text = f"{int(n)}" if _given(n) else "?"
    if not _given(v):
        return f"n/a (n={n_text})"
    if row["metric"] == "unscored":
        return f"{int(v)} of {n_text}"
    text = f"{v:.3f}"
    if _given(row.get("ci_low")):
        text += f" [{row['ci_low']:.3f}, {row['ci_high']:.3f}]"
    k = row.get("k")
    text += f" ({int(k)}/{n_text})" if _given(k) else f" (n={n_text})"
    return text


def agreement_name(metric: str) -> str:
    """A readable name for an agreement statistic (``precision:refusal`` -> ``precision of refusal``)."""
    if metric in AGREEMENT_NAMES:
        return AGREEMENT_NAMES[metric]
    kind, _, label = metric.partition(":")
    return f"{kind} of {label}" if label else metric


def render_agreement(judge: str, agreement: dict, console: Console) -> None:
    """One table: a judge's agreement with human labels
    (:func:`~peft_audit.judges.validation.verdict_agreement`), 95% intervals in brackets; the title
    says which verdict was compared and whether as a proxy."""
    kind = "refusal" if agreement["kind"] == "refusal" else "harm (safe/unsafe)"
    basis = {"direct": "", "refused": ", from its refusal verdict"}.get(agreement["basis"], f", {agreement['basis']}")
    title = f"judge {judge!r} vs human labels: {kind} verdicts{basis} (95% intervals)"
    if agreement["rows"] is None:
        console.print(f"{title}: {agreement['note']}")
        return
    table = Table(title=title, title_justify="left")
    table.add_column("statistic")
    table.add_column("value [95% CI] (k/n)", justify="right")
    for row in agreement["rows"]:
        table.add_row(agreement_name(row["metric"]), stat_text(row))
    console.print(table)
