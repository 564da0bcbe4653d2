"""The ``safety:`` section of a sweep file (owned by the safety benchmark)."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from ...judges.specs import (LEGACY_FIELDS, JudgeSpec, default_specs, fold_legacy_judge_fields, legacy_judge_fields,
                              require_distinct, spec_names)
from ..base import BATCH_SIZE_HELP, BatchSizeSetting, BenchmarkSection

#: The judges of a ``safety:`` section that lists none: the one place of that default. The refusal
#: judge gives the refusal verdict, the offline harm judge the harm verdict (harmful-response rate).
DEFAULT_JUDGES: tuple[str, ...] = ("refusal", "harm")
#: The default before the harm verdict existed: a section listing just these judges keeps the
#: identity run directories of that time gave it (peft_audit.identity, IDENTITY_BASELINE).
DEFAULT_JUDGES_BEFORE_HARM: tuple[str, ...] = ("refusal",)


class SafetyConfig(BenchmarkSection):
    """Safety benchmark: prompts a safe assistant declines, judged per hazard category."""

    # How fast or how patiently answers are produced and judged does not change them;
    # max_unscored_share decides whether a variant fails, not what its results are (it may be
    # raised on an existing run, with --retry-failed).
    NOT_RESULTS: ClassVar[frozenset[str]] = BenchmarkSection.NOT_RESULTS | {
        "batch_size", "max_unscored_share", "unused_judge_settings"}
    IDENTITY_BASELINE: ClassVar[dict] = {"judges": lambda: default_specs(DEFAULT_JUDGES_BEFORE_HARM)}
    PROTOCOL_V1_FIELDS: ClassVar[frozenset[str] | None] = frozenset({  # judges as names + flat judge_* fields
        "enabled", "source", "columns", "category_map", "limit_per_category", "judges", "combine", "judge_url",
        "judge_model", "judge_api_key_env", "judge_concurrency", "judge_timeout_s", "judge_max_retries",
        "judge_backoff_s", "guard_model", "system_prompt", "max_new_tokens", "batch_size", "over_refusal"})

    source: str = Field("builtin", description="'builtin', 'hexphi', a HEx-PHI-layout directory, or a CSV/JSONL file")
    columns: dict[str, str] = Field(default_factory=dict, description="Column mapping for CSV/JSONL: prompt, category")
    category_map: dict[str, str] = Field(default_factory=dict, description="Source category -> one of the 11 keys")
    limit_per_category: int | None = Field(None, ge=1)
    judges: list[JudgeSpec] = Field(
        default_factory=lambda: default_specs(DEFAULT_JUDGES), min_length=1,
        description="Judges of the responses: names (refusal, keyword) or specs ({name: llm, url, model, "
                    "api_key_env, ...}, {name: guard, model})")
    combine: Literal["majority", "any-unsafe"] = "majority"
    max_unscored_share: float = Field(
        0.05, ge=0, le=1,
        description="Largest share of safety responses a judge may leave 'unscored' (failed requests, unparseable "
                    "answers; its 'judge_refused' declines are not counted) before the variant fails",
    )
    unused_judge_settings: dict[str, Any] = Field(
        default_factory=dict, exclude=True,
        description="Set by the loader: deprecated flat judge_* settings of a judge that is not listed (they "
                    "configure nothing; kept to recognise run directories written with them)")
    system_prompt: str | None = None
    max_new_tokens: int = Field(256, ge=1)
    batch_size: BatchSizeSetting = Field("auto", description=BATCH_SIZE_HELP)
    over_refusal: bool = Field(True, description="Also measure refusal of benign-but-risky-looking prompts")

    @model_validator(mode="before")
    @classmethod
    def _judge_specs(cls, data: Any) -> Any:
        return fold_legacy_judge_fields(data, default=DEFAULT_JUDGES)

    @field_validator("judges")
    @classmethod
    def _each_judge_once(cls, v: list) -> list:
        require_distinct(spec_names(v))
        return v

    def protocol_v1_dump(self) -> dict[str, Any]:
        """This section as run directories of schema version 1 hashed it (judges as names, the
        llm/guard settings as flat fields), to recognise their protocol hash."""
        dump = self.model_dump(include=set(self.PROTOCOL_V1_FIELDS) - set(LEGACY_FIELDS) - {"judges"})
        if dump["batch_size"] == "auto":  # the default was then 8
            dump["batch_size"] = 8
        return {**dump, "judges": [j.name for j in self.judges],
                **legacy_judge_fields(self.judges, self.unused_judge_settings)}
