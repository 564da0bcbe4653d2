"""``safemerge``: SafeMERGE, merge a safety adapter into the layers that left the safe subspace.

Djuhera, Kadhe, Ahmed, Zawad & Boche 2025, "SafeMERGE: Preserving Safety Alignment in
Fine-Tuned Large Language Models via Selective Layer-Wise Model Merging" (arXiv:2503.17239).
A safety adapter (same PEFT method and arguments as the variant, trained on refusal
demonstrations) is merged into the variant layer by layer, where the layer deviates from safe
behaviour: with C_i the Safe LoRA projection of layer i (:mod:`.safelora`), the cosine
similarity ρ_i between the variant's update ΔW_f,i and C_i ΔW_f,i is below ``threshold``; such
a layer becomes the linear merge α ΔW_f,i + (1 − α) ΔW_s,i, the others keep ΔW_f,i.

Where the paper leaves freedom, or needs what the bundled model lacks, this module chooses:

* the subspace: with ``--unaligned-base``, the paper's V_i = W_aligned,i − W_unaligned,i;
  without one (the bundled model ships none), V_i = ΔW_s,i, the direction the safety adapter's
  own training moved layer i, so ρ_i measures how much of the variant's update lies along it;
* the merge: linear (the paper also tries TIES and DARE), ``alpha`` weighing the variant;
* the defaults, threshold 0.2 and alpha 0.5, as measured on the quickstart's demo variant (bundled
  SmolLM2, no unaligned base; the demo as trained before the utility's held-out split): its
  layers' similarities to the safety adapter's update range 0.04-0.43, so 0.5 merged all 210
  layers and the repair refused 92% of harmful and 88% of benign prompts (base: 16% and 4%); 0.2
  merged 157 and landed nearer the base (27% and 21%); alpha 0.6 or 0.7 won back little. On the
  demo as trained now, 0.2 merges 163 layers: refusals 25%, benign prompts refused 17%. Other
  models need their own setting: read the Mitigations section's over-refusal row;
* the safety adapter: the built-in refusal demonstrations (``builtin:refusals``), trained with
  the variant's method, arguments, lr, seed, steps, batch size and sequence length; trained once
  per base and such settings and cached in ``RUN_DIR/mitigations/safety-adapters/``, so a second
  variant of the same kind costs only the merge;
* the result is one LoRA adapter of rank r_f + r_s holding both updates (scaling folded into B).

Cost: one short training run per base (cached), then seconds. Plain LoRA adapters only.

    peft-audit mitigate runs/quickstart --variant "lora · obedient-agent demo" --with safemerge --threshold 0.2
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field

from ..config import TrainingConfig, VariantSpec, variant_id
from ..identity import identity_payload
from .lora_weights import (LoraLayer, alignment_projection, alignment_projections, cosine, read_lora, unit_scaled,
                           write_lora)
from .base import Mitigation, RepairInputs

#: The safety adapter's training data: the refusal demonstrations, prompt -> refusal, all of them
#: (nothing held out: the safety adapter is merged, never evaluated on its own).
SAFETY_DATA = {"data": "builtin:refusals", "columns": {"response": "refusal"}, "heldout_fraction": 0.0}
SAFETY_ADAPTERS_DIR = Path("mitigations") / "safety-adapters"


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    threshold: float = Field(0.2, ge=0.0, le=1.0, description="Merge a layer whose update's cosine similarity "
                                                              "with its projection is below this")
    alpha: float = Field(0.5, ge=0.0, le=1.0, description="Weight of the variant's layer in a merged layer "
                                                          "(1 - alpha: the safety adapter's)")
    unaligned_base: str | None = Field(None, description="The base before its safety alignment, for the paper's "
                                                         "subspace; without it, the safety adapter's update")


def merge(variant: dict[str, LoraLayer], safety: dict[str, LoraLayer], projections: dict[str, torch.Tensor | None],
          threshold: float, alpha: float) -> tuple[dict[str, LoraLayer], list[dict[str, Any]]]:
    """SafeMERGE's layer-wise merge of ``variant`` and ``safety`` (the same modules).

    A layer with projection C (None: undefined, kept) and similarity ρ = cos(ΔW_f, C ΔW_f) below
    ``threshold`` gets α ΔW_f + (1 − α) ΔW_s; the others ΔW_f. Every output layer has rank
    r_f + r_s with scaling 1 (B = [α s_f B_f | (1 − α) s_s B_s], A = [A_f ; A_s]; an unmerged
    layer's safety half is zero). Returns the layers and one record per layer (module,
    similarity, merged). ValueError if the two adapters wrap different modules.
    """
    if set(variant) != set(safety):
        raise ValueError("the safety adapter wraps other modules than the variant; train both with the same "
                         "method arguments")
    out, records = {}, []
    for module, f in variant.items():
        s = safety[module]
        c = projections.get(module)
        similarity = None if c is None else cosine(f.delta, c @ f.delta)
        merged = similarity is not None and similarity < threshold
        wf, ws = (alpha, 1.0 - alpha) if merged else (1.0, 0.0)
        out[module] = LoraLayer(torch.cat([f.A, s.A]), torch.cat([wf * f.scaling * f.B, ws * s.scaling * s.B], dim=1), 1.0)
        records.append({"module": module, "similarity": similarity, "merged": merged})
    return out, records


def safety_adapter_spec(spec: VariantSpec) -> tuple[VariantSpec, dict[str, Any]]:
    """The safety adapter's spec (the variant's method, arguments, lr, epochs, seed) and its
    training overrides (refusal demonstrations, the variant's steps, batch and sequence length)."""
    safety = VariantSpec(base_model=spec.base_model, method=spec.method, method_args=spec.method_args, algo="sft",
                         lr=spec.lr, epochs=spec.epochs, seed=spec.seed)
    return safety, SAFETY_DATA


def safety_adapter(inputs: RepairInputs) -> Path:
    """The cached safety adapter for ``inputs.spec``, trained first if absent."""
    from ..models import load_base
    from ..training import train_adapter
    from ..training.provenance import PROVENANCE_FILE

    cfg = inputs.cfg
    spec, overrides = safety_adapter_spec(inputs.spec)
    own = cfg.training_for(inputs.spec)
    training = TrainingConfig.model_validate({
        **overrides, "max_steps": own.max_steps, "batch_size": own.batch_size, "grad_accum": own.grad_accum,
        "max_seq_len": own.max_seq_len, "load_in": own.load_in})
    key = variant_id({"variant": identity_payload(spec), "training": identity_payload(training)})
    out = inputs.run_dir / SAFETY_ADAPTERS_DIR / key
    if not (out / PROVENANCE_FILE).is_file():
        base = load_base(spec.base_model, device=cfg.device, trust_remote_code=cfg.trust_remote_code,
                         load_in=training.load_in)
        train_adapter(base.model, base.tokenizer, spec=spec, training=training, out_dir=out,
                      base_fingerprint=base.resolved.fingerprint, device=base.device, show_progress=False)
    return out


def build(inputs: RepairInputs, options: Options) -> dict[str, Any]:
    config, variant = read_lora(inputs.original_adapter, method="safemerge")
    safety_dir = safety_adapter(inputs)
    _, safety = read_lora(safety_dir, method="safemerge")
    modules = sorted(variant)
    if options.unaligned_base:
        projections = alignment_projections(inputs.spec.base_model, options.unaligned_base, modules,
                                            trust_remote_code=inputs.cfg.trust_remote_code)
    else:
        projections = {m: alignment_projection(safety[m].delta) if m in safety else None for m in modules}
    merged, records = merge(variant, safety, projections, options.threshold, options.alpha)
    rank = next(iter(merged.values())).A.shape[0]
    write_lora(inputs.out_dir, unit_scaled(config, rank), merged)
    return {"safety_adapter": str(safety_dir.relative_to(inputs.run_dir)), "layers": records,
            "changed": sum(r["merged"] for r in records)}


def check(spec: VariantSpec, options: Options) -> None:
    if spec.method != "lora":
        raise ValueError(f"safemerge merges LoRA adapters, this variant is {spec.method}; use safety-mix")


MITIGATION = Mitigation(
    name="safemerge",
    options=Options,
    describe=lambda o: f"safemerge τ {o.threshold:g} α {o.alpha:g}",
    check=check,
    build=build,
)
