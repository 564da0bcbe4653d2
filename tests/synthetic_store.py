"""Synthetic results stores for analysis/report/gate tests (see peft_audit.analysis.synthetic)."""

from peft_audit.analysis.synthetic import XSS_RESPONSE, build_synthetic_store  # noqa: F401
