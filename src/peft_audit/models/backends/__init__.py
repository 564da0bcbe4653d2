"""Backend registry: one line per backend, ``name -> "module:class"`` under this package, imported
only when a worker builds that backend (:func:`build_backend`). A new backend is one module
implementing :class:`.base.Backend` (and the :class:`.base.LanguageModel` it loads) plus one
line here; the sweep file's ``backend`` accepts every name listed.
"""

from __future__ import annotations

from importlib import import_module

from .base import Backend, BackendSettings, Generation, LanguageModel

BACKENDS: dict[str, str] = {
    "transformers": ".transformers:TransformersBackend",
    "vllm": ".vllm:VllmBackend",
}

__all__ = ["BACKENDS", "Backend", "BackendSettings", "Generation", "LanguageModel", "backend_class",
           "build_backend", "check_backend", "registered"]


def registered(name: str) -> str:
    """``name`` if a backend is registered under it; ValueError naming the valid ones otherwise
    (nothing is imported: the sweep file's check uses it)."""
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; valid: {', '.join(BACKENDS)}")
    return name


def backend_class(name: str) -> type:
    """The class registered as ``name`` (:func:`registered`'s error for an unknown name)."""
    module, _, cls = BACKENDS[registered(name)].partition(":")
    return getattr(import_module(module, __name__), cls)


def check_backend(name: str) -> None:
    """Raise, before any model loads, what building backend ``name`` would raise for lack of its
    libraries (vLLM not installed, with how to install it)."""
    check = getattr(backend_class(name), "check", None)
    if check is not None:
        check()


def build_backend(settings: BackendSettings) -> Backend:
    """The backend ``settings.name`` names, built from ``settings`` (a worker does this once)."""
    return backend_class(settings.name)(settings)
