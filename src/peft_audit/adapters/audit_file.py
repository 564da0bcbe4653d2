"""The audit file (``adapters.yaml``) that ``discover`` writes and ``audit --from`` reads.

Format (version 1)::

    version: 1
    base: HuggingFaceTB/SmolLM2-135M-Instruct   # base model the adapters were listed for
    endpoint: null                              # HF_ENDPOINT used, if not huggingface.co
    adapters:                                   # what `audit --from` evaluates
      - ref: org/name@<commit sha>              # local dir or hub id[@revision]; required
        id: org/name
        revision: <commit sha>
        method: lora
        metadata:                               # AdapterMetadata.to_dict(): {value, source} or null
          learning_rate: {value: 0.0002, source: "README.md:training_hyperparameters"}
          num_epochs: null
          ...
    skipped:                                    # repos discover could not use, with the reason
      - {id: org/gated, revision: null, status: skipped, reason: "gated repo; ..."}

Only ``adapters[].ref`` is required when writing the file by hand; ``audit`` re-reads each
adapter's metadata itself, so the stored ``metadata`` is a record, not an input.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..config import ConfigError, read_yaml, validation_message
from ..textio import write_text_atomic


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AuditEntry(_Model):
    ref: str = Field(min_length=1, description="Local adapter dir or Hub id[@revision]")
    id: str | None = None
    revision: str | None = None
    method: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


class SkippedEntry(_Model):
    id: str
    revision: str | None = None
    status: Literal["skipped", "failed"] = "skipped"
    reason: str


class AuditFile(_Model):
    version: Literal[1] = 1
    base: str | None = None
    endpoint: str | None = None
    adapters: list[AuditEntry] = Field(default_factory=list)
    skipped: list[SkippedEntry] = Field(default_factory=list)


def write_audit_file(af: AuditFile, path: str | Path) -> Path:
    """Write ``af`` as YAML (keys in declaration order)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    return write_text_atomic(p, yaml.safe_dump(af.model_dump(mode="json"), sort_keys=False, allow_unicode=True))


def read_audit_file(path: str | Path) -> AuditFile:
    """Read and validate an audit file; :class:`ConfigError` names the file and each bad key."""
    data = read_yaml(path, "audit file (make one with `peft-audit discover`)")
    try:
        return AuditFile.model_validate(data or {})
    except ValidationError as e:
        raise ConfigError(validation_message(str(path), e, "audit file")) from None
