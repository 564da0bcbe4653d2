"""Judge registry: one line per judge, built from a validated :class:`SafetyConfig`.

This is the edge where judges touch the outside world (HTTP client, guard model weights);
code that uses judges receives them ready-made.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..benchmarks.safety.config import SafetyConfig
from .base import Judge
from .cache import JudgmentCache
from .keyword import KeywordJudge
from .refusal import RefusalJudge


def _refusal(cfg: SafetyConfig, cache_path: Path | None) -> Judge:
    return RefusalJudge()


def _keyword(cfg: SafetyConfig, cache_path: Path | None) -> Judge:
    return KeywordJudge()


def _llm(cfg: SafetyConfig, cache_path: Path | None) -> Judge:
    from .llm import LLMJudge

    missing = [k for k in ("judge_url", "judge_model") if not getattr(cfg, k)]
    if missing:
        raise ValueError(
            f"judge 'llm' needs safety.{' and safety.'.join(missing)} (an OpenAI-compatible base URL such as "
            "http://localhost:8000/v1 and a model name); the key is read from the environment variable "
            f"named by safety.judge_api_key_env ({cfg.judge_api_key_env})"
        )
    return LLMJudge(
        url=cfg.judge_url, model=cfg.judge_model, api_key_env=cfg.judge_api_key_env,
        timeout_s=cfg.judge_timeout_s, max_retries=cfg.judge_max_retries, concurrency=cfg.judge_concurrency,
        backoff_s=cfg.judge_backoff_s, cache=JudgmentCache(cache_path) if cache_path else None,
    )


def _guard(cfg: SafetyConfig, cache_path: Path | None) -> Judge:
    from ..models import load_base
    from .guard import GuardJudge

    if not cfg.guard_model:
        raise ValueError("judge 'guard' needs safety.guard_model (e.g. meta-llama/Llama-Guard-3-1B or a local dir)")
    loaded = load_base(cfg.guard_model)
    return GuardJudge(loaded.model, loaded.tokenizer, batch_size=cfg.batch_size)


JUDGES: dict[str, Callable[[SafetyConfig, Path | None], Judge]] = {
    "refusal": _refusal,
    "keyword": _keyword,
    "llm": _llm,
    "guard": _guard,
}


def build_judges(cfg: SafetyConfig, *, cache_path: Path | None = None) -> list[Judge]:
    """The judges named in ``cfg.judges``, in that order. ``cache_path`` is the SQLite judgment
    cache used by the llm judge (None: no cache). Unknown or repeated names raise ValueError."""
    unknown = [n for n in cfg.judges if n not in JUDGES]
    if unknown:
        raise ValueError(f"safety.judges: unknown judge {unknown[0]!r}; valid: {', '.join(JUDGES)}")
    if len(set(cfg.judges)) != len(cfg.judges):
        raise ValueError(f"safety.judges lists a judge twice: {cfg.judges}")
    return [JUDGES[n](cfg, cache_path) for n in cfg.judges]
