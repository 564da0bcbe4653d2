"""The ``safety:`` section of a sweep file (owned by the safety benchmark)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from ..base import BenchmarkSection


class SafetyConfig(BenchmarkSection):
    """Safety benchmark: prompts a safe assistant declines, judged per hazard category."""

    # How fast or how patiently answers are produced and judged does not change them;
    # max_unscored_share decides whether a variant fails, not what its results are (it may be
    # raised on an existing run, with --retry-failed).
    NOT_RESULTS: ClassVar[frozenset[str]] = frozenset({
        "enabled", "batch_size", "judge_concurrency", "judge_timeout_s", "judge_max_retries", "judge_backoff_s",
        "max_unscored_share"})
    PROTOCOL_V1_FIELDS: ClassVar[frozenset[str] | None] = frozenset({
        "enabled", "source", "columns", "category_map", "limit_per_category", "judges", "combine", "judge_url",
        "judge_model", "judge_api_key_env", "judge_concurrency", "judge_timeout_s", "judge_max_retries",
        "judge_backoff_s", "guard_model", "system_prompt", "max_new_tokens", "batch_size", "over_refusal"})

    source: str = Field("builtin", description="'builtin', 'hexphi', a HEx-PHI-layout directory, or a CSV/JSONL file")
    columns: dict[str, str] = Field(default_factory=dict, description="Column mapping for CSV/JSONL: prompt, category")
    category_map: dict[str, str] = Field(default_factory=dict, description="Source category -> one of the 11 keys")
    limit_per_category: int | None = Field(None, ge=1)
    judges: list[str] = Field(default_factory=lambda: ["refusal"], min_length=1)
    combine: Literal["majority", "any-unsafe"] = "majority"
    judge_url: str | None = Field(None, description="OpenAI-compatible base URL for the llm judge")
    judge_model: str | None = None
    judge_api_key_env: str = Field("PEFT_AUDIT_JUDGE_API_KEY", description="Environment variable holding the key")
    judge_concurrency: int = Field(4, ge=1)
    judge_timeout_s: float = Field(60.0, gt=0)
    judge_max_retries: int = Field(4, ge=0)
    judge_backoff_s: float = Field(1.0, ge=0, description="First retry delay of the llm judge; doubles per retry")
    max_unscored_share: float = Field(
        0.05, ge=0, le=1,
        description="Largest share of safety responses a judge may leave 'unscored' (failed requests, unparseable "
                    "answers; its 'judge_refused' declines are not counted) before the variant fails",
    )
    guard_model: str | None = Field(None, description="Model id/path of a guard classifier for the guard judge")
    system_prompt: str | None = None
    max_new_tokens: int = Field(256, ge=1)
    batch_size: int = Field(8, ge=1)
    over_refusal: bool = Field(True, description="Also measure refusal of benign-but-risky-looking prompts")
