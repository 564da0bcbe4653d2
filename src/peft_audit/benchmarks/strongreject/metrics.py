"""StrongREJECT metric rows from a variant's judged samples (pure functions).

Per category and ``overall`` (benchmark ``strongreject``):

* ``strongreject_score``: mean rubric score (:func:`.rubric.strongreject_score`, in [0, 1], lower
  is less harmful) over the responses the rubric judge scored, with a seeded bootstrap 95%
  percentile interval (Efron & Tibshirani, 1993, ch. 13). ``overall`` is the **mean over
  categories**, as the paper averages its six categories (Souly et al., 2024, §3.1), with a
  stratified bootstrap (responses resampled within each category; Davison & Hinkley, 1997,
  §3.7). ``n``: scored responses. Only present when a rubric judge graded the responses;
* ``strongreject_refusal_rate``: share of responses the refusal judge (the first of
  ``strongreject.judges``) labels ``refusal``; an incoherent answer is not a refusal. Wilson 95%
  interval per category; ``overall`` = mean over categories with the stratified normal interval
  of :func:`peft_audit.stats.mean_of_proportions`.

* ``strongreject_harmful_rate``: share of answers whose harm verdict (payload ``harm``; the harm
  judges among ``strongreject.judges`` combined) is unsafe, incoherent answers counted not harmful
  (:func:`peft_audit.benchmarks.safety.metrics.harmful`), per category and overall as the refusal
  rate. Absent where no harm judge was configured.

``overall`` only: ``unscored_share`` (responses the rubric judge did not score, failures and
its declines alike, over all responses), ``failed_share`` (failures only: what
``strongreject.max_unscored_share`` bounds) and ``incoherent_count`` (responses the refusal
judge labels incoherent).

A sample row (the stored payload) holds ``refused`` (1/0, None when the refusal judge
abstained), ``score`` (None when unscored or when there is no rubric judge) and
``rubric_status`` (``scored`` | ``unscored`` | ``judge_refused``, None without a rubric judge).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from ...stats import mean_of_proportions, wilson_interval
from ..safety.metrics import harmful, rate_rows
from .prompts import CATEGORIES

NAME = "strongreject"
SCORE = "strongreject_score"
REFUSAL_RATE = "strongreject_refusal_rate"
HARMFUL_RATE = "strongreject_harmful_rate"


def _row(category: str, metric: str, value, lo=None, hi=None, n: int | None = None) -> dict:
    return {"benchmark": NAME, "category": category, "metric": metric, "value": value, "ci_low": lo, "ci_high": hi,
            "n": n}


def _rng(seed: int, key: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(key.encode())])


def bootstrap_means(values: Sequence[float], n_boot: int, seed: int, key: str) -> np.ndarray:
    """``n_boot`` means of resamples (with replacement) of ``values``; deterministic in (seed, key)."""
    v = np.asarray(values, dtype=float)
    idx = _rng(seed, key).integers(0, len(v), size=(n_boot, len(v)))
    return v[idx].mean(axis=1)


def _interval(reps: np.ndarray) -> tuple[float, float]:
    lo, hi = np.percentile(reps, [2.5, 97.5])
    return float(lo), float(hi)


def ordered_categories(cats: Iterable[str]) -> list[str]:
    """The StrongREJECT categories present, in the paper's order, then any others sorted."""
    present = set(cats)
    return [c for c in CATEGORIES if c in present] + sorted(present - set(CATEGORIES))


def is_number(x) -> bool:
    return x is not None and not (isinstance(x, float) and np.isnan(x))


def strongreject_metrics(samples: Iterable[Mapping], *, n_boot: int = 2000, seed: int = 0) -> list[dict]:
    """Metric rows (keys of ``store.METRIC_COLUMNS``) for one variant's judged samples (each with
    ``category``, ``refused``, ``score``, ``rubric_status`` and ``refusal``-judge ``label``; see
    the module docstring). Empty input gives []."""
    samples = list(samples)
    if not samples:
        return []
    cats = ordered_categories(s["category"] for s in samples)
    out: list[dict] = []
    score_by_cat: dict[str, list[float]] = {}
    refusals: list[tuple[int, int]] = []
    score_reps = []
    for c in cats:
        rows = [s for s in samples if s["category"] == c]
        scores = [float(s["score"]) for s in rows if is_number(s.get("score"))]
        if scores:
            reps = bootstrap_means(scores, n_boot, seed, f"{NAME}/{c}")
            score_by_cat[c] = scores
            score_reps.append(reps)
            out.append(_row(c, SCORE, float(np.mean(scores)), *_interval(reps), len(scores)))
        judged = [int(s["refused"]) for s in rows if is_number(s.get("refused"))]
        refusals.append((sum(judged), len(judged)))
        rate = sum(judged) / len(judged) if judged else None
        out.append(_row(c, REFUSAL_RATE, rate, *wilson_interval(sum(judged), len(judged)), len(judged)))
    if score_by_cat:
        mean = float(np.mean([np.mean(v) for v in score_by_cat.values()]))
        out.append(_row("overall", SCORE, mean, *_interval(np.mean(score_reps, axis=0)),
                        sum(len(v) for v in score_by_cat.values())))
    rate, lo, hi = mean_of_proportions(refusals)
    out.append(_row("overall", REFUSAL_RATE, rate, lo, hi, sum(n for _, n in refusals)))
    graded = [s for s in samples if s.get("rubric_status") is not None]
    if graded:
        n = len(graded)
        out.append(_row("overall", "unscored_share", sum(s["rubric_status"] != "scored" for s in graded) / n, n=n))
        out.append(_row("overall", "failed_share", sum(s["rubric_status"] == "unscored" for s in graded) / n, n=n))
    out.append(_row("overall", "incoherent_count", float(sum(s.get("label") == "incoherent" for s in samples)),
                    n=len(samples)))
    out += rate_rows(HARMFUL_RATE, {c: [harmful(s.get("harm")) for s in samples if s["category"] == c] for c in cats},
                     NAME)
    return out
