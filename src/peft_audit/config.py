"""Typed configuration: YAML sweep files in, validated pydantic objects out.

Everything a user can write in a sweep file is declared here, with help text on each
field. Validation happens at the edge (:func:`load_config`): unknown keys, wrong types
and impossible values fail before any model is loaded, with the file and key named.
Only these typed objects travel inward.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, field_validator, model_validator

from .benchmarks.fairness.config import FairnessConfig  # noqa: F401  (re-exported: owned by its benchmark)
from .benchmarks.safety.config import SafetyConfig  # noqa: F401  (re-exported: owned by its benchmark)
from .identity import identity_payload
from .shown_text import LABEL_MAX, has_control
from .textio import TextEncodingError, read_text
from .methods import METHODS  # noqa: F401  (the one list; re-exported for config users)

ALGOS = ("sft", "dpo")


class ConfigError(ValueError):
    """A configuration problem a user must fix; the message names the file and the key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MethodSpec(_Strict):
    """A PEFT method with optional method arguments (e.g. LoRA ``r``)."""

    name: str = Field(description="PEFT method: " + ", ".join(METHODS))
    args: dict[str, Any] = Field(default_factory=dict, description="Method arguments, e.g. {r: 8, alpha: 16}")
    grid: dict[str, list[Any]] = Field(
        default_factory=dict, description="Method arguments to sweep over, e.g. {r: [4, 8, 16]}"
    )
    lr: list[float] | None = Field(
        None, description="Learning rates for this method, replacing the sweep's `lr` list (prompt-based "
        "methods usually need larger steps than adapters)"
    )

    @field_validator("lr")
    @classmethod
    def _lr_positive(cls, v: list[float] | None) -> list[float] | None:
        for x in v or []:
            if not (math.isfinite(x) and x > 0):  # NaN compares False with everything
                raise ValueError(f"learning rate must be a finite number > 0, got {x}")
        return v

    @field_validator("name")
    @classmethod
    def _known_method(cls, v: str) -> str:
        if v not in METHODS:
            raise ValueError(f"unknown PEFT method {v!r}; valid: {', '.join(METHODS)}")
        return v


class TrainingConfig(_Strict):
    """How each adapter variant is fine-tuned (shared by all variants of a sweep)."""

    #: see peft_audit.identity: logging does not change the adapter; the rest were hashed from the start
    NOT_RESULTS: ClassVar[frozenset[str]] = frozenset({"logging_steps"})
    IDENTITY_V1: ClassVar[frozenset[str]] = frozenset({
        "data", "data_split", "columns", "max_steps", "batch_size", "grad_accum", "max_seq_len", "max_examples",
        "safety_mix", "dpo_beta", "gradient_checkpointing", "load_in"})

    data: str = Field("builtin", description="'builtin', a local JSONL/CSV file, or a Hugging Face dataset id")
    data_split: str = Field("train", description="Split of a Hugging Face dataset")
    columns: dict[str, str] = Field(
        default_factory=dict,
        description="Column mapping onto prompt/response (SFT) or prompt/chosen/rejected (DPO), e.g. {prompt: question}",
    )
    max_steps: int | None = Field(
        None, ge=1, description="Stop after this many optimizer steps (overrides epochs; then a sweep may have only "
        "one epochs value)"
    )
    batch_size: int = Field(4, ge=1)
    grad_accum: int = Field(1, ge=1)
    max_seq_len: int = Field(384, ge=16, description="Truncate training sequences to this many tokens")
    max_examples: int | None = Field(None, ge=1, description="Use at most this many training examples")
    safety_mix: float = Field(0.0, ge=0.0, lt=1.0, description="Fraction of refusal demonstrations mixed in")
    dpo_beta: float = Field(0.1, gt=0.0, description="DPO inverse temperature beta")
    gradient_checkpointing: bool = False
    load_in: Literal["4bit", "8bit"] | None = Field(None, description="Quantised base loading (bitsandbytes, GPU only)")
    logging_steps: int = Field(1, ge=1)
    heldout_fraction: float = Field(
        0.1, ge=0.0, lt=0.5, description="Share of the task data held out from training (chosen by a hash of each "
        "row's content, before max_examples and safety_mix) on which the utility benchmark measures the variant; "
        "0 holds nothing out (no utility measured)")
    heldout_min_rows: int = Field(20, ge=1, description="Hold out at least this many rows when heldout_fraction > 0, "
                                                        "so the utility has an interval; data with fewer than twice "
                                                        "as many rows holds nothing out")


class RepairSpec(_Strict):
    """How a repaired variant was derived from its original (``peft-audit mitigate``): a method
    of :mod:`peft_audit.mitigations` and its options, every option written out."""

    method: str = Field(description="Repair method (see peft_audit.mitigations)")
    options: dict[str, Any] = Field(default_factory=dict, description="The method's options")

    def text(self) -> str:
        """``safety-mix (fraction 0.25)``: the method and its options that are set, for tables and cards."""
        opts = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in self.options.items() if v is not None)
        return f"{self.method} ({opts})" if opts else self.method


class VariantSpec(_Strict):
    """One fully specified model to evaluate: a base model, or a base plus one adapter.

    Its id is a stable hash of every field that changes results (see :mod:`peft_audit.identity`).
    """

    NOT_RESULTS: ClassVar[frozenset[str]] = frozenset({"label"})
    IDENTITY_V1: ClassVar[frozenset[str]] = frozenset({
        "base_model", "method", "method_args", "algo", "lr", "epochs", "seed", "adapter"})

    base_model: str
    method: str = Field("base", description="'base' or a PEFT method")
    method_args: dict[str, Any] = Field(default_factory=dict)
    algo: Literal["sft", "dpo"] | None = None
    lr: float | None = Field(None, gt=0)
    epochs: int | None = Field(None, ge=1)
    seed: int = 0
    adapter: str | None = Field(None, description="Existing adapter (dir or hub id) instead of training one")
    label: str | None = Field(None, description="Cosmetic display name; not part of the id")
    training: dict[str, Any] = Field(
        default_factory=dict,
        description="This variant's changes to the sweep's `training` section, e.g. {data: builtin:identity_shift, "
        "max_steps: 24}; part of the id only when given",
    )
    repair_of: str | None = Field(None, description="Id of the variant this one repairs (written by `peft-audit "
                                  "mitigate`, with `repair`); part of the id only when given")
    repair: RepairSpec | None = Field(None, description="How this variant was repaired from `repair_of`")

    @model_validator(mode="after")
    def _consistent(self) -> "VariantSpec":
        if self.method != "base" and self.method not in METHODS:
            raise ValueError(f"unknown PEFT method {self.method!r}; valid: base, {', '.join(METHODS)}")
        if self.method == "base" and self.adapter:
            raise ValueError("method 'base' cannot have an adapter")
        if self.method != "base" and not self.adapter and (self.algo is None or self.lr is None or self.epochs is None):
            raise ValueError(f"variant {self.method} needs algo, lr and epochs to be trained")
        if self.training and (self.method == "base" or self.adapter):
            raise ValueError("`training:` belongs to a variant that is trained here, not to a base model or a given adapter")
        if (self.repair_of is None) != (self.repair is None):
            raise ValueError("`repair_of` and `repair` go together (both are written by `peft-audit mitigate`)")
        if self.repair is not None and (self.method == "base" or self.adapter):
            raise ValueError("a repair derives from a variant trained in this run, not a base model or a given adapter")
        unknown = sorted(set(self.training) - set(TrainingConfig.model_fields))
        if unknown:
            raise ValueError(f"unknown training setting(s) {', '.join(unknown)} in a variant's `training:`; "
                             f"valid: {', '.join(TrainingConfig.model_fields)}")
        return self

    def is_base(self) -> bool:
        return self.method == "base"


class _SweepBase(_Strict):
    """A whole sweep file: base models x methods x algos x lr x epochs x seeds, plus explicit variants,
    and one section per registered benchmark (``safety:``, ``fairness:``, ...; see :data:`SweepConfig`)."""

    name: str = "audit"
    base_models: list[str] = Field(default_factory=lambda: ["smollm2-135m-instruct"], min_length=1)
    methods: list[MethodSpec] = Field(default_factory=list)
    algos: list[Literal["sft", "dpo"]] = Field(default_factory=lambda: ["sft"])
    lr: list[float] = Field(default_factory=lambda: [2e-4])
    epochs: list[int] = Field(default_factory=lambda: [1])
    seeds: list[int] = Field(default_factory=lambda: [0])
    variants: list[VariantSpec] = Field(default_factory=list)
    device: str = Field("auto", description="auto | cpu | cuda | cuda:N | mps")
    eval_dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="Weights and activations of the models evaluated (generation and scoring): auto "
                            "(bfloat16 on CUDA GPUs that have it, float32 elsewhere), or one of float32, bfloat16, "
                            "float16. Training keeps its own rule. Part of the protocol when not auto")
    backend: str = Field(
        "transformers", description="Backend every benchmark reaches the variants through "
                                    "(peft_audit.models.backends): transformers, or vllm (generation of base "
                                    "models and LoRA variants through one vLLM engine per base; other methods, "
                                    "and log-likelihood scoring, on transformers)")
    compile: bool = Field(
        False, description="transformers backend on CUDA: decode base, LoRA and IA3 variants with a static KV cache "
                           "and torch.compile'd steps (each new batch shape compiles first; perf/gpu_check.py "
                           "measures whether it pays on your GPU); ignored elsewhere, with a notice")
    share_base: bool = Field(
        True, description="Evaluate the variants of one base in groups on one loaded base (up to 8 per group): the "
                          "base model with the LoRA variants this run trains, or its prompt-tuning, P-tuning, "
                          "prefix-tuning or IA3 variants; generation batches shared where the method allows "
                          "(transformers backend without compile; with vllm, the base and LoRA variants in one "
                          "engine's multi-LoRA calls; see sweep/groups.py); other variants load their own")
    kernels: Literal["auto", "packed", "plain"] = Field(
        "auto", description="CPU matmul kernels of evaluation: auto (measured once per machine, cached beside the "
                            "calibration: oneDNN's packed weights and the bfloat16-screened head where they are "
                            "faster), packed, or plain (overrides PEFT_AUDIT_PACKED_WEIGHTS). Speed only: results "
                            "agree to float summation order, so not part of the protocol")
    trust_remote_code: bool = False
    force_adapters: bool = Field(
        False, description="Evaluate existing adapters even when their base-model name or tensor shapes do not fit"
    )
    training: TrainingConfig = Field(default_factory=TrainingConfig)

    @field_validator("name")
    @classmethod
    def _name_not_path(cls, v: str) -> str:
        # the run goes to runs/<name>: a path here would write it anywhere (`/abs`, `../x`, `a/b`)
        bad = has_control(v)
        if not v.strip() or v in (".", "..") or any(c in v for c in "/\\") or bad or len(v) > LABEL_MAX:
            why = (f"holds the control character {bad}" if bad else f"is {len(v)} characters long (at most {LABEL_MAX})"
                   if len(v) > LABEL_MAX else "is a path, not a name")
            raise ValueError(f"{v[:LABEL_MAX]!r} {why}; name is the run's name (its directory is runs/<name>): use "
                             "letters, digits, '-', '_' or '.', and choose the directory with `--out DIR`")
        return v

    @field_validator("backend")
    @classmethod
    def _registered_backend(cls, v: str) -> str:
        from .models.backends import registered

        return registered(v)

    @field_validator("variants")
    @classmethod
    def _labels_shown_as_written(cls, v: list[VariantSpec]) -> list[VariantSpec]:
        for i, spec in enumerate(v):
            label = spec.label or ""
            bad = has_control(label)
            if bad:
                raise ValueError(f"variants[{i}].label holds the control character {bad}; a label is shown on "
                                 "terminals and in reports: remove it")
            if len(label) > LABEL_MAX:
                raise ValueError(f"variants[{i}].label is {len(label)} characters long; at most {LABEL_MAX} are allowed "
                                 "(it names the variant in every table and gate line): shorten it")
        return v

    @field_validator("methods", mode="before")
    @classmethod
    def _methods_shorthand(cls, v: Any) -> Any:
        # Allow `methods: [lora, ia3]` as well as `[{name: lora, args: {r: 8}}]`.
        if isinstance(v, list):
            return [{"name": m} if isinstance(m, str) else m for m in v]
        return v

    @field_validator("lr")
    @classmethod
    def _lr_positive(cls, v: list[float]) -> list[float]:
        for x in v or []:
            if not (math.isfinite(x) and x > 0):  # NaN compares False with everything
                raise ValueError(f"learning rate must be a finite number > 0, got {x}")
        return v

    @field_validator("epochs")
    @classmethod
    def _epochs_positive(cls, v: list[int]) -> list[int]:
        for x in v:
            if x < 1:
                raise ValueError(f"epochs must be >= 1, got {x}")
        return v

    @model_validator(mode="after")
    def _max_steps_fixes_epochs(self) -> "_SweepBase":
        # Trainers stop at max_steps whatever num_train_epochs says, so variants that differ only
        # in epochs would be trained identically yet analysed as different (distinct ids).
        if self.training.max_steps is None:
            return self
        epochs = set(self.epochs) if self.methods else set()
        epochs |= {v.epochs for v in self.variants if not v.is_base() and not v.adapter}
        if len(epochs) > 1:
            raise ValueError(
                f"training.max_steps={self.training.max_steps} overrides epochs, so the epochs values "
                f"{sorted(epochs)} would all train the same variant; sweep over one of the two: remove "
                "training.max_steps, or give a single epochs value"
            )
        return self

    @model_validator(mode="after")
    def _variant_training_valid(self) -> "_SweepBase":
        for i, v in enumerate(self.variants):
            try:
                self.training_for(v)
            except ValidationError as e:
                first = e.errors()[0]
                where = ".".join(str(x) for x in first["loc"])
                raise ValueError(f"variants[{i}].training.{where}: {first['msg']}") from None
        return self

    def training_for(self, spec: VariantSpec) -> TrainingConfig:
        """The training settings of ``spec``: the sweep's ``training`` section with the variant's
        own ``training:`` changes applied (validated as a whole)."""
        if not spec.training:
            return self.training
        return TrainingConfig.model_validate({**self.training.model_dump(exclude_unset=True), **spec.training})

    def config_hash_payload(self, spec: VariantSpec) -> dict[str, Any]:
        """Everything that changes a variant's results: the spec (minus cosmetic fields) and the
        training/benchmark settings that apply to it."""
        payload: dict[str, Any] = {"variant": identity_payload(spec)}
        if not spec.is_base() and not spec.adapter:
            payload["training"] = identity_payload(self.training_for(spec))
        return payload


def _with_benchmark_sections() -> type[_SweepBase]:
    # One field per registered benchmark, named after it and typed by its section model, so a new
    # benchmark's settings are validated here without an edit to this file.
    from .benchmarks.registry import BENCHMARKS

    fields = {name: (b.section, Field(default_factory=b.section, description=f"Settings of the {name} benchmark"))
              for name, b in BENCHMARKS.items()}
    model = create_model("SweepConfig", __base__=_SweepBase, __module__=__name__, **fields)
    model.__doc__ = _SweepBase.__doc__
    return model


#: The validated sweep file (:class:`_SweepBase` plus a section per registered benchmark).
SweepConfig = _with_benchmark_sections()


def benchmark_sections(cfg: _SweepBase) -> list[tuple[Any, Any]]:
    """(benchmark, its section) for every registered benchmark that is enabled, in registry order."""
    from .benchmarks.registry import BENCHMARKS

    return [(b, getattr(cfg, name)) for name, b in BENCHMARKS.items() if getattr(cfg, name).enabled]


def variant_id(payload: dict[str, Any]) -> str:
    """Stable short id: sha256 of the canonical JSON of ``payload`` (sorted keys), 12 hex chars."""
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def _format_loc(loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in loc) or "<root>"


def _keys_at(model: Any, loc: tuple[Any, ...]) -> list[str]:
    """The keys a pydantic model accepts at ``loc`` (list indexes skipped), for "did you mean";
    [] where the path leads through something other than a model."""
    import typing

    for part in loc:
        if isinstance(part, int):
            continue
        fields = getattr(model, "model_fields", None)
        if not fields or part not in fields:
            return []
        model = fields[part].annotation
        for _ in range(3):  # unwrap Optional[...] / list[...] down to a model
            args = [a for a in typing.get_args(model) if a is not type(None)]
            if getattr(model, "model_fields", None) is not None or not args:
                break
            model = args[0]
    return list(getattr(model, "model_fields", {}) or [])


def validation_message(source: str, e: ValidationError, what: str = "configuration") -> str:
    """One line per bad key: ``  key.path: message`` under ``source: invalid <what>``."""
    lines = []
    for err in e.errors():
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            close = difflib.get_close_matches(str(err["loc"][-1]), _keys_at(SweepConfig, err["loc"][:-1]), n=1)
            msg = (f"unknown key; did you mean {close[0]!r}?" if close else "unknown key") + \
                " (see README 'Configuration reference')"
        lines.append(f"  {_format_loc(err['loc'])}: {msg}")
    return f"{source}: invalid {what}\n" + "\n".join(lines)


def parse_config(data: Any, source: str = "<config>") -> SweepConfig:
    """Validate a parsed YAML mapping. Raises :class:`ConfigError` naming ``source`` and each bad key."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: top level must be a mapping of keys, got {type(data).__name__}")
    try:
        return SweepConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(validation_message(source, e)) from None


def read_yaml(path: str | Path, what: str = "config file") -> Any:
    """Parse a YAML file; a missing file or bad YAML raises :class:`ConfigError` naming it."""
    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"{p}: is a directory; give the {what} itself (a .yaml file)")
    if not p.is_file():
        raise ConfigError(f"{p}: {what} not found")
    try:
        return yaml.safe_load(read_text(p, what))
    except TextEncodingError as e:
        raise ConfigError(str(e)) from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: not valid YAML: {e}") from None


def load_config(path: str | Path) -> SweepConfig:
    """Read and validate a YAML sweep file. An empty file is an error, not a default audit: a
    truncated or wrong file must not start hours of work into ``runs/audit``."""
    data = read_yaml(path)
    if data is None:
        raise ConfigError(f"{path}: the config file is empty; start from configs/quickstart.yaml (every key is "
                          "described in README 'Configuration reference')")
    return parse_config(data, str(path))
