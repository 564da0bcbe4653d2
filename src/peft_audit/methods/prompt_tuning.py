"""Prompt tuning: trainable soft-prompt embeddings prepended to the input.

Lester et al., 2021, "The Power of Scale for Parameter-Efficient Prompt Tuning", arXiv:2104.08691.
``init`` is ``random`` or ``text:<init text>`` (embeddings initialised from that text's tokens,
repeated/cut to ``num_virtual_tokens``; needs a tokenizer saved on disk, as PEFT reloads it by path).
"""

from __future__ import annotations

from typing import Any

PROMPT_LEARNING = True
DEFAULTS: dict[str, Any] = {"num_virtual_tokens": 20, "init": "random"}
DEFAULT_LR = 1e-2


def build(model, args: dict[str, Any], tokenizer=None):
    from peft import PromptTuningConfig, PromptTuningInit, TaskType

    n = int(args["num_virtual_tokens"])
    if n < 1:
        raise ValueError(f"prompt-tuning num_virtual_tokens must be >= 1, got {n}")
    init = str(args["init"])
    if init == "random":
        return PromptTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=n)
    if init.startswith("text:") and init[5:].strip():
        name = getattr(tokenizer, "name_or_path", "") if tokenizer is not None else ""
        if not name:
            raise ValueError(
                "prompt-tuning init=text:... needs the tokenizer of a model loaded from a directory or hub id "
                "(PEFT reloads it by name); use init=random otherwise"
            )
        return PromptTuningConfig(
            task_type=TaskType.CAUSAL_LM,
            num_virtual_tokens=n,
            prompt_tuning_init=PromptTuningInit.TEXT,
            prompt_tuning_init_text=init[5:],
            tokenizer_name_or_path=str(name),
        )
    raise ValueError(f"prompt-tuning init must be 'random' or 'text:<init text>', got {init!r}")
