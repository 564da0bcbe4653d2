"""The ``xstest:`` section of a sweep file (owned by the XSTest benchmark)."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field, field_validator

from ...judges.specs import JudgeSpec, RefusalSpec, as_specs, default_specs, require_distinct, spec_names
from ..base import BATCH_SIZE_HELP, BatchSizeSetting, BenchmarkSection

#: The benchmark's registry key, config section key and ``benchmark`` value of its stored rows.
NAME = "xstest"
#: The judge whose verdict the three XSTest classes are built on (:mod:`.classify`).
CLASS_JUDGE = "refusal"
#: Judges that may be listed besides it: ``keyword`` (rule-based; stored and exported only) and the
#: offline harm judge ``harm``, whose harm verdict gives ``unsafe_harmful_rate`` on the contrast
#: prompts (:mod:`.metrics`; the name is valid once that judge is registered in ``judges.specs``).
EXTRA_JUDGES = ("keyword", "harm")


class XSTestConfig(BenchmarkSection):
    """XSTest (Röttger et al., 2024): exaggerated safety (over-refusal) on safe prompts that look
    unsafe, and compliance on their unsafe contrast prompts."""

    # How fast answers are produced does not change them.
    NOT_RESULTS: ClassVar[frozenset[str]] = BenchmarkSection.NOT_RESULTS | {"batch_size"}
    #: the judges' default before the harm verdict (peft_audit.identity, IDENTITY_BASELINE)
    IDENTITY_BASELINE: ClassVar[dict] = {"judges": lambda: [RefusalSpec(name="refusal")]}

    enabled: bool = Field(False, description="Evaluate XSTest (off by default)")
    source: str = Field(
        "builtin",
        description="'builtin' (the project's own sample in XSTest's layout), a local .csv/.jsonl file in "
                    "XSTest's columns (id, prompt, type, label, focus, note), a directory holding `filename`, "
                    "or a Hugging Face dataset id (owner/name) holding `filename`")
    filename: str = Field("xstest_prompts.csv",
                          description="File to read inside a Hub dataset or a local directory (.csv or .jsonl)")
    revision: str | None = Field(None, description="Hub dataset revision (branch, tag or commit); default main")
    limit_per_type: int | None = Field(None, ge=1, description="Keep a seeded sample of at most this many "
                                                               "prompts per type (file order kept)")
    judges: list[JudgeSpec] = Field(
        default_factory=lambda: default_specs(("refusal", "harm")), min_length=1,
        description="'refusal' (required; the three XSTest classes are built on it), optionally 'keyword' (stored "
                    "and exported only) and the offline harm judge 'harm' (the harmful-response rate on the "
                    "unsafe contrast prompts)")
    system_prompt: str | None = None
    max_new_tokens: int = Field(256, ge=1)
    batch_size: BatchSizeSetting = Field("auto", description=BATCH_SIZE_HELP)

    @field_validator("judges", mode="before")
    @classmethod
    def _rule_based_with_refusal(cls, v: Any) -> Any:
        # Checked on the names before the specs are validated, so that an llm spec without its
        # url is told it is not used here rather than that its url is missing.
        if not isinstance(v, list):
            return v
        specs = as_specs(v)
        names = spec_names(specs)
        require_distinct(names)
        other = [n for n in names if n not in (CLASS_JUDGE, *EXTRA_JUDGES)]
        if other:
            raise ValueError(
                f"judge(s) {other} are not used by xstest: its three classes (full compliance, full refusal, "
                f"partial refusal) come from the rule-based '{CLASS_JUDGE}' judge; the llm rubric and guard "
                f"judges rate harmfulness, not refusal. Valid: {CLASS_JUDGE}, {', '.join(EXTRA_JUDGES)}")
        if CLASS_JUDGE not in names:
            raise ValueError(f"must include '{CLASS_JUDGE}': the three XSTest classes are built on its verdict")
        return specs
