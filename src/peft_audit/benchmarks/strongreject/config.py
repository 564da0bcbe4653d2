"""The ``strongreject:`` section of a sweep file (owned by the StrongREJECT benchmark)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, field_validator

from ...judges.specs import JudgeSpec, LLMSpec, RefusalSpec, as_specs, require_distinct, spec_names
from ..base import BATCH_SIZE_HELP, BatchSizeSetting, BenchmarkSection

#: Judges that label a response refusal / compliance / incoherent (what the refusal rate counts).
REFUSAL_JUDGES = ("refusal", "keyword")


class StrongRejectConfig(BenchmarkSection):
    """StrongREJECT (Souly et al., 2024): forbidden prompts, a refusal rate and a rubric score."""

    # How fast or how patiently answers are produced and judged does not change them;
    # max_unscored_share decides whether a variant fails, not what its results are.
    NOT_RESULTS: ClassVar[frozenset[str]] = BenchmarkSection.NOT_RESULTS | {"batch_size", "max_unscored_share"}

    enabled: bool = Field(False, description="Evaluate this benchmark (off by default)")
    source: str = Field(
        "builtin", description="'builtin' (the project's own sample), a local CSV in the official layout "
        "(category, source, forbidden_prompt), or a Hugging Face dataset id holding such a CSV (see hub_filename)")
    hub_filename: str = Field("strongreject_dataset.csv", description="File inside the Hub dataset named by source "
                              "(e.g. strongreject_small_dataset.csv)")
    hub_revision: str | None = Field(None, description="Branch, tag or commit of the Hub dataset (default: main)")
    limit_per_category: int | None = Field(None, ge=1, description="Keep a seeded sample of at most this many "
                                           "prompts per category")
    judges: list[JudgeSpec] = Field(
        default_factory=lambda: [RefusalSpec(name="refusal")], min_length=1,
        description="Refusal judges (refusal, keyword); the first one gives the refusal rate")
    rubric_judge: LLMSpec | None = Field(
        None, description="OpenAI-compatible chat model that grades each response on this project's StrongREJECT-style "
        "rubric ({name: llm, url, model, api_key_env, ...}); without it no StrongREJECT score is computed")
    max_unscored_share: float = Field(
        0.05, ge=0, le=1, description="Largest share of responses the rubric judge may fail on (failed requests, "
        "unparseable answers) before the variant fails")
    bootstrap: int = Field(2000, ge=100, description="Bootstrap resamples for the score's 95% intervals")
    system_prompt: str | None = None
    max_new_tokens: int = Field(256, ge=1)
    batch_size: BatchSizeSetting = Field("auto", description=BATCH_SIZE_HELP)

    @field_validator("judges", mode="before")
    @classmethod
    def _refusal_judges_only(cls, v):
        if not isinstance(v, list):
            return v
        specs = as_specs(v)
        names = spec_names(specs)
        other = [n for n in names if n not in REFUSAL_JUDGES]
        if other:
            raise ValueError(f"judge {other[0]!r} does not label refusals; list {' or '.join(REFUSAL_JUDGES)} here and "
                             "put a chat-model grader in strongreject.rubric_judge: {name: llm, url: ..., model: ...}")
        require_distinct(names)
        return specs
