"""Load base models and attach adapters."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from .device import resolve_dtype, select_device
from .resolve import ResolvedModel, resolve_model


@dataclass
class LoadedModel:
    """A model ready for generation/scoring, with what it was built from."""

    model: torch.nn.Module
    tokenizer: object
    device: torch.device
    resolved: ResolvedModel
    adapter: str | None = None


def load_tokenizer(path: str | Path, *, trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(path), trust_remote_code=trust_remote_code)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_base(
    name: str,
    *,
    device: str = "auto",
    dtype: torch.dtype | str | None = None,
    trust_remote_code: bool = False,
    load_in: str | None = None,
) -> LoadedModel:
    """Resolve ``name`` (alias, .gguf, dir, hub id) and load it in eval mode on ``device``, in
    ``dtype`` (a torch dtype or a sweep's ``eval_dtype`` name; None or ``auto``: the device's
    default, :func:`~peft_audit.models.device.default_dtype`)."""
    from transformers import AutoModelForCausalLM

    resolved = resolve_model(name)
    dev = select_device(device)
    kwargs: dict = {"dtype": resolve_dtype(dtype, dev), "trust_remote_code": trust_remote_code}
    if load_in:
        kwargs["quantization_config"] = quantization_config(load_in, dev)
        kwargs["device_map"] = {"": dev.index or 0}
    model = AutoModelForCausalLM.from_pretrained(str(resolved.path), **kwargs)
    if not load_in:
        model.to(dev)
    model.eval()
    tok = load_tokenizer(resolved.path, trust_remote_code=trust_remote_code)
    return LoadedModel(model, tok, dev, resolved)


def quantization_config(load_in: str, device: torch.device):
    """bitsandbytes 4/8-bit config; a clear error when the extra or a GPU is missing."""
    if device.type != "cuda":
        raise ValueError(f"load_in={load_in} needs a CUDA GPU (bitsandbytes); the device is {device}")
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise ValueError("load_in needs bitsandbytes: pip install 'peft-audit[quant]'") from None
    from transformers import BitsAndBytesConfig

    if load_in == "4bit":
        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_compute_dtype=torch.bfloat16, bnb_4bit_quant_type="nf4")
    if load_in == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    raise ValueError(f"load_in must be 4bit or 8bit, got {load_in!r}")


def attach_adapter(loaded: LoadedModel, adapter_dir: str | Path) -> LoadedModel:
    """Wrap the base model with a saved PEFT adapter (inference mode). Returns a new LoadedModel
    sharing the base weights; ``loaded.model`` itself is left unwrapped."""
    from peft import PeftModel

    model = PeftModel.from_pretrained(loaded.model, str(adapter_dir), is_trainable=False)
    model.eval()
    return LoadedModel(model, loaded.tokenizer, loaded.device, loaded.resolved, adapter=str(adapter_dir))
