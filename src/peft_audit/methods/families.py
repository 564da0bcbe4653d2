"""Architecture families and their module names (what PEFT methods attach to).

Llama, Qwen2, Mistral and Gemma share the same projection names (``q_proj``, ``k_proj``,
``v_proj``, ``o_proj`` for attention; ``gate_proj``, ``up_proj``, ``down_proj`` for the MLP),
but other families differ (GPT-2 ``c_attn``, Falcon ``query_key_value``...). For families not
listed here LoRA falls back to PEFT's ``"all-linear"`` and IA3 to PEFT's own mapping.
"""

from __future__ import annotations

ATTENTION = ["q_proj", "k_proj", "v_proj", "o_proj"]
MLP = ["gate_proj", "up_proj", "down_proj"]

#: LoRA default: every linear layer of attention and MLP (the LM head is left alone).
LORA_TARGETS: dict[str, list[str]] = {
    "llama": ATTENTION + MLP,
    "qwen2": ATTENTION + MLP,
    "mistral": ATTENTION + MLP,
    "gemma": ATTENTION + MLP,
    "gemma2": ATTENTION + MLP,
}

#: IA3 default (Liu et al., 2022, "Few-Shot Parameter-Efficient Fine-Tuning is Better and Cheaper
#: than In-Context Learning"): rescale keys, values and the MLP's inner activation. The feed-forward
#: module is scaled on its input, attention modules on their output.
IA3_TARGETS: dict[str, list[str]] = {
    "llama": ["k_proj", "v_proj", "down_proj"],
    "qwen2": ["k_proj", "v_proj", "down_proj"],
    "mistral": ["k_proj", "v_proj", "down_proj"],
    "gemma": ["k_proj", "v_proj", "down_proj"],
    "gemma2": ["k_proj", "v_proj", "down_proj"],
}
IA3_FEEDFORWARD: dict[str, list[str]] = {f: ["down_proj"] for f in IA3_TARGETS}


def model_family(model) -> str:
    """The ``model_type`` of a transformers model (``llama``, ``qwen2``...), or ``""`` if unknown."""
    config = getattr(model, "config", None)
    return str(getattr(config, "model_type", "") or "")


def ia3_defaults(model) -> tuple[list[str], list[str]]:
    """(target_modules, feedforward_modules) for IA3 on ``model``'s family.

    Unknown families use PEFT's ``TRANSFORMERS_MODELS_TO_IA3_*`` mappings; a family in neither
    table raises ValueError asking for explicit ``target_modules`` and ``feedforward_modules``.
    """
    family = model_family(model)
    if family in IA3_TARGETS:
        return list(IA3_TARGETS[family]), list(IA3_FEEDFORWARD[family])
    from peft.utils import (
        TRANSFORMERS_MODELS_TO_IA3_FEEDFORWARD_MODULES_MAPPING as FF,
        TRANSFORMERS_MODELS_TO_IA3_TARGET_MODULES_MAPPING as TM,
    )

    if family in TM and family in FF:
        return list(TM[family]), list(FF[family])
    raise ValueError(
        f"IA3 has no default modules for model family {family!r}; pass --method-arg "
        "target_modules=a,b --method-arg feedforward_modules=b (module names from model.named_modules())"
    )
