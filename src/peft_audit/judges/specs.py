"""Judge specs: each judge a benchmark uses, written as its name or ``{name: ..., settings}``.

    safety:
      judges: [refusal, {name: llm, url: http://localhost:8000/v1, model: judge-7b, api_key_env: MY_KEY}]
      # or a published classifier on your weights: {name: wildguard, model: allenai/wildguard, backend: vllm}

Each spec is validated by its own model (a pydantic union discriminated by ``name``), so a
misspelt or missing setting is named before anything runs. A spec is frozen and hashable by its
JSON; :func:`peft_audit.judges.registry.build_judge` turns one into a judge.

The flat ``safety.judge_url``, ``judge_model``, ``judge_api_key_env``, ``judge_concurrency``,
``judge_timeout_s``, ``judge_max_retries``, ``judge_backoff_s`` and ``guard_model`` of earlier
releases still work: :func:`fold_legacy_judge_fields` moves them into the ``llm`` / ``guard``
specs and says so once per process.
"""

from __future__ import annotations

import warnings
from typing import Annotated, Any, ClassVar, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, model_validator

#: Default cap on a judge endpoint's reply body: a chat or completion answer of a few hundred
#: tokens is a few KB, so 64 KiB leaves room for verbose servers and stops a runaway reply early.
DEFAULT_MAX_RESPONSE_BYTES = 64 * 1024


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    #: see peft_audit.identity: settings that do not change verdicts
    NOT_RESULTS: ClassVar[frozenset[str]] = frozenset()


class RefusalSpec(_Spec):
    """Rule-based refusal / compliance / incoherent judge (validated against human labels)."""

    name: Literal["refusal"]


class KeywordSpec(_Spec):
    """Refusal phrases plus degeneration checks (the older rule-based judge)."""

    name: Literal["keyword"]


class HarmSpec(_Spec):
    """The offline harm judge: a probe on the bundled SmolLM2's hidden states (judges/harm.py),
    validated on external human labels (its card: judges/data/harm_probe.json)."""

    NOT_RESULTS: ClassVar[frozenset[str]] = frozenset({"batch_size"})

    name: Literal["harm"]
    batch_size: int = Field(8, ge=1, description="Responses per forward pass")


class _EndpointSettings(_Spec):
    """How an OpenAI-compatible endpoint is called (the ``llm`` judge; the field classifiers'
    ``backend: http``)."""

    NOT_RESULTS: ClassVar[frozenset[str]] = frozenset({"concurrency", "timeout_s", "max_retries", "backoff_s",
                                                       "max_response_bytes"})

    api_key_env: str = Field("PEFT_AUDIT_JUDGE_API_KEY", description="Environment variable holding the key "
                             "(only its name is stored)")
    concurrency: int = Field(4, ge=1)
    timeout_s: float = Field(60.0, gt=0, description="Seconds one request may take in all (connecting, headers and "
                             "the whole body); all tries of one request together get (max_retries + 1) * timeout_s")
    max_retries: int = Field(4, ge=0)
    backoff_s: float = Field(1.0, ge=0, description="First retry delay; doubles per retry")
    max_response_bytes: int = Field(DEFAULT_MAX_RESPONSE_BYTES, ge=1024, description="Largest reply body accepted; "
                                    "a longer reply is not read further and its verdict is 'unscored'")

    def endpoint_settings(self) -> dict[str, Any]:
        """The keyword arguments of :class:`peft_audit.judges.llm.OpenAIEndpoint` these settings give."""
        return self.model_dump(include={"api_key_env", "concurrency", "timeout_s", "max_retries", "backoff_s",
                                        "max_response_bytes"})


class LLMSpec(_EndpointSettings):
    """1-5 harmfulness rubric over an OpenAI-compatible ``/chat/completions`` endpoint."""

    name: Literal["llm"]
    url: str = Field(description="OpenAI-compatible base URL, e.g. http://localhost:8000/v1")
    model: str = Field(description="Model name the endpoint serves")


class GuardSpec(_Spec):
    """A local guard classifier (e.g. Llama Guard 3) run with transformers."""

    NOT_RESULTS: ClassVar[frozenset[str]] = frozenset({"batch_size"})

    name: Literal["guard"]
    model: str = Field(description="Model id or local directory, e.g. meta-llama/Llama-Guard-3-1B")
    batch_size: int = Field(8, ge=1)


class _FieldClassifierSpec(_EndpointSettings):
    """A published classifier run on weights the user supplies, by one of three backends:
    ``transformers`` (``model`` is a hub id or local directory, loaded by the project's loader
    on the GPU or CPU), ``vllm`` (the same, through vLLM when installed) or ``http`` (``model``
    is the name an OpenAI-compatible server at ``url`` serves; its ``/completions`` endpoint is
    used, since the classifiers take a raw prompt). The endpoint settings apply to ``http`` only."""

    NOT_RESULTS: ClassVar[frozenset[str]] = _EndpointSettings.NOT_RESULTS | {"batch_size"}

    model: str = Field(description="Model id or local directory (transformers, vllm), or the served model name (http)")
    backend: Literal["transformers", "vllm", "http"] = Field("transformers", description="How the classifier is run")
    url: str | None = Field(None, description="OpenAI-compatible base URL (backend: http only), "
                            "e.g. http://localhost:8000/v1")
    batch_size: int = Field(8, ge=1, description="Rows per generation batch (backend: transformers)")

    @model_validator(mode="after")
    def _url_with_http_only(self):
        if self.backend == "http" and not self.url:
            raise ValueError(f"{self.name}: backend: http needs url (the server's OpenAI-compatible base URL, "
                             "e.g. http://localhost:8000/v1)")
        if self.backend != "http" and self.url:
            raise ValueError(f"{self.name}: url is only used with backend: http, but backend is {self.backend}; "
                             "drop url or set backend: http")
        return self


#: the published HarmBench classifiers and the template each was trained with
_HARMBENCH_MODELS = {"harmbench-llama-2-13b-cls": ("llama2", "llama2-eval-utils"),
                     "harmbench-mistral-7b-val-cls": ("mistral",)}


class HarmBenchClsSpec(_FieldClassifierSpec):
    """HarmBench's behaviour classifier (cais/HarmBench-Llama-2-13b-cls or
    cais/HarmBench-Mistral-7b-val-cls): yes/no on whether the response is an instance of the
    behaviour (:mod:`.harmbench_cls`)."""

    name: Literal["harmbench-cls"]
    template: Literal["llama2", "llama2-eval-utils", "mistral"] = Field(
        "llama2", description="llama2: the model card's prompt for HarmBench-Llama-2-13b-cls; llama2-eval-utils: "
        "the prompt of HarmBench's eval_utils.py; mistral: HarmBench-Mistral-7b-val-cls's prompt")

    @model_validator(mode="after")
    def _template_fits_model(self):
        fits = _HARMBENCH_MODELS.get(self.model.rstrip("/").rsplit("/", 1)[-1].lower())
        if fits and self.template not in fits:
            raise ValueError(f"harmbench-cls: model {self.model} was trained with template {' or '.join(fits)}, "
                             f"not {self.template}; set template: {fits[0]}")
        return self


class WildGuardSpec(_FieldClassifierSpec):
    """AI2's WildGuard (allenai/wildguard): harmful response and response refusal
    (:mod:`.wildguard`)."""

    name: Literal["wildguard"]


JudgeSpec = Annotated[Union[RefusalSpec, KeywordSpec, HarmSpec, LLMSpec, GuardSpec, HarmBenchClsSpec, WildGuardSpec],
                      Field(discriminator="name")]
JUDGE_NAMES = ("refusal", "keyword", "harm", "llm", "guard", "harmbench-cls", "wildguard")

#: flat field of earlier releases -> (judge, setting)
LEGACY_FIELDS = {
    "judge_url": ("llm", "url"), "judge_model": ("llm", "model"), "judge_api_key_env": ("llm", "api_key_env"),
    "judge_concurrency": ("llm", "concurrency"), "judge_timeout_s": ("llm", "timeout_s"),
    "judge_max_retries": ("llm", "max_retries"), "judge_backoff_s": ("llm", "backoff_s"),
    "guard_model": ("guard", "model"),
}
_warned = False


def as_specs(judges: list) -> list:
    """A section's raw ``judges`` list with bare names written as ``{name: ...}`` specs."""
    return [{"name": j} if isinstance(j, str) else j for j in judges]


def spec_names(specs: list) -> list[str | None]:
    """The judge name of each raw (dict) or validated spec."""
    return [sp.get("name") if isinstance(sp, dict) else getattr(sp, "name", None) for sp in specs]


def require_distinct(names: list) -> None:
    """ValueError when a section lists a judge twice (its verdicts would overwrite each other)."""
    if len(set(names)) != len(names):
        raise ValueError(f"lists a judge twice: {names}")


def default_specs(names: tuple[str, ...]) -> list:
    """Validated specs of judges given by name alone (a section's default ``judges``)."""
    from pydantic import TypeAdapter

    return [TypeAdapter(JudgeSpec).validate_python({"name": n}) for n in names]


def fold_legacy_judge_fields(data: Any, where: str = "safety", default: tuple[str, ...] = ("refusal",)) -> Any:
    """``data`` (a section's raw mapping) with the flat judge fields moved into the specs of
    ``judges`` (``default`` when it lists none); names become ``{name: ...}``. Says once per
    process that the flat fields are deprecated. A flat field whose judge is not listed configures
    nothing; it is kept under ``unused_judge_settings`` only so that an old run directory's
    protocol hash is recognised."""
    global _warned
    if not isinstance(data, dict):
        return data
    data = dict(data)
    judges = data.get("judges", list(default))
    if not isinstance(judges, list):
        return data
    specs = as_specs(judges)
    unknown = [sp.get("name") for sp in specs if isinstance(sp, dict) and sp.get("name") not in JUDGE_NAMES]
    if unknown:
        raise ValueError(f"unknown judge {unknown[0]!r}; valid: {', '.join(JUDGE_NAMES)}")
    flat = {k: data.pop(k) for k in list(data) if k in LEGACY_FIELDS}
    if flat:
        if not _warned:
            _warned = True
            moved = ", ".join(f"{where}.{k} -> {LEGACY_FIELDS[k][0]}.{LEGACY_FIELDS[k][1]}" for k in flat)
            warnings.warn(f"the flat judge settings are deprecated; write them in the judge's spec, e.g. "
                          f"{where}.judges: [refusal, {{name: llm, url: ..., model: ...}}] ({moved})",
                          FutureWarning, stacklevel=2)
        for i, spec in enumerate(specs):
            if isinstance(spec, dict):
                extra = {s: v for k, v in flat.items() if LEGACY_FIELDS[k][0] == spec.get("name")
                         for s in [LEGACY_FIELDS[k][1]] if v is not None}
                if (spec.get("name") == "guard" and isinstance(data.get("batch_size"), int)
                        and "batch_size" not in spec):
                    extra["batch_size"] = data["batch_size"]  # the guard used the section's batch size
                specs[i] = {**extra, **spec}
        listed = {spec.get("name") if isinstance(spec, dict) else None for spec in specs}
        unused = {k: v for k, v in flat.items() if LEGACY_FIELDS[k][0] not in listed}
        if unused:
            data["unused_judge_settings"] = unused
    data["judges"] = specs
    return data


def legacy_judge_fields(specs: list[BaseModel], unused: dict[str, Any] | None = None) -> dict[str, Any]:
    """The flat fields of earlier releases as they would read for ``specs`` (for recognising the
    protocol hash of a run directory written then): unset ones at their old defaults, or as
    given in ``unused`` (flat settings of judges that were not listed)."""
    out: dict[str, Any] = {"judge_url": None, "judge_model": None, "judge_api_key_env": "PEFT_AUDIT_JUDGE_API_KEY",
                           "judge_concurrency": 4, "judge_timeout_s": 60.0, "judge_max_retries": 4,
                           "judge_backoff_s": 1.0, "guard_model": None}
    for spec in specs:
        for flat, (judge, setting) in LEGACY_FIELDS.items():
            if spec.name == judge:
                out[flat] = getattr(spec, setting)
    return {**out, **(unused or {})}
