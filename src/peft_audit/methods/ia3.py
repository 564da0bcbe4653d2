"""IA3: learned vectors that rescale keys, values and feed-forward activations.

Liu et al., 2022, "Few-Shot Parameter-Efficient Fine-Tuning is Better and Cheaper than In-Context
Learning", arXiv:2205.05638. ``feedforward_modules`` must be a subset of ``target_modules``.
"""

from __future__ import annotations

from typing import Any

from .families import ia3_defaults

PROMPT_LEARNING = False
DEFAULTS: dict[str, Any] = {"target_modules": None, "feedforward_modules": None}
DEFAULT_LR = 3e-3


def build(model, args: dict[str, Any], tokenizer=None):
    from peft import IA3Config, TaskType

    targets, ff = args["target_modules"], args["feedforward_modules"]
    if targets is None or ff is None:
        default_targets, default_ff = ia3_defaults(model)
        targets = targets or default_targets
        ff = ff if ff is not None else [m for m in default_ff if m in targets]
    missing = [m for m in ff if m not in targets]
    if missing:
        raise ValueError(
            f"ia3 feedforward_modules {missing} are not in target_modules {targets}; "
            "every feed-forward module must also be a target"
        )
    return IA3Config(task_type=TaskType.CAUSAL_LM, target_modules=targets, feedforward_modules=ff)
