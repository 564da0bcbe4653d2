"""Groups of variants that share one loaded base model (the sweep's ``share_base``).

A group is variants of one base model and one family (:data:`FAMILIES`): the base model and
the LoRA variants this run trains on it, or its prompt-tuning, P-tuning, prefix-tuning or IA3
variants, at most :data:`MAX_GROUP` at once. A worker trains each member, loads the base once
with every member's adapter attached (:func:`share_base`,
:class:`~peft_audit.models.shared_base.SharedBase`), then evaluates the members one after
another on it, their generation batches shared where the method allows
(:func:`peft_audit.sweep.worker.run_group`). The executors take jobs with :func:`take_group`.
Other variants (adapters from disk or the Hub, DoRA, other methods), and every variant of a
run without ``share_base``, are jobs of their own.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..config import SweepConfig
from ..store import adapter_dir_for
from .plan import PlannedVariant


#: Most variants one loaded base serves at once (:func:`share_base`): their generation batches
#: hold this many times one variant's rows.
MAX_GROUP = 8


#: The methods whose variants share a loaded base, and the group each joins: the base model
#: shares LoRA's batches; IA3, prompt tuning, P-tuning and prefix tuning each mix their own rows
#: (PEFT holds one adapter type per model).
FAMILIES = {"base": "lora", "lora": "lora", "prompt-tuning": "prompt-tuning", "p-tuning": "p-tuning",
            "prefix-tuning": "prefix-tuning", "ia3": "ia3"}


def groupable(cfg: SweepConfig, pv: PlannedVariant, done_stages: set[str]) -> bool:
    """Whether ``pv`` may be evaluated as a member of a group sharing one loaded base
    (:func:`share_base`): the base model, or an adapter this run trains with a method of
    :data:`FAMILIES` (not DoRA) whose group the run's backend shares (its ``SHARED_FAMILIES``:
    every family with transformers, without compiled decoding, which keeps rows in fixed
    batches; the base model and LoRA with vLLM, one engine's multi-LoRA calls), and nothing
    evaluated yet (a resumed variant redoes only its missing stages, which a group's batches
    would not line up with)."""
    from ..models.backends import backend_class

    spec = pv.spec
    if not cfg.share_base or cfg.compile or cfg.training.load_in or spec.adapter:
        return False
    if spec.method not in FAMILIES or (spec.method_args or {}).get("use_dora"):
        return False
    if FAMILIES[spec.method] not in getattr(backend_class(cfg.backend), "SHARED_FAMILIES", ()):
        return False
    return done_stages <= {"trained"}


def take_group(cfg: SweepConfig, pending: list[PlannedVariant], stages_done: Callable[[PlannedVariant], set[str]],
               jobs: int = 1, failed: Callable[[PlannedVariant], bool] = lambda pv: False) -> list[PlannedVariant]:
    """Take the next job off ``pending``: its first variant, with the later variants that may
    share its loaded base (:func:`groupable`, same base model and family of :data:`FAMILIES`)
    when it may. A group holds at most :data:`MAX_GROUP` variants, and with ``jobs`` slots at
    most its share of the candidates, so every slot gets work. A variant that ``failed`` before
    (retried with ``--retry-failed``) runs alone: if it killed its worker, it would take its
    group with it again."""

    def may_join(pv: PlannedVariant) -> bool:
        return groupable(cfg, pv, stages_done(pv)) and not failed(pv)

    first = pending.pop(0)
    if not may_join(first):
        return [first]
    family = FAMILIES[first.spec.method]
    candidates = [pv for pv in pending if pv.spec.base_model == first.spec.base_model
                  and FAMILIES.get(pv.spec.method) == family and may_join(pv)]
    cap = min(MAX_GROUP, max(2, -(-(len(candidates) + 1) // max(1, jobs))))
    group = [first] + candidates[:cap - 1]
    for pv in group[1:]:
        pending.remove(pv)
    return group


def share_base(cfg: SweepConfig, run_dir: Path, pvs: list[PlannedVariant]):
    """Load the base of ``pvs`` (trained variants of one base, and possibly the base itself)
    once and attach every variant's adapter to it. Returns ``(shared, members)``: the
    :class:`~peft_audit.models.shared_base.SharedBase` and the ids that joined it (an adapter
    that cannot join is said once and runs alone); ``(None, set())`` when fewer than two would
    share it or the base does not load (each variant then loads its own and reports the error)."""
    from ..models.shared_base import SharedBase
    from .logs import notice

    if len(pvs) < 2:
        return None, set()
    try:
        shared = SharedBase.load(pvs[0].spec.base_model, device=cfg.device, dtype=cfg.eval_dtype,
                                 trust_remote_code=cfg.trust_remote_code)
    except Exception as e:  # each member loads on its own and records the error itself
        notice(f"the group's shared base did not load ({type(e).__name__}: {e}); its variants load their own")
        return None, set()
    members = set()
    for pv in pvs:
        reason = shared.add(pv.id, None if pv.spec.is_base() else adapter_dir_for(run_dir, pv.id))
        if reason is None:
            members.add(pv.id)
        else:
            notice(f"{pv.display} does not share its base's batches: {reason}")
    return (shared, members) if len(members) > 1 else (None, set())
