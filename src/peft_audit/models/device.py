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
    """bf16 on CUDA GPUs that support it, float32 elsewhere (CPU bf16 matmuls are slow here)."""
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32
