"""LoRA: low-rank updates W + (alpha/r) B A on linear layers.

Hu et al., 2021, "LoRA: Low-Rank Adaptation of Large Language Models", arXiv:2106.09685.
Default targets: every attention and MLP projection of the family (see ``families``).
"""

from __future__ import annotations

from typing import Any

from .families import LORA_TARGETS, model_family

PROMPT_LEARNING = False
#: Method arguments and their defaults (``None``: chosen per architecture).
DEFAULTS: dict[str, Any] = {"r": 8, "alpha": 16, "dropout": 0.05, "target_modules": None}
DEFAULT_LR = 2e-4


def build(model, args: dict[str, Any], tokenizer=None):
    from peft import LoraConfig, TaskType

    targets = args["target_modules"] or LORA_TARGETS.get(model_family(model), "all-linear")
    if args["r"] < 1:
        raise ValueError(f"lora r must be >= 1, got {args['r']}")
    return LoraConfig(
        task_type=TaskType.CAUSAL_LM,
        r=int(args["r"]),
        lora_alpha=float(args["alpha"]),
        lora_dropout=float(args["dropout"]),
        target_modules=targets,
    )
