"""Executors run a list of planned variants and commit their stages to the store.

One interface (:class:`Executor`), one module per executor, one registration line each.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from pathlib import Path

    from ...config import SweepConfig
    from ...pipeline import RunOptions
    from ...store import Store
    from ..plan import PlannedVariant


class Executor(Protocol):
    def run(self, cfg: "SweepConfig", run_dir: "Path", todo: list["PlannedVariant"], store: "Store") -> dict[str, float]:
        """Run ``todo`` (bases first), committing to ``store``; return total seconds per stage."""
        ...


def get_executor(opts: "RunOptions") -> Executor:
    from .local import LocalExecutor

    executors = {"local": LocalExecutor}
    if opts.executor not in executors:
        raise ValueError(f"unknown executor {opts.executor!r}; valid: {', '.join(executors)}")
    return executors[opts.executor](opts)
