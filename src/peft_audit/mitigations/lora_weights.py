"""The LoRA layers of a saved PEFT adapter, read as tensors, and a changed copy written back.

A LoRA adapter directory holds ``adapter_config.json`` and ``adapter_model.safetensors``, whose
keys are ``base_model.model.<module>.lora_A.weight`` (r x in) and ``....lora_B.weight`` (out x r).
The module's weight update is ΔW = s · B A with s = lora_alpha / r (lora_alpha / √r with rsLoRA);
the base model's weight it adds to is ``<module>.weight``. The weight repairs
(:mod:`.safelora`, :mod:`.safemerge`) work on these updates, one module ("layer") at a time.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch

PREFIX = "base_model.model."
CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"


@dataclass(frozen=True)
class LoraLayer:
    """One LoRA-wrapped module: ``A`` (r x in), ``B`` (out x r) and the scaling ``s``."""

    A: torch.Tensor
    B: torch.Tensor
    scaling: float

    @property
    def delta(self) -> torch.Tensor:
        """The module's weight update ΔW = s · B A (out x in), in float32."""
        return self.scaling * (self.B.float() @ self.A.float())


def read_lora(adapter_dir: str | Path, *, method: str) -> tuple[dict, dict[str, LoraLayer]]:
    """``(adapter config, {module name: layer})`` of the LoRA adapter in ``adapter_dir``.

    ``method`` names the repair that needs it, for the error raised when the adapter is not a plain
    LoRA (another PEFT type, DoRA, per-module ranks or alphas, extra trained modules).
    """
    from safetensors.torch import load_file

    adapter_dir = Path(adapter_dir)
    config = json.loads((adapter_dir / CONFIG_FILE).read_text())
    kind = config.get("peft_type")
    if kind != "LORA" or config.get("use_dora") or config.get("rank_pattern") or config.get("alpha_pattern"):
        what = "DoRA or per-module ranks" if kind == "LORA" else f"a {kind} adapter"
        raise ValueError(f"{adapter_dir}: {method} repairs plain LoRA adapters, this is {what}; "
                         "use safety-mix, which retrains any method")
    tensors = load_file(str(adapter_dir / WEIGHTS_FILE))
    layers: dict[str, LoraLayer] = {}
    for key, a in tensors.items():
        if not key.endswith(".lora_A.weight"):
            if not key.endswith(".lora_B.weight"):
                raise ValueError(f"{adapter_dir}: {method} repairs LoRA layers only, the adapter also trains {key}; "
                                 "use safety-mix")
            continue
        module = key.removeprefix(PREFIX).removesuffix(".lora_A.weight")
        b = tensors[key.replace(".lora_A.", ".lora_B.")]
        r = a.shape[0]
        alpha = float(config["lora_alpha"])
        scaling = alpha / math.sqrt(r) if config.get("use_rslora") else alpha / r
        layers[module] = LoraLayer(a.float(), b.float(), scaling)
    if not layers:
        raise ValueError(f"{adapter_dir}: no LoRA layers in {WEIGHTS_FILE}")
    return config, layers


def write_lora(out_dir: str | Path, config: dict, layers: dict[str, LoraLayer]) -> None:
    """Write ``layers`` as a LoRA adapter into ``out_dir`` with ``config`` (its ``r`` and
    ``lora_alpha`` set so that every layer's scaling is 1 when layers carry their scaling in
    ``B``, see :func:`unit_scaled`)."""
    from safetensors.torch import save_file

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for module, layer in sorted(layers.items()):
        tensors[f"{PREFIX}{module}.lora_A.weight"] = layer.A.contiguous()
        tensors[f"{PREFIX}{module}.lora_B.weight"] = layer.B.contiguous()
    save_file(tensors, str(out_dir / WEIGHTS_FILE))
    (out_dir / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True))


def unit_scaled(config: dict, rank: int) -> dict:
    """``config`` for layers of ``rank`` whose ``B`` already carries the scaling (s = 1)."""
    return {**config, "r": rank, "lora_alpha": rank, "use_rslora": False}


def cosine(x: torch.Tensor, y: torch.Tensor) -> float | None:
    """Cosine similarity of two matrices in the Frobenius inner product: None where ``x`` is zero
    (no update to judge), 0.0 where only ``y`` is (an update wholly outside the subspace)."""
    nx, ny = torch.linalg.norm(x), torch.linalg.norm(y)
    if nx == 0:
        return None
    if ny == 0:
        return 0.0
    return float((x * y).sum() / (nx * ny))


def alignment_projection(v: torch.Tensor) -> torch.Tensor | None:
    """Safe LoRA's projection of a layer's alignment matrix V (out x in): C = V Vᵀ / ‖V‖_F
    (Hsu et al. 2024, Eq. 2, normalised by the Frobenius norm as in its reference code); None
    where V is zero (the layer holds no alignment to preserve)."""
    v = v.float()
    norm = torch.linalg.norm(v)
    if norm == 0:
        return None
    return (v @ v.T) / norm


def base_weights(model_name: str, modules: list[str], *, trust_remote_code: bool = False) -> dict[str, torch.Tensor]:
    """The float32 weights ``<module>.weight`` of ``model_name`` (any name :func:`load_base`
    resolves), loaded on the CPU; KeyError naming a module the model lacks."""
    from ..models import load_base

    loaded = load_base(model_name, device="cpu", dtype="float32", trust_remote_code=trust_remote_code)
    state = loaded.model.state_dict()
    missing = [m for m in modules if f"{m}.weight" not in state]
    if missing:
        raise ValueError(f"{model_name} has no weight for the adapter's module(s) {', '.join(missing[:3])}; "
                         "give a model of the same architecture")
    return {m: state[f"{m}.weight"].detach().float().clone() for m in modules}


def alignment_projections(aligned: str, unaligned: str, modules: list[str], *,
                          trust_remote_code: bool = False) -> dict[str, torch.Tensor | None]:
    """Safe LoRA's projection C_i of each module, from V_i = W_aligned,i − W_unaligned,i of the
    two models (:func:`alignment_projection`; None where they agree)."""
    w = base_weights(aligned, modules, trust_remote_code=trust_remote_code)
    u = base_weights(unaligned, modules, trust_remote_code=trust_remote_code)
    return {m: alignment_projection(w[m] - u[m]) for m in modules}
