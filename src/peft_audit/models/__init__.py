"""Base models: resolve names (alias, gguf, dir, hub id), load them, attach adapters; and the
backends (:mod:`.backends`) through which benchmarks reach a loaded variant.

The names below are imported on first use, so that importing :mod:`.backends.base` (the
protocol every benchmark sees) does not import torch.
"""

from importlib import import_module

_LAZY = {
    "default_dtype": ".device", "select_device": ".device",
    "LoadedModel": ".load", "attach_adapter": ".load", "load_base": ".load", "load_tokenizer": ".load",
    "ModelResolutionError": ".resolve", "ResolvedModel": ".resolve", "cache_dir": ".resolve",
    "resolve_model": ".resolve",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
