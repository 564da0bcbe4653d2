"""Why an adapter cannot be audited. Each error says what, where and what to do.

``status`` is what the audit records for that adapter: ``skipped`` when the tool cannot or may
not evaluate it (a gated repo without access, pickled weights), ``failed`` when the
adapter is broken or does not fit the base model.
"""

from __future__ import annotations


class AdapterError(ValueError):
    """An adapter could not be resolved, read or matched to the base model."""

    status = "failed"


class AdapterNotFound(AdapterError):
    """No such local directory or Hub repo/revision, or it holds no PEFT adapter."""


class AdapterGated(AdapterError):
    """A gated or private Hub repo the current token cannot read."""

    status = "skipped"


class AdapterNetworkError(AdapterError):
    """The Hub could not be reached (connection, timeout, repeated rate limiting, server error)."""


class UnsafeAdapter(AdapterError):
    """An adapter the tool may not read: pickled ``adapter_model.bin`` weights (never unpickled)."""

    status = "skipped"


class CorruptAdapter(AdapterError):
    """An adapter file that cannot be parsed (truncated safetensors, invalid JSON)."""

