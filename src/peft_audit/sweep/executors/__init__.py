"""Executors run a list of planned variants and commit their stages to the store.

One interface (:class:`Executor`), one module per executor, one registration line each.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from .. import MissingDependencyError  # noqa: F401  (re-exported for callers)

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


#: executor name -> "module:class", imported only when chosen (Ray is an optional extra).
EXECUTORS = {"local": "local:LocalExecutor", "ray": "ray:RayExecutor"}


def get_executor(opts: "RunOptions") -> Executor:
    """The executor named by ``opts.executor``; ValueError naming the valid ones if unknown.
    A missing optional dependency (Ray) raises :class:`MissingDependencyError` saying how to install it."""
    import importlib

    if opts.executor not in EXECUTORS:
        raise ValueError(f"unknown executor {opts.executor!r}; valid: {', '.join(EXECUTORS)}")
    module, cls = EXECUTORS[opts.executor].split(":")
    return getattr(importlib.import_module(f"{__name__}.{module}"), cls)(opts)
