"""Existing PEFT adapters: resolve (dir or Hub), read metadata, check fit, discover, audit."""

from .audit import AdapterOutcome, AuditPlan, check_adapter, plan_audit, run_audit, spec_from_metadata
from .audit_file import AuditEntry, AuditFile, SkippedEntry, read_audit_file, write_audit_file
from .card import Sourced, parse_model_card, parse_trainer_state
from .compat import CompatResult, check_compatibility, read_tensor_shapes
from .discover import DiscoverResult, discover
from .errors import (
    AdapterError, AdapterGated, AdapterNetworkError, AdapterNotFound, CorruptAdapter, UnsafeAdapter,
)
from .hub import resolve_adapter
from .metadata import PEFT_TYPE_TO_METHOD, AdapterMetadata, extract_metadata

__all__ = [
    "AdapterError", "AdapterGated", "AdapterMetadata", "AdapterNetworkError", "AdapterNotFound", "AdapterOutcome",
    "AuditEntry", "AuditFile", "AuditPlan", "CompatResult", "CorruptAdapter", "DiscoverResult",
    "PEFT_TYPE_TO_METHOD", "SkippedEntry", "Sourced",
    "check_adapter", "check_compatibility", "discover", "extract_metadata", "parse_model_card",
    "parse_trainer_state", "plan_audit", "read_audit_file", "read_tensor_shapes", "resolve_adapter",
    "run_audit", "spec_from_metadata", "write_audit_file", "UnsafeAdapter",
]
