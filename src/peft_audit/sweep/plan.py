"""Expand a sweep file into concrete variants, deterministically, with stable ids.

Pure: no model is loaded and nothing is written. The order is fixed (base models first, then
the cross product in the order written in the file, then explicit ``variants:``), so the same
file always gives the same table and the same ids.

Identity: a variant's id is the hash of everything that determines the *model* being
evaluated (base model, method and its arguments, algo, lr, epochs, seed, and the training
settings for trained variants); cosmetic fields (``label``, logging) do not change it. The
benchmark settings are the run's evaluation protocol: they are fixed per run directory (see
:func:`eval_protocol_hash`), so a run directory never mixes results of two protocols.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..config import ConfigError, SweepConfig, VariantSpec, variant_id
from ..identity import identity_payload


@dataclass(frozen=True)
class PlannedVariant:
    id: str
    spec: VariantSpec
    base_id: str | None  # the base-model variant this one is compared with (None for bases)
    payload: dict[str, Any]  # what was hashed into the id

    @property
    def display(self) -> str:
        return variant_display(self.spec.model_dump())


def variant_display(v: Mapping[str, Any]) -> str:
    """The one human name of a variant, from its spec fields (a VariantSpec dump or a store row):
    its label if it has one, else ``base:<model>``, ``<method>:<adapter>`` or
    ``<method>/<algo>/lr=<lr>/ep=<epochs>/seed=<seed>`` (``?`` for a missing field)."""
    if v.get("label"):
        return v["label"]
    if v.get("method", "base") == "base":
        return f"base:{v['base_model']}"
    if v.get("adapter"):
        return f"{v['method']}:{v['adapter']}"

    def f(x: Any, fmt: str = "") -> str:
        return "?" if x is None else format(x, fmt)

    return f"{v['method']}/{f(v.get('algo'))}/lr={f(v.get('lr'), 'g')}/ep={f(v.get('epochs'))}/seed={f(v.get('seed'))}"


def _grid(args: dict[str, Any], grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    if not grid:
        return [dict(args)]
    keys = list(grid)
    return [{**args, **dict(zip(keys, combo))} for combo in itertools.product(*(grid[k] for k in keys))]


def expand(cfg: SweepConfig, *, validate: bool = True) -> list[PlannedVariant]:
    """All variants of the sweep, bases first; duplicates (same id) appear once.

    With ``validate`` (the default) invalid combinations raise :class:`ConfigError` naming the
    variant before anything runs (see :func:`validate_plan`).
    """
    if validate:
        for m in cfg.methods:
            for key, values in m.grid.items():
                if not values:
                    raise ConfigError(f"methods[{m.name}].grid.{key} is an empty list: it would expand to no variants")
    seen: dict[str, PlannedVariant] = {}

    def add(spec: VariantSpec) -> None:
        payload = cfg.config_hash_payload(spec)
        vid = variant_id(payload)
        if vid in seen:
            return
        base_id = None
        if not spec.is_base():
            base_spec = VariantSpec(base_model=spec.base_model)
            base_id = variant_id(cfg.config_hash_payload(base_spec))
        seen[vid] = PlannedVariant(vid, spec, base_id, payload)

    bases = list(dict.fromkeys([*cfg.base_models, *(v.base_model for v in cfg.variants)]))
    for base in bases:
        add(VariantSpec(base_model=base))
    for base in cfg.base_models:
        for m in cfg.methods:
            for args in _grid(m.args, m.grid):
                for algo, lr, epochs, seed in itertools.product(cfg.algos, m.lr or cfg.lr, cfg.epochs, cfg.seeds):
                    add(
                        VariantSpec(
                            base_model=base, method=m.name, method_args=args, algo=algo, lr=lr, epochs=epochs, seed=seed
                        )
                    )
    for v in cfg.variants:
        add(v)
    plan = list(seen.values())
    if validate:
        validate_plan(cfg, plan)
    return plan


def validate_plan(cfg: SweepConfig, plan: list[PlannedVariant]) -> None:
    """Reject combinations that cannot run, naming the variant; pure (no model is loaded).

    Checks: method arguments unknown to the method (or of the wrong type) for variants this
    sweep trains; two different variants with the same ``label`` (the report would conflate
    them); quantised loading (``training.load_in``) when the device is explicitly not CUDA
    (bitsandbytes is GPU-only).
    """
    from ..methods import resolve_method_args

    problems: list[str] = []
    labels: dict[str, PlannedVariant] = {}
    for pv in plan:
        s = pv.spec
        where = f"variant {pv.id} ({pv.display})"
        if not s.is_base() and not s.adapter:  # a given adapter's args describe it, they build nothing
            try:
                resolve_method_args(s.method, s.method_args)
            except ValueError as e:
                problems.append(f"{where}: {e}")
        if s.label:
            other = labels.setdefault(s.label, pv)
            if other is not pv:
                problems.append(f"{where}: label {s.label!r} is already used by variant {other.id}; labels must be unique")
    trains = any(not pv.spec.is_base() and not pv.spec.adapter for pv in plan)
    if trains and cfg.training.load_in and not cfg.device.startswith(("cuda", "auto")):
        problems.append(
            f"training.load_in={cfg.training.load_in!r} needs a CUDA GPU (bitsandbytes) but device is "
            f"{cfg.device!r}; remove load_in or set device: cuda"
        )
    if problems:
        raise ConfigError("invalid sweep:\n" + "\n".join(f"  {p}" for p in problems))


#: Safety settings that do not change any result, so they are not part of the protocol hash.
PROTOCOL_NEUTRAL_SAFETY_FIELDS = ("max_unscored_share",)


def eval_protocol_hash(cfg: SweepConfig) -> str:
    """Hash of the benchmark settings that every variant of a run is evaluated with: one entry per
    enabled benchmark holding its result-changing, non-default settings (see
    :mod:`peft_audit.identity`), so neither a new defaulted setting nor concurrency, timeouts,
    retries or batch sizes change it."""
    from ..benchmarks.registry import BENCHMARKS

    sections = {name: getattr(cfg, name) for name in BENCHMARKS}
    return variant_id({name: identity_payload(s) for name, s in sections.items() if s.enabled})


def legacy_protocol_hash(cfg: SweepConfig) -> str | None:
    """The protocol hash a version-1 run directory stored for this config (the full dump of the
    safety and fairness sections as they were then), so such a directory is recognised and resumed."""
    from ..benchmarks.registry import BENCHMARKS

    payload = {}
    for name in BENCHMARKS:
        section = getattr(cfg, name)
        fields = type(section).PROTOCOL_V1_FIELDS
        if fields is None:
            continue
        extra = {k for k in identity_payload(section) if k not in fields}
        if extra:  # a setting that did not exist then: no version-1 directory can have used it
            return None
        payload[name] = section.protocol_v1_dump()
    return variant_id(payload)
