"""P-tuning: virtual-token embeddings produced by a small trainable encoder (MLP or LSTM).

Liu et al., 2021, "GPT Understands, Too", arXiv:2103.10385. The encoder is used during training;
PEFT saves its output embeddings, so inference costs the same as prompt tuning.
"""

from __future__ import annotations

from typing import Any

PROMPT_LEARNING = True
DEFAULTS: dict[str, Any] = {"num_virtual_tokens": 20, "encoder_hidden_size": 128, "encoder_type": "MLP"}
DEFAULT_LR = 1e-2
ENCODER_TYPES = ("MLP", "LSTM")


def build(model, args: dict[str, Any], tokenizer=None):
    from peft import PromptEncoderConfig, TaskType

    n = int(args["num_virtual_tokens"])
    if n < 1:
        raise ValueError(f"p-tuning num_virtual_tokens must be >= 1, got {n}")
    encoder_type = str(args["encoder_type"]).upper()
    if encoder_type not in ENCODER_TYPES:
        raise ValueError(f"p-tuning encoder_type must be one of {', '.join(ENCODER_TYPES)}, got {args['encoder_type']!r}")
    return PromptEncoderConfig(
        task_type=TaskType.CAUSAL_LM,
        num_virtual_tokens=n,
        encoder_hidden_size=int(args["encoder_hidden_size"]),
        encoder_reparameterization_type=encoder_type,
    )
