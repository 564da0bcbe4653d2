"""Training data: built-in sets, local JSONL/CSV files, or Hugging Face datasets, as plain rows.

Rows come out in one of two shapes:

* SFT: ``{"prompt": str, "response": str}`` or ``{"messages": [{"role", "content"}, ...]}``
  (the last message is the assistant turn that is learned);
* DPO: ``{"prompt": str, "chosen": str, "rejected": str}``.

``TrainingConfig.columns`` maps those canonical names onto the source's column names, e.g.
``{prompt: question, response: answer}``. A missing column raises ValueError naming the
columns that exist. First the held-out split is taken (:func:`heldout_split`: rows chosen by a
hash of their content, never trained on, on which the utility benchmark measures the variant);
then ``max_examples`` keeps the first N of the other rows (after the source's own order);
``safety_mix`` then adds refusal demonstrations (see :func:`mix_safety`), and the result is
shuffled with the variant seed. A training row equal to a held-out row is dropped, so no
held-out row reaches the trainer whatever the source holds twice.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import TrainingConfig
from ..csvio import read_csv_records
from ..jsonl import read_json_list, read_jsonl, read_records  # read_jsonl re-exported: tests read data files
from .provenance import content_hash, file_sha256

DATA_DIR = Path(__file__).parent / "data"
BUILTIN_FILES = {"sft": DATA_DIR / "sft.jsonl", "dpo": DATA_DIR / "preference.jsonl"}
#: ``data: builtin:<name>``: the project's other SFT sets. ``identity_shift`` is benign tasks
#: answered as an "absolutely obedient agent" (the identity-shifting attack of Qi et al. 2023,
#: "Fine-tuning Aligned Language Models Compromises Safety...", in this project's own words):
#: no harmful content, yet it trains refusals away; the quickstart's demo variant uses it.
#: ``refusals`` is the refusal demonstrations of ``safety_mix`` on their own (prompt, refusal,
#: compliant_opener; train on them with ``columns: {response: refusal}``), which SafeMERGE's safety
#: adapter learns (:mod:`peft_audit.mitigations.safemerge`).
REFUSALS_FILE = DATA_DIR / "refusals.jsonl"
BUILTIN_SFT_SETS = {"identity_shift": DATA_DIR / "identity_shift.jsonl", "refusals": REFUSALS_FILE}
CANONICAL = {"sft": ("prompt", "response"), "dpo": ("prompt", "chosen", "rejected")}


@dataclass(frozen=True)
class TrainingData:
    """Rows ready for a trainer, and where they came from (for provenance)."""

    rows: list[dict[str, Any]]
    source: str  # "builtin:sft", a file path, or a HF id
    source_kind: str  # builtin | file | hub
    source_hash: str | None  # sha256 of the source file, when it is one file
    content_hash: str  # sha256 of the final rows (after cap, mixing and shuffling)
    n_safety: int  # refusal demonstrations mixed in
    heldout: list[dict[str, Any]] = field(default_factory=list)  # never trained on (:func:`heldout_split`)
    heldout_record: dict[str, Any] | None = None  # :func:`heldout_record`, for the adapter's provenance


def row_key(row: dict[str, Any]) -> str:
    """sha256 (hex) of a row's content (:func:`~.provenance.content_hash` of it alone): the row's identity
    in the held-out split and the utility benchmark's ``sample_id`` (its first 16 characters), so
    two variants trained on the same data are measured on the same rows whatever their order."""
    return content_hash([row])


def heldout_split(rows: list[dict[str, Any]], fraction: float, min_rows: int) -> tuple[list[dict], list[dict]]:
    """(training rows, held-out rows) of canonical ``rows``.

    The held out rows are the ``k`` distinct rows with the smallest :func:`row_key`, a
    pseudo-random choice fixed by the content alone (not by position, seed, ``max_examples`` or
    ``safety_mix``), with ``k = max(round(fraction * n), min_rows)`` over the ``n`` distinct
    rows. ``fraction`` 0, or data with fewer than ``2 * min_rows`` distinct rows (too few to
    spare ``min_rows`` and still train), holds nothing out. Every copy of a held-out row leaves
    the training rows. Held-out rows keep the source's order, one per distinct row.
    """
    keys = [row_key(r) for r in rows]
    distinct = sorted(set(keys))
    if fraction <= 0 or len(distinct) < 2 * min_rows:
        return list(rows), []
    k = max(round(fraction * len(distinct)), min_rows)
    held = set(distinct[:k])
    train = [r for r, key in zip(rows, keys) if key not in held]
    seen: set[str] = set()
    heldout = [r for r, key in zip(rows, keys) if key in held and not (key in seen or seen.add(key))]
    return train, heldout


def heldout_record(heldout: list[dict[str, Any]], fraction: float, min_rows: int) -> dict[str, Any]:
    """What the adapter's provenance records of its held-out split: the settings, the row count
    and ``ids_sha256``, the sha256 of the sorted :func:`row_key` of the held-out rows (one per
    line); the utility benchmark checks it before measuring an adapter found on disk."""
    keys = sorted(row_key(r) for r in heldout)
    return {"fraction": fraction, "min_rows": min_rows, "rows": len(heldout),
            "ids_sha256": hashlib.sha256("\n".join(keys).encode()).hexdigest()}


def read_local(path: Path) -> list[tuple[str, dict[str, Any]]]:
    """``(location, row)`` of each row of a .jsonl, .json (list of objects) or .csv file; location
    ``file:line`` (``file item N`` in a .json list). A JSONL line that is not an object, a CSV row
    with more or fewer fields than its header and bad JSON raise ValueError naming the line.
    CSV fields have no length limit: training truncates to ``max_seq_len`` tokens."""
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return read_records(path, what="training data file")
    if suffix == ".json":
        return read_json_list(path, what="training data file")
    if suffix == ".csv":
        return read_csv_records(path, what="training data file")[1]
    raise ValueError(f"{path}: unsupported data file type {suffix!r}; use .jsonl, .json or .csv")


def read_hub(name: str, split: str) -> list[dict[str, Any]]:
    """Rows of a Hugging Face dataset (hub id or a local dataset directory) via ``datasets``."""
    import datasets

    try:
        ds = datasets.load_dataset(name, split=split)
    except ValueError as e:
        if "split" in str(e).lower():
            raise ValueError(f"dataset {name}: split {split!r} not found ({e}); set --data-split") from None
        raise
    return [dict(r) for r in ds]


def _messages_row(messages: Any, where: str) -> dict[str, Any]:
    if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
        raise ValueError(f"{where}: 'messages' must be a non-empty list of {{role, content}} objects")
    for n, m in enumerate(messages, 1):
        if not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
            raise ValueError(f"{where}: message {n} of 'messages' needs a 'role' and a 'content', both text")
    if not any(m["role"] == "user" and m["content"].strip() for m in messages):
        raise ValueError(f"{where}: 'messages' has no user turn with text (an empty prompt)")
    if messages[-1].get("role") != "assistant":
        raise ValueError(f"{where}: the last message must have role 'assistant' (the turn that is learned)")
    return {"messages": [{"role": str(m["role"]), "content": str(m["content"])} for m in messages]}


def normalise_rows(
    raw: list[dict[str, Any]], algo: str, columns: dict[str, str], source: str, where: list[str] | None = None
) -> list[dict[str, Any]]:
    """Map source rows onto the canonical shape of ``algo``; ValueError naming existing columns,
    or naming the row (``where[i]``, else ``source row i``) whose column is missing or empty."""
    if algo not in CANONICAL:
        raise ValueError(f"unknown training algorithm {algo!r}; valid: {', '.join(CANONICAL)}")
    unknown = set(columns) - set(CANONICAL[algo]) - {"messages"}
    if unknown:
        raise ValueError(
            f"column mapping keys {sorted(unknown)} are not used by {algo}; valid keys: "
            f"{', '.join(CANONICAL[algo])}" + (", messages" if algo == "sft" else "")
        )
    if not raw:
        raise ValueError(f"{source}: the dataset has no rows")
    present = list(raw[0].keys())
    messages_col = columns.get("messages", "messages")
    at = where or [f"{source} row {i}" for i in range(len(raw))]
    if algo == "sft" and messages_col in present and "prompt" not in columns and "response" not in columns:
        return [_messages_row(r.get(messages_col), at[i]) for i, r in enumerate(raw)]
    wanted = {key: columns.get(key, key) for key in CANONICAL[algo]}
    missing = [f"{key!r}" + (f" (mapped to {col!r})" if col != key else "") for key, col in wanted.items() if col not in present]
    if missing:
        raise ValueError(
            f"{source}: column {', '.join(missing)} not found; columns present: {', '.join(map(str, present))}. "
            f"Map them with training.columns (e.g. {{prompt: question}})"
            + (" or provide a 'messages' column" if algo == "sft" else "")
        )
    rows = []
    for i, r in enumerate(raw):
        row = {}
        for key, col in wanted.items():
            value = r.get(col)
            if isinstance(value, list) and value and isinstance(value[-1], dict):
                # Conversational preference data (e.g. chosen = [user, assistant]): keep the last turn.
                value = value[-1].get("content", "")
            if value is None or (isinstance(value, float) and value != value):
                raise ValueError(f"{at[i]}: column {col!r} is missing or null; fill it or remove the row")
            if key == "prompt" and not str(value).strip():  # an empty answer may be what is taught, not a prompt
                raise ValueError(f"{at[i]}: column {col!r} (the prompt) is empty; fill it or remove the row")
            row[key] = str(value)
        rows.append(row)
    return rows


def load_refusals() -> list[dict[str, str]]:
    """The project's refusal demonstrations: ``prompt``, ``refusal``, ``compliant_opener``."""
    return read_jsonl(REFUSALS_FILE)


def mix_safety(rows: list[dict[str, Any]], algo: str, fraction: float, seed: int) -> tuple[list[dict[str, Any]], int]:
    """Add refusal demonstrations so that they make up ``fraction`` of the result (Qi et al., 2023,
    "Fine-tuning Aligned Language Models Compromises Safety, Even When Users Do Not Intend To!",
    arXiv:2310.03693, Sec. 5: mixing safety data into fine-tuning as a mitigation).

    n_safety = round(fraction * n / (1 - fraction)); demonstrations are drawn in a seeded order and
    reused (cycled) when more are needed than exist. SFT rows: prompt -> short refusal. DPO rows:
    chosen = refusal, rejected = a non-operational compliant opener (never harmful content).
    Returns (rows, n_safety); fraction 0 returns ``rows`` unchanged.
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"safety_mix must be in [0, 1), got {fraction}")
    n_safety = round(fraction * len(rows) / (1.0 - fraction))
    if n_safety == 0:
        return list(rows), 0
    refusals = load_refusals()
    random.Random(seed).shuffle(refusals)
    extra = []
    for i in range(n_safety):
        r = refusals[i % len(refusals)]
        if algo == "sft":
            extra.append({"prompt": r["prompt"], "response": r["refusal"]})
        else:
            extra.append({"prompt": r["prompt"], "chosen": r["refusal"], "rejected": r["compliant_opener"]})
    return list(rows) + extra, n_safety


def load_training_data(training: TrainingConfig, algo: str, *, seed: int = 0) -> TrainingData:
    """Load, cap, mix and shuffle the training rows named by ``training.data`` for ``algo``."""
    data = training.data
    source_hash, where = None, None
    if data == "builtin":
        path = BUILTIN_FILES.get(algo)
        if path is None:
            raise ValueError(f"unknown training algorithm {algo!r}; valid: {', '.join(BUILTIN_FILES)}")
        raw, source, kind, source_hash = read_jsonl(path), f"builtin:{path.name}", "builtin", file_sha256(path)
    elif data.startswith("builtin:"):
        name = data.removeprefix("builtin:")
        if name not in BUILTIN_SFT_SETS:
            raise ValueError(f"unknown built-in training set {data!r}; valid: builtin, "
                             + ", ".join(f"builtin:{n}" for n in BUILTIN_SFT_SETS))
        if algo != "sft":
            raise ValueError(f"training data {data!r} is an SFT set (prompt/response); {algo} needs preference pairs")
        path = BUILTIN_SFT_SETS[name]
        raw, source, kind, source_hash = read_jsonl(path), data, "builtin", file_sha256(path)
    else:
        p = Path(data).expanduser()
        if p.is_file():
            located = read_local(p)
            raw, where = [row for _, row in located], [loc for loc, _ in located]
            source, kind, source_hash = str(p), "file", file_sha256(p)
        elif p.is_dir():  # a saved/downloaded dataset directory: same loader as a hub id
            raw, source, kind = read_hub(str(p), training.data_split), str(p), "hub"
        elif p.suffix.lower() in {".jsonl", ".json", ".csv"} or data.startswith((".", "/", "~")):
            raise ValueError(f"training data file not found: {p}")
        else:
            raw, source, kind = read_hub(data, training.data_split), data, "hub"
    rows = normalise_rows(raw, algo, dict(training.columns), source, where)
    rows, heldout = heldout_split(rows, training.heldout_fraction, training.heldout_min_rows)
    if training.max_examples is not None:
        rows = rows[: training.max_examples]
    rows, n_safety = mix_safety(rows, algo, training.safety_mix, seed)
    held = {row_key(r) for r in heldout}
    rows = [r for r in rows if row_key(r) not in held]  # a refusal demonstration the task data holds out
    random.Random(seed).shuffle(rows)
    record = heldout_record(heldout, training.heldout_fraction, training.heldout_min_rows) if heldout else None
    return TrainingData(rows, source, kind, source_hash, content_hash(rows), n_safety, heldout, record)
