"""Audit existing adapters against their base model: :func:`plan_audit`, :func:`run_audit`.

:func:`plan_audit` resolves every adapter reference, reads its metadata and checks it against
the base model; each adapter becomes either a :class:`~peft_audit.config.VariantSpec` (method
from ``peft_type``; ``algo``, ``lr``, ``epochs`` from the card/trainer state when written there,
else unknown) or an :class:`AdapterOutcome` with status ``skipped``/``failed`` and the reason.
:func:`run_audit` records those outcomes in the run's store and runs the same pipeline as a sweep
(base evaluated once, store, resume, executors, analysis, report).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import ALGOS, FairnessConfig, SafetyConfig, SweepConfig, VariantSpec, variant_id
from .compat import check_compatibility
from .errors import AdapterError
from .hub import resolve_adapter
from .metadata import AdapterMetadata, extract_metadata

AUDIT_JSON = "audit.json"


@dataclass
class AdapterOutcome:
    """One adapter of an audit: ``status`` is ``ok`` (will be evaluated), ``skipped`` or ``failed``."""

    ref: str
    status: str
    reason: str | None = None
    method: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    spec: VariantSpec | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"ref": self.ref, "status": self.status, "reason": self.reason, "method": self.method,
                "warnings": self.warnings, "metadata": self.metadata,
                "spec": self.spec.model_dump(mode="json") if self.spec else None}


@dataclass
class AuditPlan:
    config: SweepConfig
    outcomes: list[AdapterOutcome]

    @property
    def ok(self) -> list[AdapterOutcome]:
        return [o for o in self.outcomes if o.status == "ok"]


def _label(ref: str) -> str:
    name = ref.rstrip("/").split("@")[0]
    return name.split("/")[-1] if Path(name).exists() else name


def spec_from_metadata(base: str, ref: str, meta: AdapterMetadata) -> VariantSpec:
    """The VariantSpec of an existing adapter. ``epochs`` only when a whole number of epochs is
    written down (a fractional 2.5 stays unknown rather than being rounded)."""
    algo = meta.value("algo")
    lr = meta.value("learning_rate")
    epochs = meta.value("num_epochs")
    if isinstance(epochs, float) and epochs.is_integer():
        epochs = int(epochs)
    return VariantSpec(
        base_model=base,
        method=meta.method,
        algo=algo if algo in ALGOS else None,
        lr=float(lr) if isinstance(lr, (int, float)) and lr > 0 else None,
        epochs=epochs if isinstance(epochs, int) and epochs >= 1 else None,
        adapter=ref,
        label=_label(ref),
    )


def check_adapter(base: str, ref: str, *, force: bool = False, trust_remote_code: bool = False) -> AdapterOutcome:
    """Resolve, read and check one adapter; never raises for a bad adapter."""
    try:
        d = resolve_adapter(ref)
        meta = extract_metadata(d)
    except AdapterError as e:
        return AdapterOutcome(ref, e.status, str(e))
    md = meta.to_dict()
    compat = check_compatibility(d, base, force=force, trust_remote_code=trust_remote_code)
    if not compat.ok:
        return AdapterOutcome(ref, compat.status, compat.message(), meta.method, md, compat.warnings)
    return AdapterOutcome(ref, "ok", None, meta.method, md, compat.warnings, spec_from_metadata(base, ref, meta))


def plan_audit(
    base: str,
    refs: list[str],
    *,
    name: str = "audit",
    safety: SafetyConfig | None = None,
    fairness: FairnessConfig | None = None,
    utility: Any = None,
    device: str = "auto",
    eval_dtype: str = "auto",
    force: bool = False,
    trust_remote_code: bool = False,
    progress: Callable[[int], None] | None = None,
) -> AuditPlan:
    """Check every adapter in ``refs`` and build the sweep config of the good ones (``utility``: the
    task-utility section, whose ``task_file`` measures the adapters' task; default: its defaults)."""
    outcomes = []
    for ref in dict.fromkeys(refs):
        outcomes.append(check_adapter(base, ref, force=force, trust_remote_code=trust_remote_code))
        if progress:
            progress(1)
    cfg = SweepConfig(
        name=name, base_models=[base], methods=[], variants=[o.spec for o in outcomes if o.spec],
        device=device, eval_dtype=eval_dtype, trust_remote_code=trust_remote_code, force_adapters=force,
        safety=safety or SafetyConfig(), fairness=fairness or FairnessConfig(),
        **({"utility": utility} if utility is not None else {}),
    )
    return AuditPlan(cfg, outcomes)


def record_outcomes(plan: AuditPlan, run_dir: Path) -> None:
    """Write ``RUN_DIR/audit.json`` and register every adapter in the store before the pipeline
    runs: good ones with their metadata (the pipeline keeps a registered row), bad ones as
    skipped/failed with the reason, so ``show`` and the report list them."""
    from ..store import Store, results_path
    from ..sweep.plan import expand

    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / AUDIT_JSON).write_text(json.dumps([o.to_dict() for o in plan.outcomes], indent=2, default=str))
    planned = {pv.spec.adapter: pv for pv in expand(plan.config) if pv.spec.adapter}
    base = plan.config.base_models[0]
    base_id = variant_id(plan.config.config_hash_payload(VariantSpec(base_model=base)))
    with Store(results_path(run_dir)) as store:
        for o in plan.outcomes:
            meta = {"adapter": o.metadata, "adapter_warnings": o.warnings}
            if o.spec is not None:
                pv = planned[o.ref]
                store.register_variant(pv.id, spec=pv.spec.model_dump(mode="json"), config=pv.payload,
                                       base_id=pv.base_id, metadata=meta)
                continue
            # Not evaluable: a placeholder row (its own id) that carries the reason.
            spec = {"base_model": base, "method": o.method or "unknown", "adapter": o.ref, "label": _label(o.ref)}
            vid = variant_id({"audit_adapter": o.ref, "base": base})
            store.register_variant(vid, spec=spec, config={"audit_adapter": o.ref}, base_id=base_id, metadata=meta)
            store.update_variant(vid, status=o.status, error=o.reason)


def run_audit(plan: AuditPlan, run_dir: str | Path, opts: Any = None):
    """Record the outcomes, then evaluate the base and the good adapters with
    :func:`peft_audit.pipeline.run_sweep`. Returns its ``RunResult``."""
    from ..pipeline import run_sweep
    from ..sweep.options import RunOptions

    run_dir = Path(run_dir)
    if not any(o.spec for o in plan.outcomes):
        raise ValueError(f"none of the {len(plan.outcomes)} adapter(s) can be evaluated (reasons above), so nothing "
                         "was run; fix them, or pass --force if you are sure they fit the base model")
    return run_sweep(plan.config, run_dir, opts or RunOptions(), before=lambda d: record_outcomes(plan, d))
