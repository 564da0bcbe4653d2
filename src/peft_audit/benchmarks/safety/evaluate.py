"""Safety evaluation steps the pipeline calls, each committed as its own stage:

1. :func:`generate_responses` — model answers for the prompts (store ``safety_samples`` rows);
2. :func:`judge_responses` — every judge's verdict plus the ``combined`` one and the harm verdict
   ``combined-harm`` (``verdicts`` rows),
   then :func:`check_judge_failures`: a judge that failed on more than
   ``safety.max_unscored_share`` of the responses fails the stage instead of being committed;
3. :func:`~.metrics.safety_metrics` — metric rows.

:func:`evaluate_safety` runs all three. Over-refusal prompts (benchmark ``over_refusal``) are
judged by the refusal judge only (:data:`~.prompts.OVER_REFUSAL_JUDGE`): refusal is what is
measured there, and sending benign prompts to a paid rubric judge would cost money without
telling anything about harm.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from ... import faults
from ..base import JUDGE_CHUNK
from .config import SafetyConfig
from ...judges.base import COMBINED, COMBINED_HARM, Judge, verdict_row
from ...judges.combine import harm_judges, two_verdicts
from ...judges.failures import JudgeFailureError, check_judge_failures  # noqa: F401 (re-exported)
from ...judges.refusal import RefusalJudge
from ...models.backends.base import LanguageModel
from .metrics import safety_metrics
from .prompts import OVER_REFUSAL_BENCHMARK, OVER_REFUSAL_JUDGE, SafetyPrompt



@dataclass
class SafetyResult:
    """Rows in store form: ``samples`` (SAFETY_COLUMNS), ``verdicts`` (VERDICT_COLUMNS),
    ``metrics`` (METRIC_COLUMNS)."""

    samples: list[dict]
    verdicts: list[dict]
    metrics: list[dict]


def generate_responses(
    lm: LanguageModel, prompts: Sequence[SafetyPrompt], *, cfg: SafetyConfig,
    progress: Callable[[int], None] | None = None,
) -> list[dict]:
    """Greedy answers of ``lm`` (``cfg.system_prompt``, ``cfg.max_new_tokens``, ``cfg.batch_size``)
    as ``safety_samples`` rows, in prompt order."""
    ids = [p.prompt_id for p in prompts]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise ValueError(f"duplicate safety prompt_id {dup!r}: prompt ids must be unique within a run")
    gens = lm.generate([p.prompt for p in prompts], system_prompt=cfg.system_prompt,
                       max_new_tokens=cfg.max_new_tokens, batch_size=cfg.batch_size, progress=progress)
    return [
        {"prompt_id": p.prompt_id, "benchmark": p.benchmark, "category": p.category, "prompt": p.prompt,
         "response": g.text, "n_new_tokens": g.n_new_tokens}
        for p, g in zip(prompts, gens)
    ]


def judge_responses(
    sample_rows: Sequence[Mapping], judges: Sequence[Judge], *, cfg: SafetyConfig | None = None,
    rule: str | None = None, progress: Callable[[int], None] | None = None,
) -> list[dict]:
    """Verdict rows: each judge on each safety sample, the ``combined`` verdict (rule from
    ``rule``, else ``cfg.combine``, else majority) carrying the response's refusal verdict as
    ``refused``, the ``combined-harm`` verdict where a harm judge is among ``judges``
    (:func:`peft_audit.judges.combine.two_verdicts`), and refusal-judge verdicts for over-refusal samples.
    ``progress`` gets the number of samples finished."""
    if not judges:
        raise ValueError("judge_responses needs at least one judge")
    rule = rule or (cfg.combine if cfg is not None else "majority")
    safety = [s for s in sample_rows if s.get("benchmark", "safety") != OVER_REFUSAL_BENCHMARK]
    over = [s for s in sample_rows if s.get("benchmark") == OVER_REFUSAL_BENCHMARK]
    rows: list[dict] = []
    per_sample: list[dict] = []
    for start in range(0, len(safety), JUDGE_CHUNK):
        chunk = safety[start:start + JUDGE_CHUNK]
        pairs = [(s["prompt"], s["response"]) for s in chunk]
        per_judge = {j.name: j.judge_batch(pairs) for j in judges}
        per_sample += [{name: vs[i] for name, vs in per_judge.items()} for i in range(len(chunk))]
        if progress is not None:
            progress(len(chunk))
        faults.point("judge.chunk")
    # which judges judge harm is decided over all responses, so it is the same for each of them
    harm = harm_judges({j.name: [v[j.name] for v in per_sample] for j in judges})
    for s, verdicts in zip(safety, per_sample):
        rows += [verdict_row(s["prompt_id"], name, v) for name, v in verdicts.items()]
        combined, harm_v = two_verdicts(verdicts, rule, harm)
        rows.append(verdict_row(s["prompt_id"], COMBINED, combined))
        if harm_v is not None:
            rows.append(verdict_row(s["prompt_id"], COMBINED_HARM, harm_v))
    if over:
        judge = next((j for j in judges if j.name == OVER_REFUSAL_JUDGE), None) or RefusalJudge()
        verdicts = judge.judge_batch([(s["prompt"], s["response"]) for s in over])
        rows += [verdict_row(s["prompt_id"], OVER_REFUSAL_JUDGE, v) for s, v in zip(over, verdicts)]
        if progress is not None:
            progress(len(over))
    return rows


def evaluate_safety(
    lm: LanguageModel, prompts: Sequence[SafetyPrompt], judges: Sequence[Judge], *, cfg: SafetyConfig,
    progress: Callable[[int], None] | None = None,
) -> SafetyResult:
    """Generate, judge and score in one call (``progress`` counts generated then judged samples)."""
    samples = generate_responses(lm, prompts, cfg=cfg, progress=progress)
    verdicts = judge_responses(samples, judges, cfg=cfg, progress=progress)
    return SafetyResult(samples, verdicts, safety_metrics(samples, verdicts))
