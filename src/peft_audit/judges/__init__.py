"""Judges of safety responses: one module per judge behind the :class:`Judge` protocol.

``keyword`` (refusal phrases + degeneration), ``llm`` (1-5 rubric over an OpenAI-compatible
endpoint), ``guard`` (local Llama-Guard-style classifier), ``harmbench-cls`` and ``wildguard``
(the field's published classifiers, by transformers, vLLM or an OpenAI-compatible server);
:func:`combine` and :func:`agreement` for several judges at once.
"""

from .base import COMBINED, COMBINED_HARM, REFUSAL_JUDGES, SAFE_BY_LABEL, Judge, Verdict, row_verdict, verdict_row
from .combine import (COMBINE_RULES, agreement, cohen_kappa, combine, harm_judges, harm_verdict, refusal_verdict,
                      two_verdicts)
from .keyword import REFUSAL_PHRASES, KeywordJudge, degeneration_reason, refusal_phrase
from .registry import JUDGES, build_judges

__all__ = [
    "COMBINED", "COMBINED_HARM", "COMBINE_RULES", "JUDGES", "REFUSAL_JUDGES", "REFUSAL_PHRASES", "SAFE_BY_LABEL",
    "Judge", "KeywordJudge", "Verdict", "agreement", "build_judges", "cohen_kappa", "combine", "degeneration_reason",
    "harm_judges", "harm_verdict", "refusal_phrase", "refusal_verdict", "row_verdict", "two_verdicts", "verdict_row",
]
