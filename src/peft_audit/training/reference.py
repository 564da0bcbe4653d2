"""DPO's reference log-probabilities, computed once per batch and shared by the variants a worker trains.

DPO (Rafailov et al., 2023, Eq. 7) compares the policy's log-probabilities with the reference
model's; with a PEFT adapter the reference is the base itself, the adapter disabled (TRL's
``use_adapter(model, None)``). So every DPO variant of one base sees the same reference for the
same batch, and variants that share a seed and training data see the same batches: a sweep's
LoRA, IA3, prompt-tuning and P-tuning DPO variants at several learning rates compute the same
reference forward passes again and again (a quarter of a DPO step's compute: one forward pass
against the policy's forward and backward).

:func:`shared_reference` wraps TRL's reference forward pass during ``trainer.train()``: its
output's per-token log-probs are kept in this process, keyed by the base (checkpoint
fingerprint, dtype, device), TRL's labelled-positions and dropout settings and the exact bytes
of every input tensor; a later call with the same key gets a copy instead of a forward pass. Nothing else
changes, so a variant's adapter is bit for bit the one it would be without sharing (tested),
unlike TRL's ``precompute_ref_log_probs``, which computes the reference in batches of its own
(other padding, so other rounding).

It stays out of the way where sharing could change results: a reference forward pass that draws
random numbers (dropout left on in the base) is never reused, because skipping it would shift
every later random draw; quantised bases, other devices than the CPU and a TRL whose DPO loss
computes the reference differently (checked in its source) run TRL's own code.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import inspect
from collections import OrderedDict
from types import SimpleNamespace

import torch

#: Reference log-probs kept per process (a few KB each), least recently used dropped first.
MAX_ENTRIES = 4096
_cache: "OrderedDict[str, torch.Tensor]" = OrderedDict()

# What TRL's DPOTrainer._compute_loss must do for the wrapper to be exact: one reference forward
# inside use_adapter, of which only the per-token log-probs are read.
_SOURCE_MARKERS = (
    "with use_adapter(",
    "ref_outputs = self.model(**ref_model_kwargs, labels=labels, fused_lm_head=True)",
    "ref_per_token_logps = ref_outputs.log_probs[:, -seq_len:]",
)


@functools.cache
def _trl_dpo_module():
    """TRL's ``dpo_trainer`` module if its DPO loss computes the reference as this module
    expects (see ``_SOURCE_MARKERS``); None otherwise."""
    try:
        from trl.trainer import dpo_trainer

        source = inspect.getsource(dpo_trainer.DPOTrainer._compute_loss)
    except (ImportError, OSError, TypeError, AttributeError):
        return None
    if not callable(getattr(dpo_trainer, "use_adapter", None)) or source.count("use_adapter(") != 1:
        return None
    if not all(marker in source for marker in _SOURCE_MARKERS):
        return None
    if source.count("ref_outputs.") != source.count("ref_outputs.log_probs"):
        return None  # TRL reads more of the reference's output than its log-probs
    return dpo_trainer


def _input_key(base: str, args: tuple, kwargs: dict) -> str | None:
    """A digest of the base and every input of a reference forward call; None if an input is of a
    kind this cannot hash (the call then runs as usual)."""
    if args:
        return None
    digest = hashlib.sha256(base.encode())
    for name in sorted(kwargs):
        value = kwargs[name]
        digest.update(name.encode())
        if isinstance(value, torch.Tensor):
            tensor = value.detach().cpu().contiguous()
            digest.update(f"{tensor.dtype}{tuple(tensor.shape)}".encode())
            digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
        elif value is None or isinstance(value, (bool, int, float, str)):
            digest.update(repr(value).encode())
        else:
            return None
    return digest.hexdigest()


def _labelled_positions_only(device: torch.device) -> bool:
    from trl.trainer import utils as trl_utils

    switch = getattr(trl_utils, "_use_triton", None)
    return bool(switch(device)) if callable(switch) else False


@contextlib.contextmanager
def shared_reference(model, base: str, *, dropout_disabled: bool):
    """Within the block (a DPO ``trainer.train()`` of a PEFT ``model``), TRL's reference forward
    passes are shared through this process's cache (see the module docstring). ``base`` names
    the base's weights: its checkpoint fingerprint, as provenance records it.
    ``dropout_disabled``: the trainer's ``disable_dropout``, part of the key, so a run whose
    reference pass might draw random numbers never takes an entry stored by one that did not."""
    dpo_trainer = _trl_dpo_module()
    embeddings = getattr(model, "get_input_embeddings", lambda: None)()
    param = getattr(embeddings, "weight", None)  # the base's own dtype and device
    if (dpo_trainer is None or param is None or param.device.type != "cpu"
            or getattr(model, "is_loaded_in_4bit", False) or getattr(model, "is_loaded_in_8bit", False)):
        yield
        return
    original = dpo_trainer.use_adapter
    draws_random = False

    @contextlib.contextmanager
    def use_adapter(peft_model, adapter_name):
        with original(peft_model, adapter_name):
            if adapter_name is not None or draws_random:  # a named "ref" adapter: not the base
                yield
                return
            shadowed = vars(peft_model).get("forward")  # PEFT's disable_adapter may set one
            call = peft_model.forward
            prefix = (f"{base}|{param.dtype}|{param.device}|{_labelled_positions_only(param.device)}"
                      f"|{dropout_disabled}")

            def forward(*args, **kwargs):
                nonlocal draws_random
                key = None if draws_random else _input_key(prefix, args, kwargs)
                if key is not None and key in _cache:
                    _cache.move_to_end(key)
                    return SimpleNamespace(log_probs=_cache[key].clone())
                state = torch.get_rng_state()
                out = call(*args, **kwargs)
                if not torch.equal(state, torch.get_rng_state()):
                    draws_random = True  # skipping such a pass would shift every later draw
                elif key is not None:
                    _cache[key] = out.log_probs.detach().clone()
                    while len(_cache) > MAX_ENTRIES:
                        _cache.popitem(last=False)
                return out

            peft_model.forward = forward
            try:
                yield
            finally:
                if shadowed is None:
                    vars(peft_model).pop("forward", None)
                else:
                    peft_model.forward = shadowed

    dpo_trainer.use_adapter = use_adapter
    try:
        yield
    finally:
        dpo_trainer.use_adapter = original
