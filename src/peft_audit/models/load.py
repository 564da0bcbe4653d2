"""Load base models and attach adapters."""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass
from pathlib import Path

import torch

from .device import resolve_dtype, select_device
from .packed_weights import remember_origin
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
    """The tokenizer of the checkpoint directory ``path``, with a pad token (EOS if it has none).

    Read once per process and directory: parsing a 49k-token ``tokenizer.json`` takes 0.3-0.8 s
    here, and a sweep worker loads the same base for every variant it trains or evaluates. Each
    call gets its own deep copy (0.09 s), so a caller that changes its tokenizer (a trainer
    setting padding) changes no one else's. The directory's tokenizer files (names, sizes,
    modification times) are part of the key, so a changed file is read again. Tokenizers with
    remote code are always read afresh (their classes may not copy)."""
    if trust_remote_code or not Path(path).is_dir():
        return _read_tokenizer(str(path), trust_remote_code)
    return copy.deepcopy(_cached_tokenizer(str(path), _tokenizer_files(Path(path))))


def _read_tokenizer(path: str, trust_remote_code: bool):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


@functools.lru_cache(maxsize=4)
def _cached_tokenizer(path: str, files: tuple) -> object:
    return _read_tokenizer(path, False)


def _tokenizer_files(path: Path) -> tuple:
    stamp = []
    for f in sorted(path.iterdir()):
        if f.is_file() and ("token" in f.name or f.name in ("vocab.json", "merges.txt", "special_tokens_map.json")
                            or f.suffix == ".jinja"):
            st = f.stat()
            stamp.append((f.name, st.st_size, st.st_mtime_ns))
    return tuple(stamp)


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
        # the next load of these files in this process reuses their packed CPU weights
        remember_origin(model, f"{resolved.fingerprint}:{kwargs['dtype']}")
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
