"""``safelora``: Safe LoRA, project the LoRA layers that left the safety-aligned subspace.

Hsu, Tsai, Lin, Chen, Yu & Huang 2024, "Safe LoRA: the Silver Lining of Reducing Safety Risks
when Finetuning Large Language Models" (NeurIPS 2024, arXiv:2405.16833). Per layer i, the
alignment matrix V_i = W_aligned,i − W_unaligned,i (the weights of the safety-aligned base minus
those of its unaligned counterpart) gives the projection C_i = V_i V_iᵀ / ‖V_i‖_F. A LoRA layer's
update ΔW_i = B_i A_i is replaced by C_i B_i A_i (``B`` projected) where the cosine similarity
between ΔW_i and C_i ΔW_i (Frobenius inner product) is below ``threshold``; the other layers
are kept. No training; it needs the unaligned counterpart of the base (``--unaligned-base``,
e.g. ``meta-llama/Llama-2-7b-hf`` for ``Llama-2-7b-chat-hf``), loaded once on the CPU beside
the base. Layers where V is zero hold no alignment and are kept. Plain LoRA adapters only.

    peft-audit mitigate RUN_DIR --variant ID --with safelora --unaligned-base HuggingFaceTB/SmolLM2-135M --threshold 0.5
"""

from __future__ import annotations

from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field

from ..config import VariantSpec
from ..models.resolve import ALIASES
from .lora_weights import LoraLayer, alignment_projections, cosine, read_lora, write_lora
from .base import Mitigation, RepairInputs


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    unaligned_base: str | None = Field(None, description="The base model before its safety alignment (alias, dir "
                                                         "or hub id); needed")
    threshold: float = Field(0.5, ge=0.0, le=1.0, description="Project a layer whose update's cosine similarity "
                                                              "with its projection is below this")


def project(layers: dict[str, LoraLayer], projections: dict[str, torch.Tensor | None],
            threshold: float) -> tuple[dict[str, LoraLayer], list[dict[str, Any]]]:
    """Safe LoRA on ``layers`` with the projection C of each (None: no alignment there, kept).

    Returns the layers (``B`` replaced by ``C B`` where the similarity is below ``threshold``)
    and one record per layer: module, similarity (None where undefined), projected.
    """
    out, records = {}, []
    for module, layer in layers.items():
        c = projections.get(module)
        similarity = None if c is None else cosine(layer.delta, c @ layer.delta)
        projected = similarity is not None and similarity < threshold
        out[module] = LoraLayer(layer.A, c @ layer.B, layer.scaling) if projected else layer
        records.append({"module": module, "similarity": similarity, "projected": projected})
    return out, records


def check(spec: VariantSpec, options: Options) -> None:
    if spec.method != "lora":
        raise ValueError(f"safelora projects LoRA adapters, this variant is {spec.method}; use safety-mix")
    if options.unaligned_base:
        return
    if spec.base_model in ALIASES:
        raise ValueError(f"safelora needs the unaligned counterpart of the base, and none ships with the bundled "
                         f"{spec.base_model}; give --unaligned-base MODEL, or use safety-mix or safemerge")
    raise ValueError(f"safelora needs --unaligned-base: {spec.base_model} before its safety alignment (alias, dir "
                     "or hub id); without one, use safety-mix or safemerge")


def build(inputs: RepairInputs, options: Options) -> dict[str, Any]:
    config, layers = read_lora(inputs.original_adapter, method="safelora")
    projections = alignment_projections(inputs.spec.base_model, options.unaligned_base, sorted(layers),
                                        trust_remote_code=inputs.cfg.trust_remote_code)
    repaired, records = project(layers, projections, options.threshold)
    write_lora(inputs.out_dir, config, repaired)
    return {"layers": records, "changed": sum(r["projected"] for r in records)}


MITIGATION = Mitigation(
    name="safelora",
    options=Options,
    describe=lambda o: f"safelora τ {o.threshold:g}",
    check=check,
    build=build,
)
