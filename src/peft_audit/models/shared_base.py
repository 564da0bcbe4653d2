"""One loaded base model serving a group of variants of one PEFT type: their adapters attached
to it by name, and for LoRA the base model itself, whose generation requests share batches.

Why: in a sweep every variant of a base asks the same prompts with the same settings. Run one
after another, each variant decodes its own small batch, and on hardware where a decoding step
is bound by reading the weights (every GPU, and this project's CPUs below ~100 rows), a batch
of 11 rows costs almost what a batch of 55 does. Here the base is loaded once, every member's
adapter is attached to it under the member's name, and the first member to ask for a set of
prompts gets them generated for every member still to be evaluated, in mixed batches
(:func:`~peft_audit.models.generate.generate` with ``adapter_names``: LoRA rows each with its
own adapter's update, IA3 rows each scaled by its own adapter's vectors, prompt-tuning,
P-tuning and prefix-tuning rows each with its own adapter's head); the others find their
answers waiting when they ask for the same prompts. Everything else a member does (BBQ
scoring, judging) runs on the same loaded model with only that member's adapter active.

Each row is computed as its variant alone would compute it: the base layer's output plus that
row's own adapter's update (or scaled by its own vectors), or the base model after that row's
own virtual tokens or prefix;
a shared system turn is encoded once per adapter (``tests/models/test_mixed_batches.py``
checks the tokens against one-variant-at-a-time generation). Only float summation can differ
where the batch shape differs, as with any change of batch size.

A mixed batch's time is split between its members in proportion to the new tokens of their
rows (:meth:`SharedBase.take_shift`): the member whose call ran it gives the others' shares
away, and each of them is charged its share when it takes its answers, so every member's
generation stage, wall time and the sweep's ETA read as that variant's own work.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol
from pathlib import Path

from .forward import peft_type
from .generate import BASE_ROWS, LAYER_TYPES, MIXABLE_TYPES, Generation, generate, mixed_batch_reason
from .load import LoadedModel, load_base


class GroupEngine(Protocol):
    """Generates a whole group's rows in one call (:attr:`SharedBase.engine`)."""

    def generate_group(self, adapters: list[str | None], prompts: list[str], *, system_prompt: str | None,
                       max_new_tokens: int, progress: Callable[[int], None]) -> list[Generation]:
        """Answers to ``prompts`` with each adapter directory of ``adapters`` (None: the base
        model), adapter-major: ``len(adapters) * len(prompts)`` answers; ``progress`` counts rows."""
        ...


class SharedBase:
    """A base model loaded once, with the adapters of a group's members attached (one PEFT type).

    ``add(vid, adapter_dir)`` attaches a member (``adapter_dir`` None for the base model itself,
    which joins LoRA or IA3 groups only) and returns None, or the reason it cannot join (then the
    member runs on its own). ``model_for(vid)`` is the model a member's benchmarks run on: only
    its adapter active (the base member: every adapter off). ``generate(vid, ...)`` is the
    member's :meth:`~peft_audit.benchmarks.base.VariantRun.generate`. ``release(vid)`` ends a
    member's evaluation (finished or failed): later mixed batches leave it out.
    """

    def __init__(self, loaded: LoadedModel, load_seconds: float = 0.0):
        self.loaded = loaded
        self._unbilled = load_seconds
        self.peft_model = None  # the PeftModel, once the first adapter is attached
        self.kind: str | None = None  # the PEFT type of the attached adapters
        self.members: dict[str, str] = {}  # variant id -> its row name in mixed batches
        self.live: list[str] = []  # members still to be evaluated, in order
        # prompts and settings -> member -> (its answers, its share of the batch's seconds)
        self._answers: dict[tuple, dict[str, tuple[list[Generation], float]]] = {}
        self._shift: dict[str, float] = {}  # member -> seconds its timed stage is off by
        self.adapter_dirs: dict[str, str | None] = {}  # row name -> its adapter directory (None: the base)
        #: generates a group's rows itself when set (the vLLM backend's multi-LoRA engine,
        #: :class:`peft_audit.models.backends.vllm.VllmGroupEngine`); None: mixed transformers batches
        self.engine: GroupEngine | None = None

    @classmethod
    def load(cls, name: str, *, device: str, dtype: str = "auto", trust_remote_code: bool = False) -> "SharedBase":
        t0 = time.perf_counter()
        loaded = load_base(name, device=device, dtype=dtype, trust_remote_code=trust_remote_code)
        return cls(loaded, time.perf_counter() - t0)

    def bill_load(self) -> float:
        """The seconds loading the base took, once (to the first member that asks), then 0."""
        seconds, self._unbilled = self._unbilled, 0.0
        return seconds

    @property
    def mixing(self) -> bool:
        return self.kind in MIXABLE_TYPES

    def add(self, vid: str, adapter_dir: str | Path | None) -> str | None:
        if adapter_dir is None:
            if self.kind not in (None, *LAYER_TYPES):
                return "the base model shares batches with LoRA or IA3 variants only"
            self.members[vid] = BASE_ROWS
            self.adapter_dirs[BASE_ROWS] = None
            self.live.append(vid)
            return None
        name = f"variant-{vid}"
        from peft import PeftModel

        first = self.peft_model is None
        try:
            if first:
                model = PeftModel.from_pretrained(self.loaded.model, str(adapter_dir), adapter_name=name,
                                                  is_trainable=False)
            else:
                self.peft_model.load_adapter(str(adapter_dir), adapter_name=name, is_trainable=False)
                model = self.peft_model
        except Exception as e:  # a config the loaded ones cannot sit beside, a damaged file, ...:
            # the member then loads on its own, and a real error is recorded on it there
            return f"its adapter does not load beside the group's ({type(e).__name__}: {e})"
        kind = peft_type(model) if first else self.kind
        if kind in MIXABLE_TYPES:
            reason = mixed_batch_reason(model, {*self.members.values(), name})
        else:
            reason = f"{kind} adapters are not evaluated on a shared base"
        if reason is not None:
            if first and kind in LAYER_TYPES:
                model.unload()  # takes the adapter's layers out of the base again
            elif not first:
                model.delete_adapter(name)
            return reason
        model.eval()
        self.peft_model, self.kind = model, kind
        self.members[vid] = name
        self.adapter_dirs[name] = str(adapter_dir)
        self.live.append(vid)
        return None

    def model_for(self, vid: str):
        """The model member ``vid`` is evaluated on: the PEFT model with only its adapter
        active, or for the base member the transformer with every adapter layer switched off."""
        name = self.members[vid]
        if self.peft_model is None:
            return self.loaded.model
        tuner = self.kind in LAYER_TYPES  # adapters inside the layers, which can be switched off
        if name == BASE_ROWS:
            self.peft_model.base_model.disable_adapter_layers()
            return self.peft_model.get_base_model()
        if tuner:
            self.peft_model.base_model.enable_adapter_layers()
        self.peft_model.set_adapter(name, inference_mode=True)
        return self.peft_model

    def generate(self, vid: str, prompts: list[str], *, system_prompt: str | None = None, max_new_tokens: int = 256,
                 batch_size: int | str = "auto", progress: Callable[[int], None] | None = None,
                 **_: object) -> list[Generation]:
        """Member ``vid``'s answers to ``prompts``: generated now for every live member in mixed
        batches, or taken from such a batch an earlier member ran."""
        key = (tuple(prompts), system_prompt, max_new_tokens)
        waiting = self._answers.get(key, {})
        if vid in waiting:
            answers, seconds = waiting.pop(vid)
            self._shift[vid] = self._shift.get(vid, 0.0) + seconds
            if progress is not None and prompts:
                progress(len(prompts))
            return answers
        group = [vid] + [m for m in self.live if m != vid]
        if self.engine is None and (not self.mixing or len(group) == 1):
            model = self.model_for(vid)
            return generate(model, self.loaded.tokenizer, prompts, system_prompt=system_prompt,
                            max_new_tokens=max_new_tokens, batch_size=batch_size, progress=progress)
        done = [0]

        def own_share(n: int) -> None:  # the caller's progress bar counts its own prompts
            before = done[0] // len(group)
            done[0] += n
            if progress is not None and done[0] // len(group) > before:
                progress(done[0] // len(group) - before)

        t0 = time.perf_counter()
        if self.engine is not None:
            out = self.engine.generate_group([self.adapter_dirs[self.members[m]] for m in group], prompts,
                                             system_prompt=system_prompt, max_new_tokens=max_new_tokens,
                                             progress=own_share)
        else:
            out = self._mixed_batches(vid, group, prompts, system_prompt=system_prompt,
                                      max_new_tokens=max_new_tokens, batch_size=batch_size, progress=own_share)
        n = len(prompts)
        shares = _shares(time.perf_counter() - t0, [out[k * n:(k + 1) * n] for k in range(len(group))])
        self._answers.setdefault(key, {}).update({m: (out[k * n:(k + 1) * n], shares[k])
                                                  for k, m in enumerate(group) if k})
        self._shift[vid] = self._shift.get(vid, 0.0) - sum(shares[1:])
        return out[:n]

    def _mixed_batches(self, vid: str, group: list[str], prompts: list[str], *, system_prompt: str | None,
                       max_new_tokens: int, batch_size: int | str, progress: Callable[[int], None]) -> list[Generation]:
        """Every member of ``group``'s answers to ``prompts``, group-major, in mixed transformers batches."""
        names = [self.members[m] for m in group for _ in prompts]
        # a number fixes the rows of one variant's batch: the group's batches hold that many per member
        rows = batch_size * len(group) if isinstance(batch_size, int) else batch_size
        # the PEFT model, with the adapters of a LoRA or IA3 group switched on (the base member's are off)
        model = self.model_for(next(m for m in group if self.members[m] != BASE_ROWS))
        try:
            return generate(model, self.loaded.tokenizer, list(prompts) * len(group), system_prompt=system_prompt,
                            max_new_tokens=max_new_tokens, batch_size=rows, progress=progress, adapter_names=names)
        finally:
            self.model_for(vid)  # the caller's adapter state, as before the call

    def take_shift(self, vid: str) -> float:
        """Seconds to add to the stage that timed member ``vid``'s ``generate`` calls since the
        last take (negative for a member that ran a mixed batch: the other members' shares),
        then 0 until its next call."""
        return self._shift.pop(vid, 0.0)

    def release(self, vid: str) -> None:
        if vid in self.live:
            self.live.remove(vid)
        for waiting in self._answers.values():
            waiting.pop(vid, None)


def _shares(seconds: float, answers: list[list[Generation]]) -> list[float]:
    """``seconds`` of a mixed batch split between its members (``answers``: each member's) in
    proportion to their new tokens (evenly when there were none): a decoding step costs about
    the same per row, and a row stays in the batch for as many steps as it has new tokens."""
    tokens = [sum(g.n_new_tokens for g in a) for a in answers]
    total = sum(tokens)
    if total == 0:
        return [seconds / len(answers)] * len(answers)
    return [seconds * t / total for t in tokens]
