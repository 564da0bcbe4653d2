"""Fairness benchmark: BBQ (Parrish et al., 2022, "BBQ: A Hand-Built Bias Benchmark for
Question Answering", Findings of ACL).

Pipeline: :func:`load_bbq` (built-in sample, official files, or a Hugging Face dataset) ->
:func:`score_bbq` (log-likelihood with shared-prefix scoring, or generated letters) ->
:func:`fairness_metrics` (accuracy, s_DIS, s_AMB, abstention, bootstrap 95% intervals).

    peft-audit run sweep.yaml   # with  fairness: {source: path/to/BBQ/data, per_cell: 50}
"""

from .loader import BBQFormatError, BBQItem, BBQLoadResult, load_bbq, sample_per_cell
from .metrics import fairness_metrics
from .score import parse_choice, score_bbq
from .targets import bias_target_index

__all__ = [
    "BBQFormatError",
    "BBQItem",
    "BBQLoadResult",
    "bias_target_index",
    "fairness_metrics",
    "load_bbq",
    "parse_choice",
    "sample_per_cell",
    "score_bbq",
]
