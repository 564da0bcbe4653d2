"""Linear weights pre-packed for oneDNN while a CPU model generates or scores.

``torch.nn.functional.linear`` hands a CPU fp32 matmul to MKL's ``sgemm`` with the weight in its
``[out, in]`` layout, copied into the kernel's blocked panels on every call. A decode step
multiplies a few dozen to a few hundred rows by each weight once, so that copy, and streaming the
weight from memory in a layout the kernel does not read in order, dominate: on this project's
2-core AVX-512 EPYC, the bundled model's 210 projection matrices ran at 74 GFLOP/s for 30 rows
and 119 for 135, against ~190 for a large matmul. oneDNN's inner-product primitive with the
weight reordered once into its blocked layout (``torch.ops.mkldnn._reorder_linear_weight``, the
reorder PyTorch's own Inductor applies to frozen CPU linears,
``torch/_inductor/fx_passes/mkldnn_fusion.py``) ran the same matrices at 148 and 187 GFLOP/s,
and bfloat16 ones 1.1-1.6x faster than plain bfloat16
(``perf/generation_throughput.py`` measures the effect on generation; numbers issue #13).

The packed copy is made the first time a module is used this way and kept for as long as the
module lives (and, through :func:`remember_origin`, for the next load of the same checkpoint).
Each block checks that the weight is the one packed: same storage, same version counter (an
in-place update) and same values at 64 sampled places (PEFT's ``merge`` writes through
``weight.data``, which leaves the version counter alone); a changed weight is packed again. It
costs one more copy of each packed weight in memory, so packing is skipped when those copies
would take more than :data:`MEMORY_SHARE` of the memory available (the model then keeps plain
kernels).

Only exact ``torch.nn.Linear`` modules on the CPU, in float32 or bfloat16, with at least
:data:`MIN_ELEMENTS` weights (LoRA's rank-r matrices stay plain) are packed, and used only
where no gradient is needed: training keeps plain kernels (packing the frozen base and its
transpose for the backward pass left a sweep12 variant's training time unchanged, 5.95 s vs
5.91 s). Results equal
plain ``F.linear``'s up to float summation order (~2e-6 on a 576-wide fp32 product), the same
tolerance as a change of batch size. Whether packed or plain kernels are faster depends on the
CPU: :mod:`.kernels` measures it on first use (and says how to override it, e.g.
``PEFT_AUDIT_PACKED_WEIGHTS=0`` to reproduce a version without packing bit for bit).
"""

from __future__ import annotations

import contextlib
import functools
import weakref
from dataclasses import dataclass

import torch

from . import kernels
from .batching import free_memory

#: The environment variable that overrides the measured choice of kernels (:mod:`.kernels`).
DISABLE_ENV = kernels.ENV
#: Smallest weight (elements) worth packing: a rank-8 LoRA matrix of a 576-wide model has 4,608.
MIN_ELEMENTS = 1 << 16
#: Largest share of available memory the packed copies may take.
MEMORY_SHARE = 0.5
_DTYPES = (torch.float32, torch.bfloat16)


@dataclass
class _Packed:
    key: tuple[int, int]  # the weight's storage pointer and version counter when packed
    sample: torch.Tensor  # a strided sample of the weight's values when packed
    weight: torch.Tensor  # the weight, reordered for oneDNN


# module -> its packed weights; an entry goes with its module
_packed: "weakref.WeakKeyDictionary[torch.nn.Linear, _Packed]" = weakref.WeakKeyDictionary()
# module -> (the checkpoint it was loaded from, its name there, its weight's version then)
_origins: "weakref.WeakKeyDictionary[torch.nn.Linear, tuple[str, str, int]]" = weakref.WeakKeyDictionary()
# (checkpoint, module name) -> packed weights, for the last checkpoint loaded only
_by_origin: dict[tuple[str, str], _Packed] = {}


def enabled(dtype: torch.dtype = torch.float32) -> bool:
    """Whether weights in ``dtype`` are packed: the ops exist in this torch and packed kernels are
    the choice for ``dtype`` on this machine (:func:`.kernels.packed`: configured, or measured)."""
    return kernels.packed(dtype).use


def _eligible(module: torch.nn.Module) -> bool:
    weight = getattr(module, "weight", None)
    bias = getattr(module, "bias", None)
    return (type(module) is torch.nn.Linear and isinstance(weight, torch.Tensor) and weight.dim() == 2
            and (bias is None or bias.dtype == weight.dtype)
            and weight.device.type == "cpu" and weight.dtype in _DTYPES and weight.numel() >= MIN_ELEMENTS)


def _key(weight: torch.Tensor) -> tuple[int, int]:
    return weight.data_ptr(), weight._version


def _sample(weight: torch.Tensor) -> torch.Tensor:
    """64 values spread over the weight: an update through ``.data`` (PEFT's ``merge``: ``weight.data
    += delta``) changes them without touching the version counter."""
    flat = weight.detach().reshape(-1)
    return flat[:: max(1, flat.numel() // 64)].clone()


def _valid(entry: _Packed | None, weight: torch.Tensor, key: tuple[int, int] | None) -> bool:
    """Whether ``entry`` packs ``weight`` as it is now (``key``: also the same storage and version)."""
    return (entry is not None and (key is None or entry.key == key) and entry.weight.shape == weight.shape
            and entry.weight.dtype == weight.dtype and torch.equal(entry.sample, _sample(weight)))


def remember_origin(model: torch.nn.Module, checkpoint: str) -> None:
    """Note that ``model``'s weights are as loaded from ``checkpoint`` (a string that names the
    files and the dtype), so a later load of the same checkpoint in this process reuses their
    packed copies: a sweep worker loads its base once per variant, and packing the bundled model
    takes ~0.15 s. Only the last checkpoint's copies are kept. A weight changed since loading
    (version counter or sampled values) is packed afresh. Only notes: no kernels are chosen here."""
    if not kernels.available():
        return
    if any(origin != checkpoint for origin, _ in _by_origin):
        _by_origin.clear()
    for name, module in model.named_modules():
        if _eligible(module):
            _origins[module] = (checkpoint, name, module.weight._version)


def _pack(module: torch.nn.Linear) -> _Packed:
    """The module's packed weight as it is now: its own cached copy, the copy of the checkpoint
    it was loaded from, or a new one."""
    weight = module.weight
    entry = _packed.get(module)
    if _valid(entry, weight, _key(weight)):
        return entry
    origin = _origins.get(module)
    pristine = origin is not None and origin[2] == weight._version
    shared = _by_origin.get(origin[:2]) if pristine else None
    if _valid(shared, weight, None):
        entry = _Packed(_key(weight), shared.sample, shared.weight)
    else:
        entry = _Packed(_key(weight), _sample(weight), kernels.reorder(weight))
        if pristine:
            _by_origin[origin[:2]] = entry
    _packed[module] = entry
    return entry


def _forward(module: torch.nn.Linear, entry: _Packed, x: torch.Tensor) -> torch.Tensor:
    weight, bias = module.weight, module.bias
    if (entry.key != _key(weight) or x.dtype != weight.dtype or x.device.type != "cpu"
            or x.numel() == 0 or (torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad
                                                                or (bias is not None and bias.requires_grad)))):
        return torch.nn.functional.linear(x, weight, bias)  # stale, training or unusual: plain
    return kernels.packed_linear(x, entry.weight, bias)


def _fits(modules: list[torch.nn.Linear]) -> bool:
    needed = sum(m.weight.numel() * m.weight.element_size() for m in modules if m not in _packed)
    return not needed or needed <= MEMORY_SHARE * free_memory(torch.device("cpu"))


@contextlib.contextmanager
def packed_linears(model: torch.nn.Module):
    """Within the block, ``model``'s eligible linear layers (see the module docstring) multiply
    with packed weights whenever autograd is off; on exit they are plain modules again (the
    packed copies stay cached for the next block). Nested blocks leave an outer block's layers
    to it. Does nothing where plain kernels are the choice for the weights' dtype
    (:mod:`.kernels`), the ops are missing or the copies would not fit."""
    if not kernels.available():
        yield
        return
    modules = [m for m in model.modules() if _eligible(m) and "forward" not in vars(m)]
    packed_dtypes = {dtype for dtype in {m.weight.dtype for m in modules} if enabled(dtype)}
    modules = [m for m in modules if m.weight.dtype in packed_dtypes]
    if not modules or not _fits(modules):
        yield
        return
    patched: list[torch.nn.Linear] = []
    try:
        for module in modules:
            # an instance attribute shadows nn.Linear.forward; hooks still run around it
            module.forward = functools.partial(_forward, module, _pack(module))
            patched.append(module)
        yield
    finally:
        for module in patched:
            vars(module).pop("forward", None)
