"""PEFT methods: one module per method, registered once in :data:`METHOD_MODULES`.

Each module exposes ``PROMPT_LEARNING`` (prepends virtual tokens / prefixes), ``DEFAULTS``
(method arguments and their default values; ``None`` means chosen per architecture),
``DEFAULT_LR`` (a suggested learning rate) and ``build(model, args, tokenizer) -> PeftConfig``.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from . import ia3, lora, p_tuning, prefix_tuning, prompt_tuning

METHOD_MODULES: dict[str, ModuleType] = {
    "lora": lora,
    "ia3": ia3,
    "prompt-tuning": prompt_tuning,
    "p-tuning": p_tuning,
    "prefix-tuning": prefix_tuning,
}

#: PEFT methods the tool can train and evaluate, in registry order. ``base`` (the un-adapted
#: base model) is not a method.
METHODS: tuple[str, ...] = tuple(METHOD_MODULES)


def method_module(method: str) -> ModuleType:
    """The module of ``method``; ValueError naming the valid methods if unknown."""
    try:
        return METHOD_MODULES[method]
    except KeyError:
        raise ValueError(f"unknown PEFT method {method!r}; valid: {', '.join(METHOD_MODULES)}") from None


def is_prompt_learning(method: str) -> bool:
    """True for soft-prompt / prefix methods. Also accepts PEFT's underscore spelling
    (``prompt_tuning``), as found in adapter configs; ValueError for an unknown method."""
    return bool(method_module(method.replace("_", "-")).PROMPT_LEARNING)


def _coerce(method: str, key: str, value: Any, default: Any) -> Any:
    """Turn CLI strings (``key=value``) into the type of the default; lists from comma lists."""
    if key.endswith("modules"):
        if isinstance(value, str):
            if value == "all-linear":
                return value
            return [v.strip() for v in value.split(",") if v.strip()]
        if value is None or isinstance(value, list | tuple):
            return list(value) if value is not None else None
        raise ValueError(f"{method} {key} must be a list or a comma-separated string, got {value!r}")
    if default is None or isinstance(default, str) or not isinstance(value, str):
        if isinstance(default, int | float) and not isinstance(default, bool) and not isinstance(value, int | float):
            raise ValueError(f"{method} {key} must be a number, got {value!r}")
        return value
    try:
        return type(default)(value)
    except ValueError:
        raise ValueError(f"{method} {key} must be a {type(default).__name__}, got {value!r}") from None


def resolve_method_args(method: str, args: dict[str, Any] | None) -> dict[str, Any]:
    """Defaults of ``method`` overlaid with ``args`` (coerced); ValueError on an unknown key."""
    module = method_module(method)
    merged = dict(module.DEFAULTS)
    for key, value in (args or {}).items():
        if key not in module.DEFAULTS:
            raise ValueError(
                f"unknown argument {key!r} for PEFT method {method}; valid: {', '.join(module.DEFAULTS)}"
            )
        merged[key] = _coerce(method, key, value, module.DEFAULTS[key])
    return merged


def build_peft_config(method: str, model, args: dict[str, Any], *, tokenizer=None):
    """A ``peft.PeftConfig`` for ``method`` on ``model``'s architecture with ``args`` overriding the
    defaults. Unknown method or argument -> ValueError naming the valid choices."""
    return method_module(method).build(model, resolve_method_args(method, args), tokenizer)


def trainable_parameters(model) -> tuple[int, int]:
    """(trainable, total) parameter counts of ``model`` (elements, not bytes)."""
    trainable = total = 0
    for p in model.parameters():
        n = p.numel()
        total += n
        if p.requires_grad:
            trainable += n
    return trainable, total


__all__ = [
    "METHODS",
    "METHOD_MODULES",
    "build_peft_config",
    "is_prompt_learning",
    "method_module",
    "resolve_method_args",
    "trainable_parameters",
]
