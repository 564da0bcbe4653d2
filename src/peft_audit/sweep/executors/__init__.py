"""Executors run a list of planned variants and commit their stages to the store.

One interface (:class:`Executor`), one module per executor, one registration line each.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from .. import MissingDependencyError  # noqa: F401  (re-exported for callers)

if TYPE_CHECKING:
    from pathlib import Path

    from ...config import SweepConfig
    from ...store import Store
    from ..options import RunOptions, VariantRunner
    from ..plan import PlannedVariant


class Executor(Protocol):
    def run(self, cfg: "SweepConfig", run_dir: "Path", todo: list["PlannedVariant"], store: "Store",
            run_one: "VariantRunner") -> dict[str, float]:
        """Run ``todo`` (bases first) with ``run_one``, committing to ``store``; return total seconds
        per stage. ``run_one`` is handed in (the pipeline's), so executors never import the pipeline."""
        ...


def _local() -> type:
    from .local import LocalExecutor

    return LocalExecutor


def _ray() -> type:
    from .ray import RayExecutor  # imports Ray itself only when constructed (an optional extra)

    return RayExecutor


#: executor name -> its class, imported only when chosen.
EXECUTORS = {"local": _local, "ray": _ray}


def get_executor(opts: "RunOptions") -> Executor:
    """The executor named by ``opts.executor``; ValueError naming the valid ones if unknown.
    A missing optional dependency (Ray) raises :class:`MissingDependencyError` saying how to install it."""
    if opts.executor not in EXECUTORS:
        raise ValueError(f"unknown executor {opts.executor!r}; valid: {', '.join(EXECUTORS)}")
    return EXECUTORS[opts.executor]()(opts)
