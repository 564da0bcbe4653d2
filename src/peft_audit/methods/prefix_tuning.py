"""Prefix tuning: trainable key/value prefixes prepended at every attention layer.

Li & Liang, 2021, "Prefix-Tuning: Optimizing Continuous Prompts for Generation", arXiv:2101.00190.
Unlike prompt tuning the prefixes live in the KV cache, so outputs are not lengthened.
"""

from __future__ import annotations

from typing import Any

PROMPT_LEARNING = True
DEFAULTS: dict[str, Any] = {"num_virtual_tokens": 20}
DEFAULT_LR = 1e-2


def build(model, args: dict[str, Any], tokenizer=None):
    from peft import PrefixTuningConfig, TaskType

    n = int(args["num_virtual_tokens"])
    if n < 1:
        raise ValueError(f"prefix-tuning num_virtual_tokens must be >= 1, got {n}")
    return PrefixTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=n)
