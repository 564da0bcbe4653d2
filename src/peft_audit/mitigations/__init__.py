"""Repairs of a variant that lost safety (``peft-audit mitigate``): one module per method
(:mod:`.safety_mix`, :mod:`.safelora`, :mod:`.safemerge`) registered in :mod:`.registry`;
:mod:`.command` derives the repaired variants of a run directory and evaluates them there."""

from .registry import MITIGATIONS, Mitigation, build_repair, get_mitigation, repaired_spec

__all__ = ["MITIGATIONS", "Mitigation", "build_repair", "get_mitigation", "repaired_spec"]
