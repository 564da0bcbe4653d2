"""The seam between benchmarks and models: what a benchmark may ask of a variant, and what a
worker builds once to answer it.

The contract is lm-evaluation-harness's three requests (``lm_eval.api.model.LM``:
``generate_until``, ``loglikelihood``, and releasing the model), fitted to what this project's
benchmarks send:

* :meth:`LanguageModel.generate`: greedy chat completions of user prompts (after an optional
  system turn), each up to ``max_new_tokens`` new tokens or the model's stop token;
* :meth:`LanguageModel.loglikelihood`: the summed log-probability (nats) of each continuation
  after its prompt, teacher-forced (lm-eval's ``loglikelihood``, several continuations per
  prompt so that a shared prompt is computed once), and :meth:`LanguageModel.token_counts`,
  the number of tokens each continuation is scored over (a per-token loss needs it);
* :meth:`LanguageModel.complete`: greedy continuations of raw text (lm-eval's ``generate_until``
  on a context as given: a judge's classifier prompt, which carries its own template);
* :meth:`LanguageModel.close`.

A benchmark also renders chat templates (:meth:`LanguageModel.apply_chat_template`, as lm-eval's
``LM.apply_chat_template``) and, before it generates, checks that its prompts fit the model's
context (:meth:`LanguageModel.first_overlong`).

A :class:`Backend` is built once per worker process (:mod:`peft_audit.sweep.resources`) from
the run's :class:`BackendSettings`; it loads each variant (:meth:`Backend.load`) and keeps what
is worth keeping between variants (vLLM's engine per base model) until the worker closes it.
Implementations: :mod:`.transformers` (CPU and GPU, the shared-base groups' mixed-adapter
batches) and :mod:`.vllm`; :mod:`peft_audit.models.backends` is the registry.

This module imports nothing heavy: every benchmark imports it, and the CLI starts without torch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

if TYPE_CHECKING:
    from ..shared_base import SharedBase

#: Rows per batch, or ``"auto"``: as many as the device's free memory holds (:mod:`peft_audit.models.batching`).
BatchSize = int | Literal["auto"]
Progress = Callable[[int], None] | None


@dataclass(frozen=True)
class Generation:
    """A model's answer: decoded text (special tokens removed, stripped) and the number of new
    tokens produced before the stop token (EOS and padding are not counted)."""

    text: str
    n_new_tokens: int

    @classmethod
    def decoded(cls, tokenizer, new_ids: Sequence[int]) -> "Generation":
        """The answer made of ``new_ids`` (the new tokens before the stop token), as every
        backend decodes it, so that answers compare across backends."""
        return cls(tokenizer.decode(new_ids, skip_special_tokens=True).strip(), len(new_ids))


@runtime_checkable
class LanguageModel(Protocol):
    """One loaded variant (a base model, or a base with one adapter), as benchmarks see it."""

    def generate(self, prompts: Sequence[str], *, system_prompt: str | None = None, max_new_tokens: int = 256,
                 batch_size: BatchSize = "auto", progress: Progress = None) -> list[Generation]:
        """Greedy answers to ``prompts``, each the user turn of a chat (after ``system_prompt``),
        in input order; ``progress(n)`` after every ``n`` prompts finished. ``[]`` for no prompts."""
        ...

    def complete(self, prompts: Sequence[str], *, max_new_tokens: int, add_special_tokens: bool = True,
                 batch_size: BatchSize = "auto") -> list[Generation]:
        """Greedy continuations of each raw text (no chat template applied), in input order.
        ``add_special_tokens=False`` for text that already holds them."""
        ...

    def loglikelihood(self, prompts: Sequence[str], continuations: Sequence[Sequence[str]], *,
                      batch_size: BatchSize = "auto", add_special_tokens: bool = True,
                      progress: Progress = None) -> list[list[float]]:
        """Summed log-probability (nats, <= 0) of each continuation's tokens after its prompt, one
        list per prompt. ``add_special_tokens=False`` for text that already holds them (a
        rendered chat template)."""
        ...

    def token_counts(self, prompts: Sequence[str], continuations: Sequence[Sequence[str]], *,
                     add_special_tokens: bool = True) -> list[list[int]]:
        """How many tokens :meth:`loglikelihood` scores for each continuation."""
        ...

    @property
    def has_chat_template(self) -> bool:
        """Whether the tokenizer has a chat template (:meth:`apply_chat_template` needs one)."""
        ...

    def apply_chat_template(self, messages: Sequence[dict], *, add_generation_prompt: bool = True) -> str:
        """``messages`` (``{"role", "content"}`` dicts) rendered as text by the tokenizer's template."""
        ...

    def first_overlong(self, prompts: Sequence[str], *, system_prompt: str | None,
                       max_new_tokens: int) -> tuple[int, int, int] | None:
        """``(index, prompt tokens, context)`` of the first prompt whose chat input plus
        ``max_new_tokens`` exceeds the model's context; None when all fit or the context is unknown."""
        ...

    def take_time_shift(self) -> float:
        """Seconds this variant's timed work is off by since the last call: a member of a shared
        base's group runs mixed batches for other members (a negative shift) and takes answers
        another member's batch made (a positive one); 0 for a variant evaluated alone."""
        ...

    def close(self) -> None:
        """Release the variant (the worker's backend keeps what it shares, e.g. an engine)."""
        ...


@dataclass(frozen=True)
class BackendSettings:
    """What a backend is built from: the sweep's ``backend``, ``device``, ``eval_dtype``,
    ``compile`` and ``trust_remote_code``. Workers keep one backend per distinct settings."""

    name: str = "transformers"
    device: str = "auto"
    dtype: str = "auto"
    compile: bool = False
    trust_remote_code: bool = False

    @classmethod
    def of(cls, cfg) -> "BackendSettings":
        """The settings of a :class:`~peft_audit.config.SweepConfig`."""
        return cls(cfg.backend, cfg.device, cfg.eval_dtype, cfg.compile, cfg.trust_remote_code)


class Backend(Protocol):
    """What a worker builds once (:func:`peft_audit.models.backends.build_backend`) and asks for
    every variant it evaluates; closed when the worker ends."""

    settings: BackendSettings

    def load(self, base_model: str, adapter: Path | None = None, *, shared: "SharedBase | None" = None,
             member: str | None = None) -> LanguageModel:
        """The variant ``base_model`` (+ ``adapter``), loaded; or, with ``shared``, member
        ``member`` of a group's shared base (:class:`~peft_audit.models.shared_base.SharedBase`)."""
        ...

    def close(self) -> None:
        """Release everything this backend keeps between variants."""
        ...
