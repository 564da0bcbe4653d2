"""Base models: resolve names (alias, gguf, dir, hub id), load them, attach adapters."""

from .device import default_dtype, select_device
from .load import LoadedModel, attach_adapter, load_base, load_tokenizer
from .resolve import ModelResolutionError, ResolvedModel, cache_dir, resolve_model

__all__ = [
    "LoadedModel",
    "ModelResolutionError",
    "ResolvedModel",
    "attach_adapter",
    "cache_dir",
    "default_dtype",
    "load_base",
    "load_tokenizer",
    "resolve_model",
    "select_device",
]
