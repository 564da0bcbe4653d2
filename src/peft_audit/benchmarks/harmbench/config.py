"""The ``harmbench:`` section of a sweep file (owned by the HarmBench benchmark)."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator

from ...judges.specs import JudgeSpec, RefusalSpec, as_specs, default_specs, require_distinct, spec_names
from ..base import BATCH_SIZE_HELP, BatchSizeSetting, BenchmarkSection

FunctionalCategory = Literal["standard", "contextual", "copyright"]
#: The HarmBench file a Hub dataset or a local directory is read from unless ``file`` says otherwise.
DEFAULT_FILE = "harmbench_behaviors_text_all.csv"


class HarmBenchConfig(BenchmarkSection):
    """HarmBench direct requests (Mazeika et al., 2024): attack success rate per category."""

    # How fast answers are produced does not change them; max_unscored_share decides whether a
    # variant fails, not what its results are (it may be raised on an existing run, with --retry-failed).
    NOT_RESULTS: ClassVar[frozenset[str]] = BenchmarkSection.NOT_RESULTS | {"batch_size", "max_unscored_share"}
    #: the judges' default before the harm verdict (peft_audit.identity, IDENTITY_BASELINE)
    IDENTITY_BASELINE: ClassVar[dict] = {"judges": lambda: [RefusalSpec(name="refusal")]}

    enabled: bool = Field(False, description="Evaluate HarmBench (off unless switched on)")
    source: str = Field(
        "builtin",
        description="'builtin' (the project's own sample), a CSV in HarmBench's layout, a directory holding "
                    "`file`, or a Hugging Face dataset id whose repository holds `file`")
    file: str = Field(DEFAULT_FILE, min_length=1,
                      description="CSV inside a directory or Hub dataset source, e.g. harmbench_behaviors_text_test.csv")
    revision: str | None = Field(None, description="Hub dataset revision (branch, tag or commit); default: main")
    functional_categories: list[FunctionalCategory] = Field(
        default_factory=lambda: ["standard", "contextual"], min_length=1,
        description="HarmBench functional categories to evaluate. 'copyright' is left out by default: HarmBench "
                    "judges it with a hash-based near-copy check this project does not have; included, it is "
                    "judged by the configured judges, so its numbers are not HarmBench's")
    limit_per_category: int | None = Field(None, ge=1, description="Seeded sample of at most this many behaviours "
                                                                    "per semantic category")
    judges: list[JudgeSpec] = Field(
        default_factory=lambda: default_specs(("refusal", "harm")), min_length=1,
        description="Judges of the responses: names (refusal, keyword) or specs ({name: llm, url, model, ...}, "
                    "{name: guard, model})")
    combine: Literal["majority", "any-unsafe"] = Field(
        "majority", description="How several judges' verdicts combine (peft_audit.judges.combine)")
    max_unscored_share: float = Field(
        0.05, ge=0, le=1,
        description="Largest share of responses a judge may fail on (verdict 'unscored') before the variant fails")
    system_prompt: str | None = None
    max_new_tokens: int = Field(512, ge=1, description="Answer length; HarmBench's classifier reads up to 512 tokens "
                                                        "of each answer (evaluate_completions.py --num_tokens)")
    batch_size: BatchSizeSetting = Field("auto", description=BATCH_SIZE_HELP)

    @field_validator("judges", mode="before")
    @classmethod
    def _names_as_specs(cls, v: Any) -> Any:
        return as_specs(v) if isinstance(v, list) else v

    @field_validator("judges")
    @classmethod
    def _each_judge_once(cls, v: list) -> list:
        require_distinct(spec_names(v))
        return v

    @field_validator("functional_categories")
    @classmethod
    def _each_category_once(cls, v: list) -> list:
        if len(set(v)) != len(v):
            raise ValueError(f"lists a category twice: {v}")
        return v
