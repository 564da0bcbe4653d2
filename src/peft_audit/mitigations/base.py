"""What a repair method is (:class:`Mitigation`) and what a weight repair is given
(:class:`RepairInputs`); the methods are registered in :mod:`.registry`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from ..config import SweepConfig, VariantSpec


@dataclass(frozen=True)
class RepairInputs:
    """What a weight repair reads and where it writes: the run's config, its directory (for
    caches), the repaired variant's spec, the original's adapter directory, and ``out_dir``."""

    cfg: SweepConfig
    run_dir: Path
    spec: VariantSpec
    original_adapter: Path
    out_dir: Path


@dataclass(frozen=True)
class Mitigation:
    """One repair method: its name, its options (a pydantic model whose fields carry defaults and
    help), a short description of one setting for labels (``safety-mix 0.25``), ``derive`` (the
    repaired spec before the repair fields are added; the original's by default), ``check`` (a
    one-line ValueError for an original or options it cannot repair, before anything runs) and
    ``build`` (weight repairs: write the repaired adapter, return a record of what was done)."""

    name: str
    options: type[BaseModel]
    describe: Callable[[Any], str]
    derive: Callable[[VariantSpec, Any], VariantSpec] = field(default=lambda spec, options: spec)
    check: Callable[[VariantSpec, Any], None] = field(default=lambda spec, options: None)
    build: Callable[[RepairInputs, Any], dict[str, Any]] | None = None
