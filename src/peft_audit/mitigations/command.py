"""``peft-audit mitigate``: derive repaired variants of a finished variant and evaluate them in its
run directory, under the run's stored protocol.

The run directory's stored config (its ``config`` meta, every benchmark section included) gets
the repaired variants appended to ``variants:``, and :func:`peft_audit.pipeline.run_sweep` runs
it: the same lock, resume, failure isolation, reports and exit codes as ``peft-audit run``. Only
variants are added, so the evaluation protocol cannot change (and ``prepare_run`` refuses a
config whose protocol differs from the directory's, as for ``run``). A repaired
variant's id covers its original's spec plus the repair, so running the same command again
resumes it, and the stored config keeps every repair made so far.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..config import SweepConfig, VariantSpec, parse_config
from .registry import get_mitigation, repair_label, repaired_spec


def find_variant(rows: list[dict[str, Any]], query: str) -> dict[str, Any]:
    """The store row of the fine-tuned variant ``query`` names: its id, label or a unique id
    prefix (:func:`peft_audit.report.card.resolve_variant`); ValueError naming the valid ones."""
    import pandas as pd

    from ..report.card import resolve_variant
    from ..sweep.plan import variant_labels

    labels = variant_labels(rows)
    tuned = [r for r in rows if r["base_id"] is not None]
    vid = resolve_variant(pd.DataFrame({"id": [r["id"] for r in tuned], "label": [labels[r["id"]] for r in tuned]},
                                       columns=["id", "label"]), query)
    return next(r for r in tuned if r["id"] == vid)


def split_options(methods: list[str], options: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each method's share of ``options`` (the options its model declares); ValueError for an
    option none of ``methods`` takes, naming the methods that do."""
    from .registry import MITIGATIONS

    out: dict[str, dict[str, Any]] = {m: {} for m in methods}
    for key, value in options.items():
        takers = [m for m in methods if key in get_mitigation(m).options.model_fields]
        if not takers:
            flag = "--" + key.replace("_", "-")
            owners = [n for n, m in MITIGATIONS.items() if key in m.options.model_fields]
            raise ValueError(f"{flag} is an option of {', '.join(owners)}, not of {', '.join(methods)}")
        for m in takers:
            out[m][key] = value
    return out


def plan_repairs(run_dir: Path, variant: str, methods: list[str],
                 options: dict[str, Any]) -> tuple[SweepConfig, str, list[VariantSpec]]:
    """The run's config with the repaired variants of ``variant`` added, the original's id, and the
    repaired specs. Reads the run directory only; every error is one line (unknown method or
    variant naming the valid ones, an unfinished or unrepairable original, bad options)."""
    from ..store import open_existing
    from ..sweep.plan import variant_labels

    if not methods:
        raise ValueError("--with names no repair method; valid: " + ", ".join(_names()))
    for m in methods:
        get_mitigation(m)
    per_method = split_options(methods, options)
    store = open_existing(run_dir)
    try:
        stored = store.get_meta("config")
        rows = store.variants()
    finally:
        store.close()
    if stored is None:
        raise ValueError(f"{run_dir}: the results store holds no config; run `peft-audit run CONFIG --out {run_dir}` first")
    row = find_variant(rows, variant)
    label = variant_labels(rows)[row["id"]]
    original = VariantSpec.model_validate(row["spec"])
    if row["status"] != "done":
        raise ValueError(f"variant {label!r} ({row['id']}) is {row['status']}, not done; finish it with "
                         f"`peft-audit run CONFIG --out {run_dir}` before repairing it")
    if original.repair is not None:
        raise ValueError(f"variant {label!r} ({row['id']}) is itself a repair of {original.repair_of}; repair that one")
    if original.adapter:
        raise ValueError(f"variant {label!r} ({row['id']}) is a given adapter ({original.adapter}); mitigate repairs "
                         "variants trained in the run")
    specs = [repaired_spec(original, row["id"], m, per_method[m], label) for m in methods]
    specs = _unique_labels(specs, rows, parse_config(stored, f"{run_dir}: stored config"), label)
    cfg = parse_config({**stored, "variants": [*stored.get("variants", []), *(s.model_dump(mode="json") for s in specs)]},
                       f"{run_dir}: stored config")
    return cfg, row["id"], specs


def _unique_labels(specs: list[VariantSpec], rows: list[dict[str, Any]], cfg: SweepConfig,
                   original_label: str) -> list[VariantSpec]:
    """``specs`` with ``· #<id prefix>`` added to a label another variant of the run already has
    (two settings a label does not tell apart, e.g. another ``--unaligned-base``)."""
    from ..config import variant_id
    from ..sweep.plan import variant_labels

    taken = {name: vid for vid, name in variant_labels(rows).items()}
    out = []
    for spec in specs:
        vid = variant_id(cfg.config_hash_payload(spec))
        if taken.get(spec.label, vid) != vid:
            method = get_mitigation(spec.repair.method)
            setting = method.describe(method.options.model_validate(spec.repair.options))
            spec = spec.model_copy(update={"label": repair_label(original_label, setting, f" · #{vid[:6]}")})
        out.append(spec)
    return out


def _names() -> list[str]:
    from .registry import MITIGATIONS

    return list(MITIGATIONS)


def mitigate(run_dir: Path, variant: str, methods: list[str], options: dict[str, Any], opts=None):
    """Plan the repairs (:func:`plan_repairs`) and run them into ``run_dir`` with
    :func:`peft_audit.pipeline.run_sweep` (lock, resume, reports). Returns its ``RunResult``."""
    from ..pipeline import run_sweep
    from ..sweep.options import RunOptions

    cfg, _, _ = plan_repairs(Path(run_dir), variant, methods, options)
    return run_sweep(cfg, Path(run_dir), opts or RunOptions())
