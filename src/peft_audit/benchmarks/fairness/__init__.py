"""Fairness benchmark: BBQ (Parrish et al., 2022, "BBQ: A Hand-Built Bias Benchmark for
Question Answering", Findings of ACL).

Pipeline: :func:`load_bbq` (built-in sample, official files, or a Hugging Face dataset) ->
:func:`score_bbq` (log-likelihood with shared-prefix scoring, or generated letters) ->
:func:`fairness_metrics` (accuracy, s_DIS, s_AMB, abstention per category and their mean over
categories, template-cluster bootstrap 95% intervals).

    peft-audit run sweep.yaml   # with  fairness: {source: path/to/BBQ/data, per_cell: 50}
"""

from .config import FairnessConfig
from .loader import BBQFormatError, BBQItem, BBQLoadResult, load_bbq, sample_per_cell
from .metrics import bbq_scores, fairness_metrics, item_indicators
from .targets import bias_target_index


def __getattr__(name: str):
    # score.py needs torch; the analysis imports the metrics above without loading it.
    if name in ("parse_choice", "score_bbq"):
        from . import score

        return getattr(score, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "FairnessConfig",
    "BBQFormatError",
    "BBQItem",
    "BBQLoadResult",
    "bbq_scores",
    "bias_target_index",
    "fairness_metrics",
    "item_indicators",
    "load_bbq",
    "parse_choice",
    "sample_per_cell",
    "score_bbq",
]
