"""Judge registry: one line per judge, each built from its validated spec (:mod:`.specs`).

This is the edge where judges touch the outside world (HTTP client, guard model weights);
code that uses judges receives them ready-made. A judge with ``cache_parts`` (llm) is wrapped
in :class:`.cache.CachedJudge` when a cache file is given. The field classifiers
(``harmbench-cls``, ``wildguard``) get the backend their spec names (:func:`_completer`); a
local one loads its model on first use, so that building the judge (a run's preflight) is cheap.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .base import Judge
from .cache import CachedJudge, JudgmentCache
from .harm import HarmJudge
from .keyword import KeywordJudge
from .refusal import RefusalJudge
from .specs import GuardSpec, HarmBenchClsSpec, JudgeSpec, LLMSpec, WildGuardSpec


def _llm(spec: LLMSpec) -> Judge:
    from .llm import LLMJudge

    return LLMJudge(url=spec.url, model=spec.model, **spec.endpoint_settings())


def _local_model(name: str):
    """The classifier ``name`` as the transformers backend serves it, on the best device."""
    from ..models.backends.base import BackendSettings
    from ..models.backends.transformers import TransformersBackend

    return TransformersBackend(BackendSettings("transformers")).load(name)


def _guard(spec: GuardSpec) -> Judge:
    from .guard import GuardJudge

    return GuardJudge(_local_model(spec.model), batch_size=spec.batch_size)


def _completer(spec: HarmBenchClsSpec | WildGuardSpec):
    """The raw-prompt backend ``spec.backend`` names (:mod:`.completion`)."""
    from . import completion

    if spec.backend == "http":
        from .llm import OpenAIEndpoint, completions_url

        return completion.HttpCompleter(OpenAIEndpoint(
            url=completions_url(spec.url), model=spec.model, judge_name=spec.name, **spec.endpoint_settings()))
    if spec.backend == "vllm":
        from ..models.backends.vllm import require_vllm

        require_vllm()  # say so now, not after the run's generation
        return completion.LazyCompleter(lambda: completion.vllm_completer(spec.model))

    def load():
        return completion.TransformersCompleter(_local_model(spec.model), batch_size=spec.batch_size)

    return completion.LazyCompleter(load)


def _harmbench_cls(spec: HarmBenchClsSpec) -> Judge:
    from .harmbench_cls import HarmBenchJudge

    return HarmBenchJudge(_completer(spec), template=spec.template)


def _wildguard(spec: WildGuardSpec) -> Judge:
    from .wildguard import WildGuardJudge

    return WildGuardJudge(_completer(spec))


JUDGES: dict[str, Callable[[Any], Judge]] = {
    "refusal": lambda spec: RefusalJudge(),
    "keyword": lambda spec: KeywordJudge(),
    "harm": lambda spec: HarmJudge.bundled(batch_size=spec.batch_size),
    "llm": _llm,
    "guard": _guard,
    "harmbench-cls": _harmbench_cls,
    "wildguard": _wildguard,
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


def check_judges(specs) -> None:
    """Build each judge of ``specs`` once, as a preflight: an unknown name, a bad setting, a
    missing harm probe or a guard or field classifier model that cannot be found fails here. A
    local classifier's model is only resolved (found or downloaded), not loaded; an endpoint is
    not called."""
    for spec in specs:
        if spec.name == "guard" or getattr(spec, "backend", None) in ("transformers", "vllm"):
            from ..models import resolve_model

            resolve_model(spec.model)
            if spec.name == "guard":
                continue
        judge = build_judge(spec)
        close = getattr(judge, "close", None)
        if close is not None:
            close()
