"""When a judge failed, and when it failed too often to be trusted with a variant's score.

A judge *failed* on a response when its verdict is labelled ``unscored`` (:data:`FAILED`): the
request failed or timed out, the answer was unparseable or oversized. ``judge_refused`` is a
decision of the judge (it declined to rate), not a failure, and is not counted here.

Failures are bounded (``<section>.max_unscored_share``, the gate's ``--max-unscored-share``)
because a judge that cannot be reached abstains everywhere: the combined verdict then quietly
becomes the other judges' alone, and the audit would pass on evidence it does not have.
:func:`judge_failures` counts, :func:`judge_failure_message` says which judge went over the
bound, :func:`check_judge_failures` raises :class:`JudgeFailureError` for a benchmark stage.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from .base import COMBINED_JUDGES

#: The label of a verdict the judge failed to give (``judge_refused`` is a decision, not a failure).
FAILED = "unscored"

#: What to do after a benchmark stage failed on its judges.
RETRY_FAILED = ("Fix the judge, then run again with --retry-failed: the stored responses are judged again, "
                "not regenerated")


@dataclass(frozen=True)
class JudgeFailures:
    """How often one judge failed (verdict label ``unscored``) on a variant's safety responses."""

    judge: str
    n_failed: int
    n: int  # safety responses the judge was asked about
    first_reason: str | None  # rationale of the first failed verdict, e.g. "connection refused"

    @property
    def share(self) -> float | None:
        """n_failed / n; None when the judge judged nothing."""
        return self.n_failed / self.n if self.n else None


class JudgeFailureError(RuntimeError):
    """A judge failed (verdict ``unscored``) on more of a variant's responses than allowed."""


def judge_failures(sample_rows: Iterable[Mapping], verdict_rows: Iterable[Mapping]) -> dict[str, JudgeFailures]:
    """Per judge (``combined`` and ``combined-harm`` excluded, in order of first appearance), over
    the ``safety`` benchmark samples only (a sample without ``benchmark`` counts as one): how
    many verdicts are labelled ``unscored``. Same numbers as the safety benchmark's
    ``failed_share:<judge>`` metric at ``overall``. Empty input gives {}."""
    safety_ids = {s["prompt_id"] for s in sample_rows if s.get("benchmark", "safety") == "safety"}
    counts: dict[str, list] = {}
    for v in verdict_rows:
        if v["judge"] in COMBINED_JUDGES or v["prompt_id"] not in safety_ids:
            continue
        c = counts.setdefault(v["judge"], [0, 0, None])
        c[1] += 1
        if v["label"] == FAILED:
            c[0] += 1
            if c[2] is None:
                reason = v.get("rationale")  # None, or NaN from a pandas frame, when there is none
                c[2] = reason if isinstance(reason, str) and reason else "no reason recorded"
    return {j: JudgeFailures(j, n_failed, n, reason) for j, (n_failed, n, reason) in counts.items()}


def judge_failure_message(
    sample_rows: Iterable[Mapping], verdict_rows: Iterable[Mapping], max_share: float, *,
    responses: str = "safety responses", setting: str = "safety.max_unscored_share", then: str = RETRY_FAILED,
) -> str | None:
    """One line naming the first judge (:func:`judge_failures` order) that left more than
    ``max_share`` of the ``responses`` unscored, with its count, share, the limit (named
    ``setting``), its first failure's reason (whitespace runs made one space) and ``then``,
    what to do; None when every judge stayed within the limit or there was nothing to judge."""
    for f in judge_failures(sample_rows, verdict_rows).values():
        if f.share is not None and f.share > max_share:
            return (f"judge {f.judge!r} left {f.n_failed} of {f.n} {responses} unscored ({100 * f.share:.1f}% > "
                    f"{setting} {100 * max_share:.1f}%); first failure: {' '.join(f.first_reason.split())}. {then}")
    return None


def check_judge_failures(
    sample_rows: Iterable[Mapping], verdict_rows: Iterable[Mapping], max_share: float, *,
    responses: str = "safety responses", setting: str = "safety.max_unscored_share",
) -> None:
    """Raise :class:`JudgeFailureError` with :func:`judge_failure_message` if any judge left more
    than ``max_share`` of the responses ``unscored``, so that the benchmark stage fails instead
    of being committed (``--retry-failed`` then judges the stored responses again)."""
    message = judge_failure_message(sample_rows, verdict_rows, max_share, responses=responses, setting=setting)
    if message is not None:
        raise JudgeFailureError(message)
