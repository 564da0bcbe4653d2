"""What goes into a hash that names something lasting (a variant id, a run's evaluation protocol).

Rule (STYLE habit 10): only fields that change results, and a field equal to its default is left
out, so a release that adds a defaulted field changes no existing identity. A model says

* ``NOT_RESULTS``: fields that never enter an identity (cosmetic labels, logging, concurrency,
  timeouts, retries, batch sizes of inference);
* ``IDENTITY_V1``: fields that entered the identity with whatever value they had, default or not,
  when identities were first defined (variant ids of peft-audit's first run directories hashed the
  full dump). They stay in with their value so those ids do not change; every field added after
  them is left out while it holds its default;
* ``IDENTITY_BASELINE``: fields whose default changed in a later release, each with a function
  returning the default it had before. Such a field is left out while it equals that *old*
  default, so run directories made under it keep their identity, and the new default, which
  changes results, gets an identity of its own (the safety judges' default became
  ``[refusal, harm]`` when the harm verdict was added).

A value is hashed in pydantic's python-mode dump, as canonical JSON (:func:`peft_audit.config.variant_id`).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


def identity_payload(model: BaseModel) -> dict[str, Any]:
    """The fields of ``model`` that belong in an identity (see the module docstring)."""
    cls = type(model)
    skip = getattr(cls, "NOT_RESULTS", frozenset())
    always = getattr(cls, "IDENTITY_V1", frozenset())
    baseline = getattr(cls, "IDENTITY_BASELINE", {})
    dump = model.model_dump()
    out: dict[str, Any] = {}
    for name, info in cls.model_fields.items():
        if name in skip:
            continue
        value = getattr(model, name)
        default = baseline[name]() if name in baseline else info.get_default(call_default_factory=True)
        if name not in always and value == default:
            continue
        out[name] = _nested(value, dump[name])
    return out


def _nested(value: Any, dumped: Any) -> Any:
    # Models inside (e.g. the judge specs of a section) follow the same rule.
    if isinstance(value, BaseModel):
        return identity_payload(value)
    if isinstance(value, (list, tuple)) and any(isinstance(v, BaseModel) for v in value):
        return [_nested(v, d) for v, d in zip(value, dumped)]
    return dumped
