"""The transformers backend: the project's own generation and scoring paths on a loaded PEFT or
base model, on the CPU or a GPU (:func:`peft_audit.models.generate.generate`,
:func:`peft_audit.models.scoring.score_continuations`).

A variant is loaded on its own (:func:`peft_audit.models.load.load_base` plus its adapter), or is
a member of a group's shared base (:class:`~peft_audit.models.shared_base.SharedBase`): then its
generation requests share mixed-adapter batches with the group's other members, and everything
else runs on the shared model with only its adapter active. ``compile`` (CUDA) decodes with a
static KV cache and compiled steps.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from .base import BackendSettings, BatchSize, Generation, Progress

if TYPE_CHECKING:
    from ..shared_base import SharedBase


class TransformersModel:
    """A :class:`~.base.LanguageModel` over a loaded model and its tokenizer; with ``shared``, as
    member ``member`` of that group (its generation goes through the group's mixed batches)."""

    def __init__(self, model, tokenizer, *, compiled: bool = False, shared: "SharedBase | None" = None,
                 member: str | None = None):
        self.model, self.tokenizer, self.compiled = model, tokenizer, compiled
        self.shared, self.member = shared, member
        self._shift = 0.0

    def generate(self, prompts: Sequence[str], *, system_prompt: str | None = None, max_new_tokens: int = 256,
                 batch_size: BatchSize = "auto", progress: Progress = None) -> list[Generation]:
        from ..generate import generate

        if self.shared is not None:
            answers = self.shared.generate(self.member, list(prompts), system_prompt=system_prompt,
                                           max_new_tokens=max_new_tokens, batch_size=batch_size, progress=progress)
            self._shift += self.shared.take_shift(self.member)  # its share of a mixed batch
            return answers
        return generate(self.model, self.tokenizer, list(prompts), system_prompt=system_prompt,
                        max_new_tokens=max_new_tokens, batch_size=batch_size, progress=progress,
                        compiled=self.compiled)

    def complete(self, prompts: Sequence[str], *, max_new_tokens: int, add_special_tokens: bool = True,
                 batch_size: BatchSize = "auto") -> list[Generation]:
        from ..generate import generate_from_ids

        encoded = [list(self.tokenizer(p, add_special_tokens=add_special_tokens)["input_ids"]) for p in prompts]
        return generate_from_ids(self.model, self.tokenizer, encoded, max_new_tokens=max_new_tokens,
                                 batch_size=batch_size)

    def loglikelihood(self, prompts: Sequence[str], continuations: Sequence[Sequence[str]], *,
                      batch_size: BatchSize = "auto", add_special_tokens: bool = True,
                      progress: Progress = None) -> list[list[float]]:
        from ..scoring import score_continuations

        return score_continuations(self.model, self.tokenizer, list(prompts), [list(c) for c in continuations],
                                   batch_size=batch_size, progress=progress, add_special_tokens=add_special_tokens)

    def token_counts(self, prompts: Sequence[str], continuations: Sequence[Sequence[str]], *,
                     add_special_tokens: bool = True) -> list[list[int]]:
        from ..scoring import encode_pairs

        pairs = encode_pairs(self.tokenizer, list(prompts), [list(c) for c in continuations], add_special_tokens)
        return [[len(c) for c in cs] for _, cs in pairs]

    @property
    def has_chat_template(self) -> bool:
        return bool(getattr(self.tokenizer, "chat_template", None))

    def apply_chat_template(self, messages: Sequence[dict], *, add_generation_prompt: bool = True) -> str:
        return self.tokenizer.apply_chat_template(list(messages), tokenize=False,
                                                  add_generation_prompt=add_generation_prompt)

    def first_overlong(self, prompts: Sequence[str], *, system_prompt: str | None,
                       max_new_tokens: int) -> tuple[int, int, int] | None:
        from ..generate import first_overlong

        return first_overlong(self.model, self.tokenizer, list(prompts), system_prompt=system_prompt,
                              max_new_tokens=max_new_tokens)

    def take_time_shift(self) -> float:
        shift, self._shift = self._shift, 0.0
        return shift

    def close(self) -> None:
        self.model = self.tokenizer = self.shared = None


class TransformersBackend:
    """Loads each variant with transformers and PEFT; keeps nothing between variants."""

    #: the groups of :mod:`peft_audit.sweep.groups` this backend evaluates on a shared base (all:
    #: LoRA with the base model, IA3, prompt tuning, P-tuning, prefix tuning)
    SHARED_FAMILIES = frozenset({"lora", "ia3", "prompt-tuning", "p-tuning", "prefix-tuning"})

    def __init__(self, settings: BackendSettings):
        self.settings = settings

    def load(self, base_model: str, adapter: Path | None = None, *, shared: "SharedBase | None" = None,
             member: str | None = None) -> TransformersModel:
        if shared is not None:
            return TransformersModel(shared.model_for(member), shared.loaded.tokenizer, compiled=self.settings.compile,
                                     shared=shared, member=member)
        from ..load import attach_adapter, load_base

        s = self.settings
        loaded = load_base(base_model, device=s.device, dtype=s.dtype, trust_remote_code=s.trust_remote_code)
        if adapter is not None:
            loaded = attach_adapter(loaded, adapter)
        return TransformersModel(loaded.model, loaded.tokenizer, compiled=s.compile)

    def close(self) -> None:
        pass
