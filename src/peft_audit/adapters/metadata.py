"""What an existing adapter says about itself: :func:`extract_metadata`.

Reads three files of an adapter directory, never anything pickled:

* ``adapter_config.json`` (required): ``peft_type`` -> our method name, ``base_model_name_or_path``,
  ``r``, ``lora_alpha``, ``target_modules``, ``num_virtual_tokens``;
* ``README.md`` (optional): see :func:`peft_audit.adapters.card.parse_model_card`;
* ``trainer_state.json`` (optional): see :func:`peft_audit.adapters.card.parse_trainer_state`.

Each field is a :class:`~peft_audit.adapters.card.Sourced` (value + file:section). A field no
file states is ``None`` -- never filled with a default. When two files disagree, the first in
the order adapter_config.json > README.md > trainer_state.json wins and a note records the
disagreement. ``training_args.bin`` is a pickle and is never opened.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .card import CARD, STATE, Sourced, parse_model_card, parse_trainer_state
from .errors import AdapterNotFound, CorruptAdapter

CONFIG = "adapter_config.json"
SAFETENSORS = "adapter_model.safetensors"
PICKLE_WEIGHTS = "adapter_model.bin"

#: PEFT ``peft_type`` -> peft-audit method name (:data:`peft_audit.config.METHODS`).
PEFT_TYPE_TO_METHOD = {
    "LORA": "lora",
    "IA3": "ia3",
    "PROMPT_TUNING": "prompt-tuning",
    "P_TUNING": "p-tuning",
    "PREFIX_TUNING": "prefix-tuning",
}

#: Every field :class:`AdapterMetadata` may carry, in display order.
FIELDS = (
    "peft_type", "method", "base_model", "r", "lora_alpha", "target_modules", "num_virtual_tokens",
    "algo", "learning_rate", "num_epochs", "training_steps", "train_batch_size", "total_train_batch_size",
    "gradient_accumulation_steps", "lr_scheduler_type", "optimizer", "seed", "epochs_completed",
    "learning_rate_max_logged", "tags", "library_name", "datasets", "framework_versions", "weights_file",
)


@dataclass
class AdapterMetadata:
    """Metadata of one adapter: sourced fields, notes on what was ignored, the directory read."""

    adapter_dir: Path
    fields: dict[str, Sourced] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def value(self, name: str) -> Any:
        """The field's value, or None when no file states it."""
        s = self.fields.get(name)
        return None if s is None else s.value

    @property
    def method(self) -> str | None:
        return self.value("method")

    def to_dict(self) -> dict[str, Any]:
        """``{field: {"value", "source"} or None}`` for every field in :data:`FIELDS`, plus notes."""
        out: dict[str, Any] = {k: (self.fields[k].to_dict() if k in self.fields else None) for k in FIELDS}
        out["notes"] = list(self.notes)
        return out


#: An adapter's JSON files and card are a few kB; a larger one is refused (JSON) or cut (card)
#: rather than read whole into memory.
MAX_TEXT_BYTES = 16 << 20


def _read_json(path: Path) -> Any:
    size = path.stat().st_size
    if size > MAX_TEXT_BYTES:
        raise CorruptAdapter(f"{path}: {size} bytes, more than the {MAX_TEXT_BYTES >> 20} MiB an adapter's JSON "
                             "file can need; not read -- re-download or re-save the adapter")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:  # ValueError: also an int of > 4300 digits
        why = str(e).splitlines()[0][:120] if str(e) else type(e).__name__
        raise CorruptAdapter(f"{path}: not valid JSON ({why}); re-download or re-save the adapter") from None


def read_adapter_config(adapter_dir: Path) -> dict[str, Any]:
    """The parsed ``adapter_config.json``; :class:`AdapterNotFound` / :class:`CorruptAdapter` otherwise."""
    path = Path(adapter_dir) / CONFIG
    if not path.is_file():
        raise AdapterNotFound(f"{adapter_dir}: no {CONFIG}, so this is not a saved PEFT adapter")
    cfg = _read_json(path)
    if not isinstance(cfg, dict):
        raise CorruptAdapter(f"{path}: expected a JSON object, got {type(cfg).__name__}")
    return cfg


def _merge(meta: AdapterMetadata, found: dict[str, Sourced]) -> None:
    for name, s in found.items():
        have = meta.fields.get(name)
        if have is None:
            meta.fields[name] = s
        elif have.value != s.value:
            meta.notes.append(f"{name}: {have.source} says {have.value!r}, {s.source} says {s.value!r}; kept the first")


def extract_metadata(adapter_dir: str | Path) -> AdapterMetadata:
    """Read ``adapter_dir``'s config, model card and trainer state (see module docstring).

    Raises :class:`AdapterNotFound` without ``adapter_config.json`` and :class:`CorruptAdapter`
    when it is not JSON. An unknown ``peft_type`` is not an error here: ``method`` stays None and a
    note says so (the audit then skips the adapter with that reason).
    """
    d = Path(adapter_dir)
    cfg = read_adapter_config(d)
    meta = AdapterMetadata(d)
    src = CONFIG
    from_config: dict[str, Sourced] = {}
    peft_type = cfg.get("peft_type")
    if isinstance(peft_type, str):
        from_config["peft_type"] = Sourced(peft_type, f"{src}:peft_type")
        method = PEFT_TYPE_TO_METHOD.get(peft_type.upper())
        if method:
            from_config["method"] = Sourced(method, f"{src}:peft_type")
        else:
            meta.notes.append(f"{src}: peft_type {peft_type!r} is not one of {', '.join(PEFT_TYPE_TO_METHOD)}")
    else:
        meta.notes.append(f"{src}: no peft_type")
    for key, name in (("base_model_name_or_path", "base_model"), ("r", "r"), ("lora_alpha", "lora_alpha"),
                      ("target_modules", "target_modules"), ("num_virtual_tokens", "num_virtual_tokens")):
        v = cfg.get(key)
        if v is not None and v != "" and v != []:
            if key == "target_modules" and isinstance(v, list) and all(isinstance(x, str) for x in v):
                v = sorted(v)  # peft stores a set as a list in arbitrary order
            from_config[name] = Sourced(v, f"{src}:{key}")
    _merge(meta, from_config)

    card = d / CARD
    if card.is_file():
        with card.open("rb") as f:
            text = f.read(MAX_TEXT_BYTES).decode("utf-8", errors="replace")
        found, notes = parse_model_card(text)
        meta.notes.extend(notes)
        _merge(meta, found)
    state = d / STATE
    if state.is_file():
        try:
            found, notes = parse_trainer_state(_read_json(state))
        except CorruptAdapter as e:
            found, notes = {}, [str(e) + "; ignored"]
        meta.notes.extend(notes)
        _merge(meta, found)

    if (d / SAFETENSORS).is_file():
        meta.fields["weights_file"] = Sourced(SAFETENSORS, "directory listing")
    elif (d / PICKLE_WEIGHTS).is_file():
        meta.fields["weights_file"] = Sourced(PICKLE_WEIGHTS, "directory listing")
    return meta
