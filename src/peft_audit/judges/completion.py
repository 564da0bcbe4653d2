"""Raw-prompt completion for the field's classifier judges (``harmbench-cls``, ``wildguard``):
one contract, three backends, chosen by the judge spec's ``backend``.

These classifiers are prompted with a fixed text template, not a chat template, and read a few
greedily decoded tokens, so the contract is::

    complete(prompts, max_new_tokens=..., add_special_tokens=...) -> [text | Verdict, ...]

one entry per prompt, in order: the new text (special tokens removed, stripped), or a
:class:`~.base.Verdict` saying why there is none (a failed HTTP request; local backends raise
instead). ``add_special_tokens`` is how the prompt is tokenised locally (True: the tokenizer
adds its BOS, as HarmBench's notebooks do; False: the template carries its own ``<s>``, as
WildGuard's Hugging Face path does).

* :class:`TransformersCompleter`: the classifier loaded by the transformers backend (a
  :class:`~peft_audit.models.backends.base.LanguageModel`), decoded by its ``complete`` (the
  project's own greedy, batched generation loop, CPU or GPU);
* :class:`VllmCompleter`: a :class:`~peft_audit.models.backends.vllm.VllmEngine` fed the same
  token ids (vLLM never re-tokenises), so both local backends see identical inputs;
* :class:`HttpCompleter`: any OpenAI-compatible server's ``/completions`` endpoint, through
  :class:`~.llm.OpenAIEndpoint` (retries, key from the environment). The server tokenises the
  text itself, so ``add_special_tokens`` cannot be honoured: vLLM's server adds the BOS, as the
  official HarmBench and WildGuard vLLM paths do when handed the same string.

:class:`LazyCompleter` builds a local backend on first use, so that building a judge (the
run's preflight does) does not load a 7-13B model.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from ..models.backends.base import LanguageModel
from .base import Verdict
from .llm import OpenAIEndpoint, completion_text


class Completer(Protocol):
    def complete(self, prompts: Sequence[str], *, max_new_tokens: int,
                 add_special_tokens: bool) -> list[str | Verdict]: ...


def _encode(tokenizer, prompts: Sequence[str], add_special_tokens: bool) -> list[list[int]]:
    return [list(tokenizer(p, add_special_tokens=add_special_tokens)["input_ids"]) for p in prompts]


class TransformersCompleter:
    """A classifier as its backend serves it (:class:`~peft_audit.models.backends.base.LanguageModel`),
    greedy-decoded by its ``complete``."""

    def __init__(self, lm: LanguageModel, *, batch_size: int = 8):
        self.lm = lm
        self.batch_size = batch_size

    def complete(self, prompts: Sequence[str], *, max_new_tokens: int,
                 add_special_tokens: bool) -> list[str | Verdict]:
        outs = self.lm.complete(prompts, max_new_tokens=max_new_tokens, add_special_tokens=add_special_tokens,
                                batch_size=self.batch_size)
        return [g.text for g in outs]

    def close(self) -> None:
        self.lm.close()


class VllmCompleter:
    """A vLLM engine (anything with ``VllmEngine.generate``'s signature) and the tokenizer of
    its model: token ids in, new token ids out, decoded like the transformers backend."""

    def __init__(self, engine, tokenizer):
        self.engine = engine
        self.tokenizer = tokenizer

    def complete(self, prompts: Sequence[str], *, max_new_tokens: int,
                 add_special_tokens: bool) -> list[str | Verdict]:
        encoded = _encode(self.tokenizer, prompts, add_special_tokens)
        stop = [self.tokenizer.eos_token_id] if self.tokenizer.eos_token_id is not None else []
        new = self.engine.generate(encoded, max_new_tokens=max_new_tokens, stop=stop)
        return [self.tokenizer.decode(ids, skip_special_tokens=True).strip() for ids in new]

    def close(self) -> None:
        shutdown = getattr(self.engine, "shutdown", None)
        if shutdown is not None:
            shutdown()


def vllm_completer(model: str) -> VllmCompleter:
    """A :class:`VllmCompleter` on ``model`` (a hub id or directory, resolved like any base
    model) on the best device. :class:`~peft_audit.models.backends.vllm.VllmUnavailable` (it says
    how to install vLLM) when vLLM is not installed."""
    from transformers import AutoConfig

    from ..models import load_tokenizer, resolve_model, select_device
    from ..models.backends.vllm import VllmEngine, require_vllm

    require_vllm()
    path = resolve_model(model).path
    # a classifier's input is one template + one response: 4096 tokens, or the model's own
    # context when shorter (HarmBench-Llama-2-13b-cls was served with 2048)
    config = AutoConfig.from_pretrained(str(path))
    context = min(4096, int(getattr(config, "max_position_embeddings", 4096) or 4096))
    engine = VllmEngine(path, device=str(select_device("auto")), max_model_len=context, enable_lora=False)
    return VllmCompleter(engine, load_tokenizer(path))


class HttpCompleter:
    """``POST {url}/completions`` with ``{"model", "prompt", "max_tokens", "temperature": 0}``,
    one request per prompt on the endpoint's threads; the key is redacted from any text that
    comes back."""

    def __init__(self, endpoint: OpenAIEndpoint):
        self.endpoint = endpoint

    def _one(self, prompt: str, max_new_tokens: int) -> str | Verdict:
        body = {"model": self.endpoint.model, "prompt": prompt, "max_tokens": max_new_tokens, "temperature": 0}
        out = completion_text(self.endpoint.post(body))
        return self.endpoint.scrub(out) if isinstance(out, Verdict) else self.endpoint.redact(out).strip()

    def complete(self, prompts: Sequence[str], *, max_new_tokens: int,
                 add_special_tokens: bool) -> list[str | Verdict]:
        return self.endpoint.map(lambda p: self._one(p, max_new_tokens), prompts)

    def close(self) -> None:
        self.endpoint.close()


class LazyCompleter:
    """The completer ``build()`` returns, built on the first :meth:`complete` call."""

    def __init__(self, build: Callable[[], Completer]):
        self._build = build
        self._inner: Completer | None = None

    def complete(self, prompts: Sequence[str], *, max_new_tokens: int,
                 add_special_tokens: bool) -> list[str | Verdict]:
        if self._inner is None:
            self._inner = self._build()
        return self._inner.complete(prompts, max_new_tokens=max_new_tokens, add_special_tokens=add_special_tokens)

    def close(self) -> None:
        """Close the completer if it was built (a local model's memory, a vLLM engine's processes)."""
        close = getattr(self._inner, "close", None)
        if close is not None:
            close()


class CompleterJudge:
    """What the classifier judges share: a :class:`Completer` given at construction, ``judge``
    as a batch of one, and ``close`` passed on to the completer (an HTTP client)."""

    def __init__(self, completer: Completer):
        self.completer = completer

    def judge(self, prompt: str, response: str) -> Verdict:
        return self.judge_batch([(prompt, response)])[0]

    def close(self) -> None:
        close = getattr(self.completer, "close", None)
        if close is not None:
            close()
