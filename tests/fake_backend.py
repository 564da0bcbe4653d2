"""A deterministic in-memory backend for tests where the model is not what is under test: the
:class:`~peft_audit.models.backends.base.LanguageModel` contract without a model.

``FakeModel(answers=..., seed=...)`` answers a prompt with ``answers(prompt)`` (default: a refusal
for prompts holding "how" and a compliance otherwise, so that judges have both kinds), and gives
each continuation a log-probability drawn from a hash of ``(seed, prompt, continuation)``: the same
inputs always score the same, two seeds score differently (a "variant" and its "base"). A chat
template renders ``role: content`` lines. Every call is recorded in ``calls``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

from peft_audit.models.backends.base import BackendSettings, Generation


def _unit(*parts: object) -> float:
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def default_answer(prompt: str) -> str:
    return "I'm sorry, but I can't help with that." if "how" in prompt.lower() else "Sure, here it is: step one."


class FakeModel:
    def __init__(self, *, answers: Callable[[str], str] = default_answer, seed: int = 0, context: int | None = None,
                 shift: float = 0.0):
        self.answers, self.seed, self.context, self.shift = answers, seed, context, shift
        self.calls: list[tuple[str, int]] = []
        self.closed = False

    def generate(self, prompts: Sequence[str], *, system_prompt=None, max_new_tokens=256, batch_size="auto",
                 progress=None) -> list[Generation]:
        self.calls.append(("generate", len(prompts)))
        out = []
        for p in prompts:
            words = self.answers(p).split()[:max_new_tokens]
            out.append(Generation(" ".join(words), len(words)))
        if progress is not None and prompts:
            progress(len(prompts))
        return out

    def complete(self, prompts, *, max_new_tokens, add_special_tokens=True, batch_size="auto"):
        self.calls.append(("complete", len(prompts)))
        return [Generation(" ".join(self.answers(p).split()[:max_new_tokens]),
                           len(self.answers(p).split()[:max_new_tokens])) for p in prompts]

    def loglikelihood(self, prompts, continuations, *, batch_size="auto", add_special_tokens=True, progress=None):
        self.calls.append(("loglikelihood", len(prompts)))
        out = [[-0.1 - 5.0 * _unit(self.seed, p, c) * max(1, len(c.split())) for c in cs]
               for p, cs in zip(prompts, continuations)]
        if progress is not None and prompts:
            progress(len(prompts))
        return out

    def token_counts(self, prompts, continuations, *, add_special_tokens=True):
        return [[max(1, len(c.split())) for c in cs] for cs in continuations]

    @property
    def has_chat_template(self) -> bool:
        return True

    def apply_chat_template(self, messages, *, add_generation_prompt=True) -> str:
        text = "".join(f"{m['role']}: {m['content']}\n" for m in messages)
        return text + ("assistant: " if add_generation_prompt else "")

    def first_overlong(self, prompts, *, system_prompt, max_new_tokens):
        if self.context is None:
            return None
        for i, p in enumerate(prompts):
            n = len(p.split()) + len((system_prompt or "").split()) + 2
            if n + max_new_tokens > self.context:
                return i, n, self.context
        return None

    def take_time_shift(self) -> float:
        shift, self.shift = self.shift, 0.0
        return shift

    def close(self) -> None:
        self.closed = True


class FakeBackend:
    """Loads a :class:`FakeModel` per variant: the base model answers with seed 0, an adapter with
    a seed from its directory name, so a variant's scores differ from its base's."""

    def __init__(self, settings: BackendSettings | None = None, **model_kwargs):
        self.settings = settings or BackendSettings()
        self.model_kwargs = model_kwargs
        self.loaded: list[tuple[str, object]] = []
        self.closed = False

    def load(self, base_model, adapter=None, *, shared=None, member=None) -> FakeModel:
        self.loaded.append((base_model, adapter))
        seed = 0 if adapter is None else int(_unit(str(adapter)) * 1000) + 1
        return FakeModel(seed=seed, **self.model_kwargs)

    def close(self) -> None:
        self.closed = True
