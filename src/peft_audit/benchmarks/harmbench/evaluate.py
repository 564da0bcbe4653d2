"""The model and judge work of HarmBench, one function per stage (rows in ``samples`` form).

1. :func:`generate_samples` -- greedy answers to each behaviour's direct request
   (the variant's backend, :meth:`~peft_audit.models.backends.base.LanguageModel.generate`);
2. :func:`judge_samples` -- every judge's verdict and the combined one, added to each sample's
   payload, then :func:`peft_audit.judges.failures.check_judge_failures` over :func:`judged_rows`:
   a judge that failed on more than ``harmbench.max_unscored_share`` of the responses fails the
   stage instead of being committed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

from ...judges.base import COMBINED, COMBINED_HARM, Judge
from ...models.backends.base import LanguageModel
from ..safety.evaluate import judge_responses
from .behaviors import Behavior
from .config import HarmBenchConfig
from .metrics import BENCHMARK, INCOHERENT, attacked

#: Keys of a stored sample that are not its generated payload (a re-judged sample drops its old verdicts).
_NOT_PAYLOAD = frozenset({"sample_id", "category", "judges", COMBINED, "attacked", "incoherent", "refused", "harm"})


def sample_row(sample_id: str, category: str, payload: dict) -> dict:
    """A row of the store's generic ``samples`` table for this benchmark."""
    return {"benchmark": BENCHMARK, "sample_id": sample_id, "category": category, "payload": payload}


def flat(row: Mapping) -> dict:
    """A ``samples`` row as :meth:`VariantRun.stored_samples` returns it: ``sample_id``,
    ``category`` and the payload's keys."""
    return {"sample_id": row["sample_id"], "category": row["category"], **row["payload"]}


def generate_samples(lm: LanguageModel, behaviors: Sequence[Behavior], *, cfg: HarmBenchConfig,
                     progress: Callable[[int], None] | None = None) -> list[dict]:
    """One ``samples`` row per behaviour (in order) with the prompt sent and the answer."""
    gens = lm.generate([b.prompt for b in behaviors], system_prompt=cfg.system_prompt,
                       max_new_tokens=cfg.max_new_tokens, batch_size=cfg.batch_size, progress=progress)
    return [
        sample_row(b.behavior_id, b.semantic_category, {
            "functional_category": b.functional_category, "behavior": b.behavior, "context": b.context,
            "prompt": b.prompt, "response": g.text, "n_new_tokens": g.n_new_tokens})
        for b, g in zip(behaviors, gens)
    ]


def judge_samples(samples: Sequence[Mapping], judges: Sequence[Judge], *, rule: str,
                  progress: Callable[[int], None] | None = None) -> list[dict]:
    """``samples`` (as :meth:`VariantRun.stored_samples` gives them) as ``samples`` rows whose
    payload adds ``judges`` ({judge: {label, score, rationale}}), ``combined`` (the label of
    :func:`peft_audit.judges.combine.combine` under ``rule``), ``refused`` (the refusal verdict,
    1/0/None) and ``harm`` (the harm verdict's label, None without a harm judge; see
    :func:`peft_audit.judges.combine.two_verdicts`), ``attacked`` (1, 0 or None;
    :func:`.metrics.attacked`) and ``incoherent`` (1 or 0). Each judge sees the prompt the model
    was sent (context included) and its answer; judging is the safety benchmark's
    (:func:`peft_audit.benchmarks.safety.evaluate.judge_responses`)."""
    asked = [{"prompt_id": s["sample_id"], "prompt": s["prompt"], "response": s["response"]} for s in samples]
    verdicts: dict[str, dict[str, Mapping]] = {}
    for v in judge_responses(asked, judges, rule=rule, progress=progress):
        verdicts.setdefault(v["prompt_id"], {})[v["judge"]] = v
    out = []
    for s in samples:
        by_judge = dict(verdicts[s["sample_id"]])
        combined = by_judge.pop(COMBINED)
        harm = by_judge.pop(COMBINED_HARM, None)
        label = combined["label"]
        success = attacked(label)
        payload = {k: v for k, v in s.items() if k not in _NOT_PAYLOAD}
        payload.update(
            judges={j: {"label": v["label"], "score": v["score"], "rationale": v["rationale"]} for j, v in by_judge.items()},
            combined=label, attacked=None if math.isnan(success) else int(success), incoherent=int(label == INCOHERENT),
            refused=combined["refused"], harm=None if harm is None else harm["label"])
        out.append(sample_row(s["sample_id"], s["category"], payload))
    return out


def judged_rows(samples: Sequence[Mapping]) -> tuple[list[dict], list[dict]]:
    """Judged samples (payload flattened, as :func:`flat` gives them) as the safety benchmark's
    (sample rows, verdict rows), one verdict row per judge per sample, which
    :func:`peft_audit.judges.failures.check_judge_failures` counts failures in."""
    asked = [{"prompt_id": s["sample_id"]} for s in samples]
    verdicts = [{"prompt_id": s["sample_id"], "judge": j, **v} for s in samples for j, v in s["judges"].items()]
    return asked, verdicts
