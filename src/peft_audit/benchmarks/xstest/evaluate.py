"""The model and judge work of XSTest, each step committed as its own stage by the benchmark:

1. :func:`generate_samples` — greedy answers to the prompts (``xstest.generated``);
2. :func:`judge_samples` — every listed judge's label and the XSTest class from the refusal
   judge's (``xstest.judged``; the same sample rows, their payload extended).

Rows are the store's generic samples: ``{benchmark, sample_id, category, payload}`` with
``sample_id`` the prompt's ``id`` and ``category`` its type.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from ...judges.base import Judge
from ...judges.combine import harm_judges, harm_verdict
from ...models.backends.base import LanguageModel
from ..base import JUDGE_CHUNK
from .classify import xstest_class
from .config import CLASS_JUDGE, NAME, XSTestConfig
from .sources import XSTestPrompt



def generate_samples(lm: LanguageModel, prompts: Sequence[XSTestPrompt], *, cfg: XSTestConfig,
                     progress: Callable[[int], None] | None = None) -> list[dict]:
    """Sample rows with the model's answer to each prompt (``cfg.system_prompt``,
    ``cfg.max_new_tokens``, ``cfg.batch_size``), in prompt order."""
    gens = lm.generate([p.prompt for p in prompts], system_prompt=cfg.system_prompt,
                       max_new_tokens=cfg.max_new_tokens, batch_size=cfg.batch_size, progress=progress)
    return [
        {"benchmark": NAME, "sample_id": p.id, "category": p.type,
         "payload": {"prompt": p.prompt, "label": p.label, "focus": p.focus, "note": p.note,
                     "response": g.text, "n_new_tokens": g.n_new_tokens}}
        for p, g in zip(prompts, gens)
    ]


def judge_samples(samples: Sequence[Mapping], judges: Sequence[Judge], *,
                  progress: Callable[[int], None] | None = None) -> list[dict]:
    """The sample rows again, each payload extended with ``<judge>_label`` per judge,
    ``refusal_rationale``, ``xstest_class`` (:func:`.classify.xstest_class`) and, where a harm
    judge is among ``judges``, ``harm``: the harm verdict's label
    (:func:`peft_audit.judges.combine.harm_verdict`). ``samples``
    are :meth:`~peft_audit.benchmarks.base.VariantRun.stored_samples` rows."""
    by_name = {j.name: j for j in judges}
    if CLASS_JUDGE not in by_name:
        raise ValueError(f"xstest needs the '{CLASS_JUDGE}' judge; got {', '.join(by_name) or 'none'}")
    verdicts: dict[str, list] = {name: [] for name in by_name}
    for start in range(0, len(samples), JUDGE_CHUNK):
        chunk = samples[start:start + JUDGE_CHUNK]
        pairs = [(s["prompt"], s["response"]) for s in chunk]
        for name, j in by_name.items():
            verdicts[name] += j.judge_batch(pairs)
        if progress is not None:
            progress(len(chunk))
    harm = harm_judges(verdicts)  # decided over all answers (peft_audit.judges.combine)
    out: list[dict] = []
    for i, s in enumerate(samples):
        payload = {k: v for k, v in s.items() if k not in ("sample_id", "category", "harm")}
        payload.update({f"{name}_label": vs[i].label for name, vs in verdicts.items()})
        refusal = verdicts[CLASS_JUDGE][i]
        payload["refusal_rationale"] = refusal.rationale
        payload["xstest_class"] = xstest_class(s["response"], refusal.label)
        harm_v = harm_verdict({name: vs[i] for name, vs in verdicts.items()}, harm=harm)
        if harm_v is not None:
            payload["harm"] = harm_v.label
        out.append({"benchmark": NAME, "sample_id": s["sample_id"], "category": s["category"], "payload": payload})
    return out
