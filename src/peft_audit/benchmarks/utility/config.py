"""The ``utility:`` section of a sweep file (owned by the task-utility benchmark)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from ..base import BATCH_SIZE_HELP, BatchSizeSetting, BenchmarkSection

#: The benchmark's registry key, config section key and ``benchmark`` value of its stored rows.
NAME = "utility"


class UtilityConfig(BenchmarkSection):
    """Task utility on held-out rows of each variant's own training data (see the package docstring)."""

    NOT_RESULTS: ClassVar[frozenset[str]] = frozenset({"enabled", "batch_size"})
    # Enabled by default, it only adds rows of its own: left out of the protocol at its defaults.
    IN_PROTOCOL_AT_DEFAULTS: ClassVar[bool] = False

    enabled: bool = Field(True, description="Measure task utility (held-out loss, preference accuracy) of every "
                                            "variant trained here and of its base")
    task_file: str | None = Field(
        None, description="A held-out task file (.jsonl/.json/.csv with prompt/response, or prompt/chosen/rejected) "
                          "every variant and base is also measured on: the task of an adapter audited here")
    batch_size: BatchSizeSetting = Field("auto", description=BATCH_SIZE_HELP)
