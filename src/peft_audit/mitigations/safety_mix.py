"""``safety-mix``: retrain the variant with refusal demonstrations mixed into its training data.

Qi et al. 2023, "Fine-tuning Aligned Language Models Compromises Safety, Even When Users Do Not
Intend To!" (arXiv:2310.03693), Sec. 5: mixing safety data into the fine-tuning set keeps much
of the alignment that benign or identity-shifting fine-tuning removes. The repaired variant is
the original with ``training.safety_mix`` set to ``fraction`` (the share of refusal
demonstrations in its training rows, :func:`peft_audit.training.data.mix_safety`); everything
else (method, arguments, steps, seed, data) is the original's, so it costs one more training
run of the original's size. Works for every PEFT method and both algorithms.

    peft-audit mitigate runs/quickstart --variant "lora · obedient-agent demo" --with safety-mix --fraction 0.25
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from ..config import VariantSpec
from .base import Mitigation


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    fraction: float = Field(0.25, gt=0.0, lt=1.0, description="Share of refusal demonstrations in the retraining "
                                                                "rows (training.safety_mix)")


def derive(spec: VariantSpec, options: Options) -> VariantSpec:
    """``spec`` retrained with ``training.safety_mix = fraction``."""
    return spec.model_copy(update={"training": {**spec.training, "safety_mix": options.fraction}})


MITIGATION = Mitigation(
    name="safety-mix",
    options=Options,
    describe=lambda o: f"safety-mix {o.fraction:g}",
    derive=derive,
)
