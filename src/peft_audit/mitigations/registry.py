"""The repair methods of ``peft-audit mitigate``, by name: one module each, one line here.

A :class:`Mitigation` turns a finished variant's spec into a repaired variant's spec. A method
that retrains (``safety-mix``) changes the spec's training settings and the pipeline trains it
like any variant; a method that repairs weights (``safelora``, ``safemerge``) has a ``build``
that the pipeline calls instead of training (:func:`build_repair`), writing the repaired adapter
next to the others. Either way the repaired variant keeps ``repair_of`` (the original's id) and
``repair`` (method and every option) in its spec, so its id, tables, card and exports say what
it was repaired from and how.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ..config import RepairSpec, SweepConfig, VariantSpec
from ..textio import atomic_directory
from .base import Mitigation, RepairInputs


def _registered() -> dict[str, Mitigation]:
    from . import safelora, safemerge, safety_mix

    return {m.name: m for m in (
        safety_mix.MITIGATION,
        safelora.MITIGATION,
        safemerge.MITIGATION,
    )}


MITIGATIONS: dict[str, Mitigation] = _registered()


def get_mitigation(name: str) -> Mitigation:
    """The method called ``name``; ValueError naming the valid ones."""
    if name not in MITIGATIONS:
        raise ValueError(f"unknown repair method {name!r}; valid: {', '.join(MITIGATIONS)}")
    return MITIGATIONS[name]


def build_repair(cfg: SweepConfig, run_dir: Path, spec: VariantSpec, out_dir: Path) -> dict[str, Any]:
    """Write the repaired adapter of ``spec`` (a weight repair) into ``out_dir``, atomically (a
    process killed half-way leaves no adapter), with a provenance file: the original's, plus
    ``repair`` (original id, method, options, what the method did, seconds). Returns it."""
    from .. import faults
    from ..store import adapter_dir_for
    from ..training.provenance import PROVENANCE_FILE, read_provenance, write_provenance

    assert spec.repair is not None and spec.repair_of is not None  # the pipeline calls this for repairs only
    method = get_mitigation(spec.repair.method)
    options = method.options.model_validate(spec.repair.options)
    original = adapter_dir_for(run_dir, spec.repair_of)
    if not (original / PROVENANCE_FILE).is_file():
        raise FileNotFoundError(f"{original}: the adapter of variant {spec.repair_of}, which {spec.repair.method} "
                                "repairs, is missing; run the original's sweep again to retrain it")
    with atomic_directory(out_dir) as tmp:
        start = time.perf_counter()
        record = method.build(RepairInputs(cfg, Path(run_dir), spec, original, tmp), options)
        provenance = {**read_provenance(original), "repair": {
            "of": spec.repair_of, "method": spec.repair.method, "options": spec.repair.options, **record,
            "wall_seconds": time.perf_counter() - start}}
        provenance.pop("schema_version", None)
        write_provenance(tmp, provenance)
        provenance = read_provenance(tmp)
        faults.point("mitigate.saved")
    return provenance


def repaired_spec(original: VariantSpec, original_id: str, method_name: str, options: dict[str, Any],
                  original_label: str) -> VariantSpec:
    """The spec of ``original`` repaired by ``method_name`` with ``options`` (validated by the
    method, every option written out), labelled ``<original_label> ⟶ <method> <setting>``;
    ValueError (one line) for a bad option or where the method cannot repair it."""
    from pydantic import ValidationError

    method = get_mitigation(method_name)
    try:
        opts = method.options.model_validate(options)
    except ValidationError as e:
        first = e.errors()[0]
        flag = "--" + "-".join(str(x) for x in first["loc"]).replace("_", "-")
        raise ValueError(f"{flag} of {method_name}: {first['msg'].removeprefix('Value error, ')}, "
                         f"got {first.get('input')!r}") from None
    method.check(original, opts)
    derived = method.derive(original, opts)
    return VariantSpec.model_validate({
        **derived.model_dump(), "label": repair_label(original_label, method.describe(opts)), "repair_of": original_id,
        "repair": RepairSpec(method=method_name, options=opts.model_dump(mode="json"))})


def repair_label(original_label: str, setting: str, suffix: str = "") -> str:
    """``<original label> ⟶ <setting><suffix>``, the original's label shortened (``…``) where the
    whole would pass the labels' length limit (:data:`peft_audit.shown_text.LABEL_MAX`)."""
    from ..shown_text import LABEL_MAX

    tail = f" ⟶ {setting}{suffix}"
    head = original_label if len(original_label) + len(tail) <= LABEL_MAX else \
        original_label[:max(0, LABEL_MAX - len(tail) - 1)] + "…"
    return head + tail
