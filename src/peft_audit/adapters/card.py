"""Parse what an adapter's authors wrote down: the model card (``README.md``) and ``trainer_state.json``.

Pure functions over text / parsed JSON; no file or network I/O. Every value returned is a
:class:`Sourced` that names where it was read, e.g. ``README.md:training_hyperparameters``.
Nothing is inferred: a field that is not written down is absent from the result.

The formats parsed are the ones the Hugging Face libraries generate:

* YAML front matter between two ``---`` lines at the top of the card (``tags``, ``base_model``,
  ``library_name``, ``datasets``) -- the Hub model-card metadata spec
  (https://huggingface.co/docs/hub/model-cards#model-card-metadata);
* the ``transformers.Trainer`` auto-generated section ``### Training hyperparameters`` with a
  ``- key: value`` list (``learning_rate``, ``train_batch_size``, ``num_epochs`` or
  ``training_steps``, ...) and ``### Framework versions`` (``- PEFT 0.7.1``);
* TRL's card sentence ``This model was trained with SFT.`` / ``... with DPO, a method ...``;
* ``trainer_state.json`` written by ``transformers.Trainer`` (``num_train_epochs``, ``max_steps``,
  ``train_batch_size``, ``epoch``, ``log_history``).

A learning rate in ``log_history`` is the *scheduled* rate at that step (after warm-up and
decay), not the configured peak, so it is reported only as ``learning_rate_max_logged`` (a lower
bound on the peak) and never used as the learning rate.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import yaml

CARD = "README.md"
STATE = "trainer_state.json"

#: Training algorithms the sweep analysis knows, as tags/trainer names appear on cards.
_ALGO_TAGS = {"sft": "sft", "dpo": "dpo"}


@dataclass(frozen=True)
class Sourced:
    """A value and where it was read (``file:section``)."""

    value: Any
    source: str

    def to_dict(self) -> dict[str, Any]:
        return {"value": self.value, "source": self.source}


# ---------------------------------------------------------------------------------------------
# Model card
# ---------------------------------------------------------------------------------------------
_FRONT_MATTER = re.compile(r"\A\ufeff?---[ \t]*\r?\n(.*?)\r?\n---[ \t]*(?:\r?\n|\Z)", re.S)
_SECTION = re.compile(r"^#{2,4}\s*(.+?)\s*$", re.M)
_ITEM = re.compile(r"^\s*[-*]\s*([A-Za-z_][\w ]*?)\s*:\s*(.+?)\s*$", re.M)
_FRAMEWORK = re.compile(r"^\s*[-*]\s*(PEFT|Transformers|TRL|Pytorch|PyTorch|Datasets|Tokenizers)\s*:?\s+([\w.+-]+)\s*$", re.M)
_TRAINED_WITH = re.compile(r"\btrained with\s+\[?(SFT|DPO)\b", re.I)


def split_front_matter(text: str) -> tuple[dict[str, Any], str, str | None]:
    """Split a card into (YAML front matter as a dict, body, problem).

    No front matter -> ``({}, text, None)``. Front matter that is not valid YAML or not a mapping
    -> ``({}, body, "<why>")`` so the caller can record why the card's metadata is unusable.
    """
    m = _FRONT_MATTER.match(text)
    if not m:
        return {}, text, None
    body = text[m.end():]
    try:
        data = yaml.safe_load(m.group(1))
    except yaml.YAMLError as e:
        return {}, body, f"front matter is not valid YAML ({e.__class__.__name__})"
    if data is None:
        return {}, body, None
    if not isinstance(data, dict):
        return {}, body, f"front matter is a {type(data).__name__}, not a mapping"
    return data, body, None


def _section(body: str, title: str) -> str | None:
    """Text of every markdown section whose heading contains ``title`` (case-insensitive), joined;
    None when there is none. (PEFT's card template and the Trainer's list share a heading.)"""
    heads = list(_SECTION.finditer(body))
    found = []
    for i, h in enumerate(heads):
        if title.lower() in h.group(1).lower():
            end = heads[i + 1].start() if i + 1 < len(heads) else len(body)
            found.append(body[h.end():end])
    return "\n".join(found) if found else None


def _number(text: str) -> float | int | None:
    """'0.0002' -> 0.0002, '3' -> 3, '3.0' -> 3.0, '2e-05' -> 2e-05; anything else -> None."""
    t = text.strip().rstrip(".")
    try:
        return int(t)
    except ValueError:
        pass
    try:
        x = float(t)
    except ValueError:
        return None
    return x if math.isfinite(x) else None


def _as_list(v: Any) -> list[str]:
    if v is None:
        return []
    if isinstance(v, str):
        return [v]
    if isinstance(v, list):
        return [str(x) for x in v if x is not None]
    return [str(v)]


#: Card hyperparameter keys -> our field names (the Trainer card writes ``num_epochs``).
_HPARAMS = {
    "learning_rate": "learning_rate",
    "num_epochs": "num_epochs",
    "train_batch_size": "train_batch_size",
    "total_train_batch_size": "total_train_batch_size",
    "gradient_accumulation_steps": "gradient_accumulation_steps",
    "training_steps": "training_steps",
    "seed": "seed",
    "lr_scheduler_type": "lr_scheduler_type",
    "optimizer": "optimizer",
}


def parse_model_card(text: str) -> tuple[dict[str, Sourced], list[str]]:
    """Fields found in a model card, and notes on what could not be used.

    Fields (each only when written): ``tags``, ``base_model``, ``library_name``, ``datasets``,
    ``algo`` (``sft``/``dpo`` from tags or TRL's "trained with" sentence; left out when the card
    names both, which a note records), the ``_HPARAMS`` values, ``framework_versions``.
    """
    src = CARD
    fields: dict[str, Sourced] = {}
    notes: list[str] = []
    meta, body, problem = split_front_matter(text)
    if problem:
        notes.append(f"{src}: {problem}; its metadata was ignored")

    tags = _as_list(meta.get("tags"))
    if tags:
        fields["tags"] = Sourced(tags, f"{src}:front_matter.tags")
    bases = _as_list(meta.get("base_model"))
    if len(bases) == 1:
        fields["base_model"] = Sourced(bases[0], f"{src}:front_matter.base_model")
    elif len(bases) > 1:
        notes.append(f"{src}: front matter lists several base models {bases}; none taken")
    if isinstance(meta.get("library_name"), str):
        fields["library_name"] = Sourced(meta["library_name"], f"{src}:front_matter.library_name")
    datasets = _as_list(meta.get("datasets"))
    if datasets:
        fields["datasets"] = Sourced(datasets, f"{src}:front_matter.datasets")

    # Training algorithm: tags first, then TRL's sentence; two different answers -> unknown.
    algos: dict[str, str] = {}
    for t in tags:
        if t.lower() in _ALGO_TAGS:
            algos.setdefault(_ALGO_TAGS[t.lower()], f"{src}:front_matter.tags")
    for m in _TRAINED_WITH.finditer(body):
        algos.setdefault(m.group(1).lower(), f"{src}:body('trained with {m.group(1)}')")
    if len(algos) == 1:
        (algo, where), = algos.items()
        fields["algo"] = Sourced(algo, where)
    elif len(algos) > 1:
        notes.append(f"{src}: names several training algorithms {sorted(algos)}; algo left unknown")

    hp = _section(body, "Training hyperparameters")
    if hp is not None:
        for m in _ITEM.finditer(hp):
            key = m.group(1).strip().lower().replace(" ", "_")
            if key not in _HPARAMS:
                continue
            raw = m.group(2)
            value = raw if key in {"lr_scheduler_type", "optimizer"} else _number(raw)
            if value is None:
                notes.append(f"{src}: training hyperparameter {key}={raw!r} is not a number; ignored")
                continue
            fields[_HPARAMS[key]] = Sourced(value, f"{src}:training_hyperparameters")

    fw = _section(body, "Framework versions")
    if fw is not None:
        versions = {m.group(1).lower(): m.group(2) for m in _FRAMEWORK.finditer(fw)}
        if versions:
            fields["framework_versions"] = Sourced(versions, f"{src}:framework_versions")
    return fields, notes


# ---------------------------------------------------------------------------------------------
# trainer_state.json
# ---------------------------------------------------------------------------------------------
def parse_trainer_state(state: Any) -> tuple[dict[str, Sourced], list[str]]:
    """Fields found in a parsed ``trainer_state.json``, and notes.

    ``num_epochs`` (from ``num_train_epochs``), ``training_steps`` (``max_steps``),
    ``train_batch_size``, ``epochs_completed`` (``epoch``, a float), ``learning_rate_max_logged``
    (largest scheduled rate in ``log_history``; a lower bound on the peak rate, see module doc).
    """
    src = STATE
    if not isinstance(state, dict):
        return {}, [f"{src}: top level is not an object; ignored"]
    fields: dict[str, Sourced] = {}
    notes: list[str] = []
    for key, name in (("num_train_epochs", "num_epochs"), ("max_steps", "training_steps"),
                      ("train_batch_size", "train_batch_size"), ("epoch", "epochs_completed")):
        v = state.get(key)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0:
            fields[name] = Sourced(v, f"{src}:{key}")
    lrs = [
        e["learning_rate"] for e in state.get("log_history") or []
        if isinstance(e, dict) and isinstance(e.get("learning_rate"), (int, float))
    ]
    if lrs:
        fields["learning_rate_max_logged"] = Sourced(
            max(lrs), f"{src}:log_history.learning_rate(max of {len(lrs)} scheduled values; lower bound of peak)"
        )
    return fields, notes
