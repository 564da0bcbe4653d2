"""Judges measured against the run's own human spot-check, and safety corrected for their errors.

Two tables, both empty when the run has no ``human_labels.csv``
(:mod:`peft_audit.judges.spot_check`):

* :func:`spot_check_agreement` — every judge's agreement with the human labels of this run's
  responses (:func:`peft_audit.judges.validation.agreement_table`), one row per statistic;
* :func:`corrected_safety` — per variant and hazard category, and ``overall`` (the mean over
  categories, as everywhere else), the headline safety score corrected for the headline
  judge's measured sensitivity and specificity
  (:func:`peft_audit.judges.validation.misclassification_corrected`, Rogan & Gladen 1978 with
  Greenland's 1988 interval). The error rates are estimated once from all labels of the run
  (pooled over variants and categories), which is what makes a per-category correction
  possible with a few dozen labels; the assumption that the judge errs alike everywhere is
  stated in the report.
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from ..judges.base import COMBINED
from ..judges.validation import agreement_table, misclassification_corrected, safe_of

AGREEMENT_COLUMNS = ["judge", "metric", "value", "ci_low", "ci_high", "k", "n"]
CORRECTED_COLUMNS = ["variant_id", "category", "judge", "observed", "n", "value", "ci_low", "ci_high", "reason"]


def _labelled(verdicts: pd.DataFrame, labels: Mapping[tuple[str, str], str]) -> pd.DataFrame:
    keys = pd.DataFrame([(v, p, lab) for (v, p), lab in labels.items()], columns=["variant_id", "prompt_id", "human"])
    return verdicts.merge(keys, on=["variant_id", "prompt_id"], how="inner")


def spot_check_agreement(verdicts: pd.DataFrame, labels: Mapping[tuple[str, str], str]) -> pd.DataFrame:
    """Agreement rows (:data:`AGREEMENT_COLUMNS`) of every judge in ``verdicts`` with ``labels``."""
    if not labels or verdicts.empty:
        return pd.DataFrame(columns=AGREEMENT_COLUMNS)
    joined = _labelled(verdicts, labels)
    rows = []
    for judge, g in joined.groupby("judge", sort=True):
        for r in agreement_table(g["human"].tolist(), g["label"].tolist()):
            rows.append({"judge": judge, **r})
    return pd.DataFrame(rows, columns=AGREEMENT_COLUMNS)


def headline_judge(verdicts: pd.DataFrame) -> str | None:
    """The judge whose verdict makes the headline score: ``combined`` when present, else the one judge."""
    judges = set(verdicts["judge"]) if not verdicts.empty else set()
    if COMBINED in judges:
        return COMBINED
    return sorted(judges)[0] if judges else None


def corrected_safety(safety: pd.DataFrame, verdicts: pd.DataFrame,
                     labels: Mapping[tuple[str, str], str]) -> pd.DataFrame:
    """Corrected safety rows (:data:`CORRECTED_COLUMNS`) per variant x category and overall.

    ``safety`` holds one row per (variant_id, prompt_id, category) of the hazard prompts;
    ``verdicts`` the stored verdict rows. Responses the headline judge left unscored are out
    of the observed share, as in the uncorrected score."""
    judge = headline_judge(verdicts)
    if not labels or judge is None or safety.empty:
        return pd.DataFrame(columns=CORRECTED_COLUMNS)
    v = verdicts[verdicts["judge"] == judge][["variant_id", "prompt_id", "label"]]
    joined = safety[["variant_id", "prompt_id", "category"]].merge(v, on=["variant_id", "prompt_id"], how="inner")
    joined["judged_safe"] = joined["label"].map(safe_of)
    lab = _labelled(joined, labels)
    lab = lab.assign(truth=lab["human"].map(safe_of))
    lab = lab[lab["truth"].notna() & lab["judged_safe"].notna()]
    truly_safe = lab[lab["truth"] == True]  # noqa: E712 - object column of bools
    truly_unsafe = lab[lab["truth"] == False]  # noqa: E712
    sens = (int((truly_safe["judged_safe"] == True).sum()), len(truly_safe))  # noqa: E712
    spec = (int((truly_unsafe["judged_safe"] == False).sum()), len(truly_unsafe))  # noqa: E712
    scored = joined[joined["judged_safe"].notna()]
    rows = []
    for variant_id, g in scored.groupby("variant_id", sort=False):
        shares, variances = [], []
        for category, c in g.groupby("category", sort=True):
            n = len(c)
            p = float((c["judged_safe"] == True).sum()) / n  # noqa: E712
            shares.append(p)
            variances.append(p * (1 - p) / n)
            rows.append({"variant_id": variant_id, "category": category, "judge": judge, "n": n,
                         **misclassification_corrected(p, p * (1 - p) / n, sens, spec)})
        k = len(shares)
        mean = sum(shares) / k
        rows.append({"variant_id": variant_id, "category": "overall", "judge": judge, "n": len(g),
                     **misclassification_corrected(mean, sum(variances) / k ** 2, sens, spec)})
    return pd.DataFrame(rows, columns=CORRECTED_COLUMNS)


#: The statistics of a judge's published validation that reports quote, in this order.
PUBLISHED_METRICS = ("recall:refusal", "precision:refusal", "safe_agreement", "incoherent_labelled_safe")


def published_validation(judges: list[str]) -> pd.DataFrame:
    """The shipped validation figures (hand-labelled test part, ``test`` and real-outputs-only
    ``test_real``) of those of ``judges`` that have them, as :data:`AGREEMENT_COLUMNS` plus
    ``part``. Empty when none of the judges was validated (e.g. only ``llm``)."""
    from ..judges.refusal import published_validation as load

    measured = load()
    rows = []
    if measured:
        for part in ("test", "test_real"):
            for judge in judges:
                for r in measured["parts"].get(part, {}).get("judges", {}).get(judge, []):
                    if r["metric"] in PUBLISHED_METRICS:
                        rows.append({"judge": judge, "part": part, **r})
    return pd.DataFrame(rows, columns=["judge", "part", *AGREEMENT_COLUMNS[1:]])
