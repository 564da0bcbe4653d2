"""The ``fairness:`` section of a sweep file (owned by the BBQ benchmark)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from ..base import BATCH_SIZE_HELP, BatchSizeSetting, BenchmarkSection


class FairnessConfig(BenchmarkSection):
    """Fairness benchmark: BBQ (Parrish et al., 2022)."""

    NOT_RESULTS: ClassVar[frozenset[str]] = BenchmarkSection.NOT_RESULTS | {"batch_size"}
    PROTOCOL_V1_FIELDS: ClassVar[frozenset[str] | None] = frozenset({
        "enabled", "source", "per_cell", "categories", "mode", "prompt_format", "length_normalise", "batch_size",
        "bootstrap", "skip_bad_items", "metadata_csv"})

    source: str = Field("builtin", description="'builtin', a directory of official BBQ JSONL files, or a HF dataset id")
    per_cell: int | None = Field(None, ge=1, description="Items per (category, context condition, polarity)")
    categories: list[str] | None = None
    mode: Literal["loglik", "generate"] = "loglik"
    prompt_format: Literal["plain", "chat"] = "plain"
    length_normalise: bool = False
    batch_size: BatchSizeSetting = Field("auto", description=BATCH_SIZE_HELP)
    bootstrap: int = Field(1000, ge=0, description="Bootstrap resamples for 95% intervals (0 disables)")
    skip_bad_items: bool = False
    metadata_csv: str | None = Field(None, description="BBQ additional_metadata.csv (target_loc), preferred if given")

    def protocol_v1_dump(self) -> dict:
        """This section as run directories of schema version 1 hashed it (every field then)."""
        dump = self.model_dump(include=set(self.PROTOCOL_V1_FIELDS))
        if dump["batch_size"] == "auto":  # the default was then 16
            dump["batch_size"] = 16
        return dump
