"""Provenance of a trained adapter: what it was trained from and how, as JSON next to the weights.

The file ``peft_audit_provenance.json`` sits in the adapter directory beside PEFT's own
``adapter_config.json`` / ``adapter_model.safetensors``.
"""

from __future__ import annotations

import hashlib
import json
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

from ..models.resolve import _file_sha256 as file_sha256  # one sha256 helper for files in the package

PROVENANCE_FILE = "peft_audit_provenance.json"
SCHEMA_VERSION = 1
_LIBRARIES = ("torch", "transformers", "peft", "trl", "datasets", "accelerate", "safetensors", "peft-audit")


def content_hash(rows: list[dict[str, Any]]) -> str:
    """sha256 of the canonical JSON (sorted keys, one row per line) of ``rows``; order matters."""
    h = hashlib.sha256()
    for row in rows:
        h.update(json.dumps(row, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode())
        h.update(b"\n")
    return h.hexdigest()


def library_versions() -> dict[str, str | None]:
    """Installed versions of the libraries that change training results (None if absent)."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in _LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def jsonable(value: Any) -> Any:
    """Plain JSON types: sets become sorted lists, enums their value, other objects ``str``."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, set | frozenset):
        return sorted(jsonable(v) for v in value)
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    enum_value = getattr(value, "value", None)
    return enum_value if isinstance(enum_value, str | int) else str(value)


def write_provenance(adapter_dir: Path, record: dict[str, Any]) -> Path:
    path = Path(adapter_dir) / PROVENANCE_FILE
    path.write_text(json.dumps(jsonable({"schema_version": SCHEMA_VERSION, **record}), indent=2, sort_keys=True))
    return path


def read_provenance(adapter_dir: str | Path) -> dict[str, Any]:
    """The provenance record of an adapter; FileNotFoundError if it has none."""
    path = Path(adapter_dir) / PROVENANCE_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{adapter_dir}: no {PROVENANCE_FILE} (not trained by peft-audit?)")
    return json.loads(path.read_text())
