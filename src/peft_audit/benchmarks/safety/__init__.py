"""Safety benchmark: HEx-PHI-style hazard prompts (Qi et al., 2023), judged per category.

Prompts come from :func:`load_safety_prompts` (built-in, HEx-PHI on the Hub, a local HEx-PHI
directory, or any CSV/JSONL with a column map); :func:`over_refusal_prompts` adds benign
look-alikes. The pipeline runs :func:`generate_responses`, :func:`judge_responses` (with
:func:`check_judge_failures`) and :func:`safety_metrics` as separate stages; :func:`evaluate_safety` does all three.

Command line (through a sweep config)::

    peft-audit run configs/quickstart.yaml --safety hexphi
"""

from .config import SafetyConfig
from ...judges.failures import JudgeFailureError, JudgeFailures, check_judge_failures, judge_failures
from .metrics import safety_metrics
from .prompts import OVER_REFUSAL_BENCHMARK, SafetyPrompt, builtin_prompts, over_refusal_prompts
from .sources import HEXPHI_REPO, SafetyDataError, limit_per_category, load_hexphi_dir, load_safety_prompts, load_table


def __getattr__(name: str):
    # evaluate.py needs torch; config validation and the analysis import this package without it.
    if name in ("SafetyResult", "evaluate_safety", "generate_responses", "judge_responses"):
        from . import evaluate

        return getattr(evaluate, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "SafetyConfig",
    "HEXPHI_REPO", "OVER_REFUSAL_BENCHMARK", "JudgeFailureError", "JudgeFailures", "SafetyDataError", "SafetyPrompt",
    "SafetyResult", "builtin_prompts", "check_judge_failures", "evaluate_safety", "generate_responses",
    "judge_failures", "judge_responses", "limit_per_category", "load_hexphi_dir",
    "load_safety_prompts", "load_table", "over_refusal_prompts", "safety_metrics",
]
