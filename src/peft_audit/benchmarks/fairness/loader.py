"""Load BBQ items (Parrish et al., 2022, "BBQ: A Hand-Built Bias Benchmark for Question
Answering", Findings of ACL) from the built-in sample, a directory of the official JSONL files,
one JSONL file, or a Hugging Face dataset id.

    load_bbq("builtin")
    load_bbq("path/to/BBQ/data", per_cell=50, metadata_csv="path/to/additional_metadata.csv")
    load_bbq("oskarvanderwal/bbq", categories=["age"])   # config per category, or "All"

Every row is validated: a malformed line (not a JSON object, a missing or mistyped field, a
label that is not the integer 0, 1 or 2, an empty question or answer, a context and question
over ``max_prompt_bytes``) raises :class:`BBQFormatError` naming the file and line number,
unless ``skip_bad_items=True`` (then the line is skipped and listed in
``BBQLoadResult.bad_lines``). An item seen twice (same category and ``example_id``: a file given
twice) and a source without a usable item are errors either way. ``per_cell`` samples that many items (seeded, without
replacement) from every (category, context_condition, question_polarity) cell.
"""

from __future__ import annotations

import numbers
import random
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...csvio import read_csv_records
from ...jsonl import JSONLineError, parse_lines
from ...textio import DEFAULT_MAX_PROMPT_BYTES, InputFileError, open_text, prompt_size_error
from ..categories import BBQ_ALL_CATEGORIES, BBQ_FILE_STEMS
from .targets import bias_target_index, find_unknown_index, stereotyped_from_target, template_profile

BUILTIN_PATH = Path(__file__).with_name("data") / "bbq_sample.jsonl"
_KEY_TO_STEM = {v: k for k, v in BBQ_FILE_STEMS.items()}
_REQUIRED = ("example_id", "question_polarity", "context_condition", "category", "answer_info",
             "context", "question", "ans0", "ans1", "ans2", "label")


class BBQFormatError(ValueError):
    """A BBQ row that cannot be used; the message names the file (or dataset) and line."""


@dataclass(frozen=True)
class BBQItem:
    """One BBQ question. ``target_index`` is the bias-target option (None if unresolved),
    ``unknown_index`` the "can't be determined" option; both index ``answers``."""

    item_id: str
    source_id: str
    category: str
    question_index: str
    question_polarity: str
    context_condition: str
    context: str
    question: str
    answers: tuple[str, str, str]
    label: int
    target_index: int | None
    unknown_index: int
    answer_info: Mapping[str, Any] = field(hash=False, compare=False)
    stereotyped_groups: tuple[str, ...] = ()
    #: where it was read (``file:line``, or the dataset row), for errors about it
    where: str = field(default="", hash=False, compare=False)


@dataclass
class BBQLoadResult:
    items: list[BBQItem]
    n_unresolved: int
    bad_lines: list[str] = field(default_factory=list)
    source: str = ""


def category_key(name: str) -> str:
    """Our key for an official category spelling ("Race_x_SES" -> "race_x_ses") or a key."""
    if name in BBQ_FILE_STEMS:
        return BBQ_FILE_STEMS[name]
    low = name.strip().lower()
    if low in BBQ_ALL_CATEGORIES:
        return low
    raise ValueError(f"unknown BBQ category {name!r}; valid: {', '.join(BBQ_ALL_CATEGORIES)}")


#: The setting that limits a context and question's size (named in errors).
LIMIT_KEY = "fairness.max_prompt_bytes"


def parse_row(
    raw: Mapping[str, Any], where: str, target_locs: Mapping[tuple[str, str], int] | None = None,
    max_bytes: int = DEFAULT_MAX_PROMPT_BYTES,
) -> BBQItem:
    """Validate one official-format row into a :class:`BBQItem` (item_id filled by the caller).

    ``target_locs`` maps (category key, example_id) to BBQ's ``target_loc``; when present it
    replaces the resolution of :mod:`.targets`. BBQ's ``target_loc`` is already the *biased*
    answer for the item's polarity (``BBQ_results_metadata.R`` moves it to the non-stereotyped
    option for non-negative questions, and ``BBQ_calculate_bias_score.R`` counts
    ``neg_Target + nonneg_Target`` as biased), so it is used as it is for both polarities. A
    ``target_loc`` that points at the unknown option is ignored (resolution decides).
    """
    if not isinstance(raw, Mapping):
        raise BBQFormatError(f"{where}: expected a JSON object, got {type(raw).__name__}")
    missing = [k for k in _REQUIRED if k not in raw]
    if missing:
        raise BBQFormatError(f"{where}: missing field(s) {', '.join(missing)} (is this an official BBQ file?)")
    pol, cond = raw["question_polarity"], raw["context_condition"]
    if pol not in ("neg", "nonneg"):
        raise BBQFormatError(f"{where}: question_polarity must be 'neg' or 'nonneg', got {pol!r}")
    if cond not in ("ambig", "disambig"):
        raise BBQFormatError(f"{where}: context_condition must be 'ambig' or 'disambig', got {cond!r}")
    try:
        cat = category_key(str(raw["category"]))
    except ValueError as e:
        raise BBQFormatError(f"{where}: {e}") from None
    label = raw["label"]
    # bool is an int in Python: `true` must not pass as option 1, nor 1.5 as option 1
    if isinstance(label, bool) or not isinstance(label, numbers.Integral) or label not in (0, 1, 2):
        raise BBQFormatError(f"{where}: label must be 0, 1 or 2 (an integer), got {label!r}")
    label = int(label)
    for key in ("context", "question", "ans0", "ans1", "ans2"):
        if not isinstance(raw[key], str):
            raise BBQFormatError(f"{where}: {key} must be text, got {raw[key]!r}")
    for key in ("question", "ans0", "ans1", "ans2"):
        if not raw[key].strip():
            raise BBQFormatError(f"{where}: {key} is empty")
    too_long = prompt_size_error(raw["context"] + raw["question"], where, max_bytes, LIMIT_KEY)
    if too_long:
        raise BBQFormatError(too_long.replace(": prompt of", ": context and question of", 1))
    example_id = raw["example_id"]
    if (isinstance(example_id, bool) or not isinstance(example_id, (str, numbers.Integral))
            or not str(example_id).strip()):
        raise BBQFormatError(f"{where}: example_id must be a number or text, got {example_id!r}")
    info = raw["answer_info"]
    if not isinstance(info, Mapping) or any(not isinstance(info.get(f"ans{i}"), Sequence) for i in range(3)):
        raise BBQFormatError(f"{where}: answer_info must map ans0..ans2 to [text, group]")
    answers = (str(raw["ans0"]), str(raw["ans1"]), str(raw["ans2"]))
    unknown = find_unknown_index(info, answers)
    if unknown is None:
        raise BBQFormatError(f"{where}: no option is labelled 'unknown' in answer_info")
    meta = raw.get("additional_metadata") or {}
    groups = meta.get("stereotyped_groups") or [] if isinstance(meta, Mapping) else None
    if not isinstance(groups, list):
        raise BBQFormatError(f"{where}: additional_metadata must be an object whose stereotyped_groups is a list, "
                             f"got {raw.get('additional_metadata')!r}")
    groups = tuple(str(g) for g in groups)
    source_id = str(example_id).strip()
    loc = (target_locs or {}).get((cat, source_id))
    if loc is not None and loc in (0, 1, 2) and loc != unknown:
        target = loc
    else:
        target = bias_target_index(info, answers, groups, pol, unknown)
    return BBQItem(
        item_id="", source_id=source_id, category=cat, question_index=str(raw.get("question_index", "")),
        question_polarity=pol, context_condition=cond, context=str(raw["context"]), question=str(raw["question"]),
        answers=answers, label=label, target_index=target, unknown_index=unknown,
        answer_info={k: list(v) for k, v in info.items()}, stereotyped_groups=groups, where=where,
    )


def read_target_locs(path: str | Path) -> dict[tuple[str, str], int]:
    """BBQ's ``additional_metadata.csv``: (category key, example_id) -> target_loc (0-2), the
    biased answer of that item (already polarity-adjusted; see :func:`parse_row`).
    Rows whose target_loc is empty/NA are left out (those items fall back to name matching)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"metadata_csv {path} not found (BBQ's analysis_scripts/additional_metadata.csv)")
    out: dict[tuple[str, str], int] = {}
    try:
        header, records = read_csv_records(path, what="metadata CSV")
    except InputFileError as e:
        raise BBQFormatError(str(e)) from None
    need = {"category", "example_id", "target_loc"}
    if not need <= set(header):
        raise BBQFormatError(f"{path}:1: needs columns {sorted(need)}, has {header}; use BBQ's "
                             "analysis_scripts/additional_metadata.csv")
    for _, row in records:
        loc = (row["target_loc"] or "").strip()
        if loc in ("", "NA", "nan"):
            continue
        try:
            out[(category_key(row["category"]), str(row["example_id"]).strip())] = int(float(loc))
        except ValueError:
            continue  # a category outside BBQ or a malformed cell: name matching decides
    return out


def _read_jsonl(path: Path, bad: list[str], skip_bad: bool, locs, max_bytes: int) -> list[BBQItem]:
    items: list[BBQItem] = []
    with open_text(path, "BBQ file") as f:
        for where, raw in parse_lines(f, str(path)):
            if isinstance(raw, JSONLineError):
                raw = BBQFormatError(str(raw).removeprefix(f"{where}: "))
            _parse_or_skip(raw, where, items, bad, skip_bad, locs, max_bytes)
    return items


def _parse_or_skip(raw, where: str, items: list, bad: list[str], skip_bad: bool, locs, max_bytes: int) -> None:
    """Append the parsed row to ``items``; a bad row raises, or is listed in ``bad`` when skipping."""
    try:
        if isinstance(raw, BBQFormatError):
            raise BBQFormatError(f"{where}: {raw}")
        items.append(parse_row(raw, where, locs, max_bytes))
    except BBQFormatError as e:
        if not skip_bad:
            raise BBQFormatError(f"{e} -- fix the row, or set `fairness: {{skip_bad_items: true}}` in the sweep file to skip bad rows") from None
        bad.append(str(e))


def _directory_files(root: Path, categories: Sequence[str] | None) -> list[Path]:
    base = root / "data" if not any(root.glob("*.jsonl")) and (root / "data").is_dir() else root
    wanted = categories or BBQ_ALL_CATEGORIES
    files = [base / f"{_KEY_TO_STEM[c]}.jsonl" for c in wanted]
    found = [p for p in files if p.is_file()]
    missing = [p.name for p in files if not p.is_file()]
    if categories and missing:
        raise FileNotFoundError(f"{base}: missing BBQ file(s) {', '.join(missing)}")
    if not found:
        raise FileNotFoundError(
            f"{base}: no official BBQ files found (expected e.g. Age.jsonl, Race_x_SES.jsonl; "
            "see https://github.com/nyu-mll/BBQ/tree/main/data)"
        )
    return found


def _load_hf(dataset_id: str, categories: Sequence[str] | None, bad, skip_bad, locs, max_bytes: int) -> list[BBQItem]:
    import datasets

    configs = [_KEY_TO_STEM[c] for c in categories] if categories else ["All"]
    items: list[BBQItem] = []
    for config in configs:
        try:
            ds = datasets.load_dataset(dataset_id, config)
        except Exception as e:  # noqa: BLE001 -- re-raised with what to do
            msg = str(e)
            if any(s in msg for s in ("401", "403", "gated", "Unauthorized", "authenticat")):
                raise PermissionError(
                    f"Hugging Face dataset {dataset_id!r} (config {config!r}) is gated or needs a login: accept its "
                    "terms on the Hub and set HF_TOKEN (or run `huggingface-cli login`)."
                ) from e
            raise FileNotFoundError(
                f"could not load Hugging Face dataset {dataset_id!r} config {config!r}: {msg.splitlines()[0] if msg else e!r}. "
                "Check the id and config (one per category or 'All'), your network or HF_HUB_OFFLINE, or pass a "
                "local directory of the official BBQ JSONL files."
            ) from e
        splits = getattr(ds, "keys", lambda: [])()
        split = "test" if "test" in splits else (next(iter(splits)) if splits else None)
        rows: Iterable = ds[split] if split is not None else ds
        for n, raw in enumerate(rows):
            _parse_or_skip(raw, f"{dataset_id}[{config}/{split}] row {n}", items, bad, skip_bad, locs, max_bytes)
    return items


def _label_of(item: BBQItem, i: int) -> str:
    info = item.answer_info.get(f"ans{i}") or ["", ""]
    return str(info[1]) if len(info) > 1 else ""


def resolve_by_template(items: list[BBQItem]) -> list[BBQItem]:
    """Second pass of target resolution (:mod:`.targets`, step 2): an item left unresolved
    because both options' group labels name a stereotyped group gets the template's profile
    (tokens shared by the stereotyped options of the template's resolved items) as tie-breaker.
    Items without a ``question_index`` are left as they are. Must run on whole files, before
    per-cell sampling, so the profile does not depend on the sample."""
    from dataclasses import replace

    stereo_labels: dict[tuple[str, str], list[str]] = defaultdict(list)
    for it in items:
        s = stereotyped_from_target(it.target_index, it.question_polarity, it.unknown_index, len(it.answers))
        if s is not None and it.question_index:
            stereo_labels[(it.category, it.question_index)].append(_label_of(it, s))
    out = []
    for it in items:
        key = (it.category, it.question_index)
        if it.target_index is None and it.question_index and stereo_labels.get(key):
            profile = template_profile(stereo_labels[key])
            target = bias_target_index(it.answer_info, it.answers, it.stereotyped_groups, it.question_polarity,
                                       it.unknown_index, profile)
            it = replace(it, target_index=target) if target is not None else it
        out.append(it)
    return out


def _assign_ids(items: list[BBQItem]) -> list[BBQItem]:
    """Each item's id, ``<category>-<example_id>``. An item read twice (a file given twice, a row
    repeated) would be scored twice: :class:`BBQFormatError` naming both places."""
    from dataclasses import replace

    first: dict[str, str] = {}
    out = []
    for it in items:
        item_id = f"{it.category.replace('_', '-')}-{it.source_id}"
        if item_id in first:
            raise BBQFormatError(f"{it.where}: example_id {it.source_id} of category {it.category} was already read at "
                                 f"{first[item_id]}; is a file given twice or a row repeated? Remove the copy")
        first[item_id] = it.where
        out.append(replace(it, item_id=item_id))
    return out


def sample_per_cell(items: Sequence[BBQItem], per_cell: int, seed: int = 0) -> list[BBQItem]:
    """At most ``per_cell`` items per (category, context_condition, question_polarity), drawn
    without replacement with a generator seeded by (seed, cell), so a cell's draw does not
    depend on which other categories were loaded. Input order is kept."""
    if per_cell < 1:
        raise ValueError(f"per_cell must be >= 1, got {per_cell}")
    cells: dict[tuple[str, str, str], list[int]] = defaultdict(list)
    for i, it in enumerate(items):
        cells[(it.category, it.context_condition, it.question_polarity)].append(i)
    keep: set[int] = set()
    for cell, idx in cells.items():
        rng = random.Random(f"{seed}:{':'.join(cell)}")
        keep.update(idx if len(idx) <= per_cell else rng.sample(idx, per_cell))
    return [it for i, it in enumerate(items) if i in keep]


def load_bbq(
    source: str | Path,
    *,
    per_cell: int | None = None,
    categories: Sequence[str] | None = None,
    seed: int = 0,
    skip_bad_items: bool = False,
    metadata_csv: str | Path | None = None,
    max_prompt_bytes: int = DEFAULT_MAX_PROMPT_BYTES,
) -> BBQLoadResult:
    """Load and validate BBQ items from ``source`` ("builtin", a directory, a .jsonl file, or a
    Hugging Face dataset id). ``categories`` are our keys (e.g. "age", "race_x_ses") or official
    spellings; None means all available. Raises BBQFormatError (file:line; also when no usable
    item is left), FileNotFoundError or PermissionError (gated dataset) with what to do."""
    cats = list(dict.fromkeys(category_key(c) for c in categories)) if categories else None  # "Age", "age": one
    locs = read_target_locs(metadata_csv) if metadata_csv else None
    bad: list[str] = []
    src = str(source)
    path = Path(src)
    if src == "builtin":
        items = _read_jsonl(BUILTIN_PATH, bad, skip_bad_items, locs, max_prompt_bytes)
    elif path.is_dir():
        items = [it for p in _directory_files(path, cats)
                 for it in _read_jsonl(p, bad, skip_bad_items, locs, max_prompt_bytes)]
    elif path.is_file():
        items = _read_jsonl(path, bad, skip_bad_items, locs, max_prompt_bytes)
    elif path.suffix in (".jsonl", ".json") or src.startswith((".", "/", "~")):
        raise FileNotFoundError(f"BBQ source {src!r} does not exist")
    else:
        items = _load_hf(src, cats, bad, skip_bad_items, locs, max_prompt_bytes)
    if not items:  # nothing to score must not pass as "no change"
        why = (f"all {len(bad)} rows are bad (skip_bad_items), first: {bad[0]}" if bad
               else "the source holds no rows (an empty file?)")
        raise BBQFormatError(f"BBQ source {src!r}: no usable items: {why}")
    if cats:
        items = [it for it in items if it.category in cats]
        if not items:
            raise ValueError(f"BBQ source {src!r} has no items in categories {', '.join(cats)}")
    items = _assign_ids(resolve_by_template(items))
    if per_cell is not None:
        items = sample_per_cell(items, per_cell, seed)
    return BBQLoadResult(
        items=items, n_unresolved=sum(it.target_index is None for it in items), bad_lines=bad, source=src
    )
