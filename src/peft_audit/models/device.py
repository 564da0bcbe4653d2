"""Pick the torch device and dtype: CUDA (bf16 where supported) > Apple MPS > CPU."""

from __future__ import annotations

import torch


def select_device(requested: str = "auto") -> torch.device:
    """``auto`` picks CUDA, then MPS, then CPU; anything else is passed to ``torch.device``
    after checking it is available (a clear error rather than a crash deep inside a kernel)."""
    if requested == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    dev = torch.device(requested)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {requested!r} requested but CUDA is not available; use --device cpu or auto")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError(f"device {requested!r} requested but Apple MPS is not available")
    return dev


def default_dtype(device: torch.device) -> torch.dtype:
    """bf16 on CUDA GPUs that support it, float32 elsewhere: on a CPU, float32 keeps every
    result exact and reproducible across machines. CPUs with AVX512-BF16 or AMX multiply bf16
    matrices faster (2-2.5x on this project's 2-core EPYC, ``perf/generation_throughput.py
    --dtype bfloat16``); the sweep's ``eval_dtype`` chooses it (:func:`resolve_dtype`)."""
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


#: ``eval_dtype`` values other than ``auto`` and their torch dtypes.
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_dtype(name: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """The torch dtype a sweep's ``eval_dtype`` (``auto``, ``float32``, ``bfloat16``, ``float16``)
    names on ``device``: ``auto`` (or None) is :func:`default_dtype`. A dtype the device cannot
    compute in is a ValueError that says what to set instead."""
    if isinstance(name, torch.dtype):
        return name
    if name in (None, "auto"):
        return default_dtype(device)
    if name not in DTYPES:
        raise ValueError(f"eval_dtype must be auto, {', '.join(DTYPES)}; got {name!r}")
    if name == "bfloat16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError("eval_dtype bfloat16: this CUDA GPU has no bfloat16; set eval_dtype: float16 or auto")
    return DTYPES[name]
