"""Judge registry: one line per judge, each built from its validated spec (:mod:`.specs`).

This is the edge where judges touch the outside world (HTTP client, guard model weights);
code that uses judges receives them ready-made. A judge with ``cache_parts`` (llm) is wrapped
in :class:`.cache.CachedJudge` when a cache file is given.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .base import Judge
from .cache import CachedJudge, JudgmentCache
from .keyword import KeywordJudge
from .refusal import RefusalJudge
from .specs import GuardSpec, JudgeSpec, LLMSpec


def _llm(spec: LLMSpec) -> Judge:
    from .llm import LLMJudge

    return LLMJudge(url=spec.url, model=spec.model, api_key_env=spec.api_key_env, timeout_s=spec.timeout_s,
                    max_retries=spec.max_retries, concurrency=spec.concurrency, backoff_s=spec.backoff_s)


def _guard(spec: GuardSpec) -> Judge:
    from ..models import load_base
    from .guard import GuardJudge

    loaded = load_base(spec.model)
    return GuardJudge(loaded.model, loaded.tokenizer, batch_size=spec.batch_size)


JUDGES: dict[str, Callable[[Any], Judge]] = {
    "refusal": lambda spec: RefusalJudge(),
    "keyword": lambda spec: KeywordJudge(),
    "llm": _llm,
    "guard": _guard,
}


def build_judge(spec: JudgeSpec, *, cache_path: Path | None = None) -> Judge:
    """The judge ``spec`` describes; behind the judgment cache at ``cache_path`` when the judge
    has ``cache_parts``. ValueError naming the valid judges for an unknown name."""
    if spec.name not in JUDGES:
        raise ValueError(f"unknown judge {spec.name!r}; valid: {', '.join(JUDGES)}")
    judge = JUDGES[spec.name](spec)
    if cache_path is not None and getattr(judge, "cache_parts", None):
        return CachedJudge(judge, JudgmentCache(cache_path))
    return judge


def build_judges(specs: Sequence[JudgeSpec] | Any, *, cache_path: Path | None = None) -> list[Judge]:
    """The judges of ``specs`` (or of a benchmark section's ``judges``), in that order."""
    specs = list(getattr(specs, "judges", specs))
    return [build_judge(s, cache_path=cache_path) for s in specs]
