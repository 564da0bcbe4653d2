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
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..config import ConfigError, SweepConfig, VariantSpec, variant_id
from ..identity import identity_payload
from ..shown_text import LABEL_MAX, NAME_MAX, plain


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
    """The readable name of one variant seen on its own (console lines, tracking run names), seed
    included since the other seeds are out of sight; :func:`variant_labels` names a set."""
    return next(iter(variant_labels([v], show_seed=True).values()))


def _lr_text(lr: float) -> str:
    """``1e-3``, ``2.5e-4``, ``0.1`` (scientific below 0.1, trailing zeros dropped)."""
    if lr == 0 or abs(lr) >= 0.1:
        return format(lr, "g")
    mantissa, exponent = f"{lr:.2e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"


def _short_model(name: str) -> str:
    return plain(str(name).rstrip("/").rsplit("/", 1)[-1], limit=NAME_MAX)


def _flat(v: Mapping[str, Any]) -> dict[str, Any]:
    # a store row keeps the full spec under 'spec'; a spec dump or a frame row is flat
    spec = v.get("spec") if isinstance(v.get("spec"), Mapping) else {}
    return {**spec, **{k: x for k, x in v.items() if x is not None or k not in spec}}


def variant_labels(variants: Iterable[Mapping[str, Any]], *, show_seed: bool | None = None) -> dict[str, str]:
    """The one readable name of each variant of a set, by id (the key ``id``; index when absent).

    The config's ``label`` when given; ``<base model> (base)`` for a base model; an audited
    adapter is ``<method> · <adapter dir name>``; a trained one ``lora · sft · lr 1e-3 · 1 ep``,
    plus the method arguments that differ between variants of that method (``r 16``), the base
    model's short name when the set has several bases, and ``seed N`` when it has several seeds
    (``show_seed=True``: always).
    Missing fields are left out. Names are for the eye: control characters and escape sequences
    are removed (:func:`peft_audit.shown_text.plain`), a label longer than ``LABEL_MAX`` (from a
    store written before the config check refused them) and a long model name are shortened with
    ``…``. Two variants that would still share a name get their id's first 6 characters
    appended, so a name never stands for two variants. Accepts store rows (with ``spec``),
    ``VariantSpec`` dumps and variants-frame rows.
    """
    rows = [_flat(v) for v in variants]
    ids = [str(r.get("id", i)) for i, r in enumerate(rows)]
    tuned = [r for r in rows if r.get("method", "base") != "base"]
    several_bases = len({r.get("base_model") for r in tuned}) > 1
    several_seeds = show_seed or len({r.get("seed") for r in tuned if r.get("seed") is not None}) > 1
    args_by_method: dict[str, list[dict]] = {}
    for r in tuned:
        args_by_method.setdefault(r["method"], []).append(r.get("method_args") or {})
    varying = {m: sorted({k for a in args for k in a if len({repr(b.get(k)) for b in args}) > 1})
               for m, args in args_by_method.items()}
    names = []
    for r in rows:
        if isinstance(r.get("label"), str) and r["label"]:  # a frame row holds NaN for no label
            names.append(plain(r["label"], limit=LABEL_MAX))
            continue
        if r.get("method", "base") == "base":
            names.append(f"{plain(r.get('base_model', '?'), limit=NAME_MAX)} (base)")
            continue
        parts = [r["method"]] + [f"{k} {(r.get('method_args') or {}).get(k)}" for k in varying.get(r["method"], [])]
        if r.get("adapter"):
            parts.append(_short_model(r["adapter"]))
        else:
            parts += [str(r["algo"])] if r.get("algo") else []
            parts += [f"lr {_lr_text(float(r['lr']))}"] if r.get("lr") is not None and r.get("lr") == r.get("lr") else []
            parts += [f"{int(r['epochs'])} ep"] if r.get("epochs") is not None and r.get("epochs") == r.get("epochs") else []
        if several_bases:
            parts.append(_short_model(r.get("base_model", "?")))
        if several_seeds and r.get("seed") is not None and r.get("seed") == r.get("seed"):
            parts.append(f"seed {int(r['seed'])}")
        names.append(plain(" · ".join(parts)))
    seen: dict[str, int] = {}
    for n in names:
        seen[n] = seen.get(n, 0) + 1
    return {i: (n if seen[n] == 1 else f"{n} · #{i[:6]}") for i, n in zip(ids, names)}


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
    :mod:`peft_audit.identity`; a benchmark that only adds its own results, e.g. ``utility``, is
    left out at its defaults: ``BenchmarkSection.IN_PROTOCOL_AT_DEFAULTS``), so neither a new defaulted setting nor concurrency, timeouts,
    retries or batch sizes change it; plus ``eval_dtype`` when it is not ``auto`` (a bfloat16
    evaluation is not a float32 one)."""
    from ..benchmarks.registry import BENCHMARKS

    sections = {name: getattr(cfg, name) for name in BENCHMARKS}
    payload = {name: identity_payload(s) for name, s in sections.items()
               if s.enabled and (type(s).IN_PROTOCOL_AT_DEFAULTS or identity_payload(s))}
    if cfg.eval_dtype != "auto":
        payload["eval_dtype"] = cfg.eval_dtype  # a key no benchmark section is named
    return variant_id(payload)


def legacy_protocol_hash(cfg: SweepConfig) -> str | None:
    """The protocol hash a version-1 run directory stored for this config (the full dump of the
    safety and fairness sections as they were then), so such a directory is recognised and resumed."""
    from ..benchmarks.registry import BENCHMARKS

    if cfg.eval_dtype != "auto":  # a setting that did not exist then
        return None
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
