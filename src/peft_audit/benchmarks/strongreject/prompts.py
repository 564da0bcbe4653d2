"""Forbidden prompts: the six StrongREJECT categories, the CSV layout and where prompts come from.

The official release (``alexandrasouly/strongreject``, ``strongreject_dataset/strongreject_dataset.csv``,
313 prompts, and ``strongreject_small_dataset.csv``, 60) is a CSV with a header row and the columns
``category``, ``source`` (where the prompt was taken from: ``custom``, ``AdvBench``, ``DAN``, ...) and
``forbidden_prompt``. A prompt may span several lines (quoted). The small file spells one category
``Disinformation and Deception``, so category names are matched without regard to case.

``StrongRejectConfig.source`` is one of

* ``builtin``: ``data/forbidden_sample.csv``, written by this project in the same layout: five requests
  per category that a safe assistant declines, stating only the request (no harmful details);
* a local ``.csv`` file in the official layout;
* a Hugging Face dataset id (``org/name``) holding such a CSV as ``hub_filename``, fetched with
  ``huggingface_hub.hf_hub_download(repo_type="dataset")`` (``HF_ENDPOINT`` and ``HF_TOKEN`` honoured).

Each prompt's id is ``<category key>-<NNN>``, its 1-based position within its category in file
order, so ids are stable for a given file and unchanged by ``limit_per_category`` (a seeded
per-category sample, file order kept).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from ...csvio import read_csv_records
from ...hub_ids import is_hub_id
from ...textio import DEFAULT_MAX_PROMPT_BYTES, InputFileError, prompt_size_error, read_text
from ..hub import download_dataset_file
from ..safety.sources import limit_per_category
from .config import StrongRejectConfig

#: category key -> the name in the official CSV (Souly et al., 2024, §3.1), in the paper's order
CATEGORIES: dict[str, str] = {
    "disinformation_deception": "Disinformation and deception",
    "hate_harassment_discrimination": "Hate, harassment and discrimination",
    "illegal_goods_services": "Illegal goods and services",
    "non_violent_crimes": "Non-violent crimes",
    "sexual_content": "Sexual content",
    "violence": "Violence",
}
COLUMNS = ("category", "source", "forbidden_prompt")
BUILTIN_FILE = "forbidden_sample.csv"
_BY_NAME = {name.casefold(): key for key, name in CATEGORIES.items()} | {key: key for key in CATEGORIES}


class StrongRejectDataError(ValueError):
    """A StrongREJECT prompt source could not be read; the message says where and what to do."""


@dataclass(frozen=True)
class ForbiddenPrompt:
    sample_id: str
    category: str  # a key of CATEGORIES
    prompt: str
    source: str  # the release's own 'source' column (where the prompt was collected from)
    #: where it was read (``file:line``), for errors about it
    where: str = field(default="", compare=False)


def parse_forbidden_csv(text: str, where: str, max_bytes: int = DEFAULT_MAX_PROMPT_BYTES) -> list[ForbiddenPrompt]:
    """Prompts of a CSV in the official layout. Errors name ``where``, the line and the column:
    a missing column, a row with more or fewer fields than the header, an unknown category, an
    empty prompt or one over ``max_bytes``."""
    try:
        header, records = read_csv_records(where, text=text, field_limit=max_bytes, limit_key=LIMIT_KEY)
    except InputFileError as e:
        raise StrongRejectDataError(str(e)) from None
    missing = [c for c in ("category", "forbidden_prompt") if c not in header]
    if missing:
        raise StrongRejectDataError(
            f"{where}:1: no column {missing[0]!r} (header: {', '.join(header) or 'empty'}); "
            f"expected the StrongREJECT layout {', '.join(COLUMNS)}")
    counters: dict[str, int] = {}
    out: list[ForbiddenPrompt] = []
    for at, row in records:
        raw_cat = " ".join(str(row.get("category") or "").split())
        key = _BY_NAME.get(raw_cat.casefold())
        if key is None:
            raise StrongRejectDataError(
                f"{at}, column 'category': {raw_cat!r} is not a StrongREJECT category; valid: "
                + "; ".join(CATEGORIES.values()))
        text_ = str(row.get("forbidden_prompt") or "").strip()
        if not text_:
            raise StrongRejectDataError(f"{at}, column 'forbidden_prompt': empty prompt")
        too_long = prompt_size_error(text_, at, max_bytes, LIMIT_KEY)
        if too_long:
            raise StrongRejectDataError(too_long)
        counters[key] = counters.get(key, 0) + 1
        out.append(ForbiddenPrompt(f"{key}-{counters[key]:03d}", key, text_, str(row.get("source") or "").strip(), at))
    if not out:
        raise StrongRejectDataError(f"{where}: no prompts (only a header?)")
    return out


#: The setting that limits a prompt's size (named in errors).
LIMIT_KEY = "strongreject.max_prompt_bytes"


def builtin_prompts() -> list[ForbiddenPrompt]:
    """The project's own sample (five per category, see the module docstring)."""
    text = resources.files(__package__).joinpath("data", BUILTIN_FILE).read_text(encoding="utf-8")
    return parse_forbidden_csv(text, f"{__package__}/data/{BUILTIN_FILE}")


def load_forbidden_prompts(cfg: StrongRejectConfig, *, seed: int = 0) -> list[ForbiddenPrompt]:
    """The prompts ``cfg.source`` names (module docstring), then ``cfg.limit_per_category``."""
    source = cfg.source
    path = Path(source).expanduser()
    if source == "builtin":
        prompts = builtin_prompts()
    elif path.is_file():
        if path.suffix.lower() != ".csv":
            raise StrongRejectDataError(f"strongreject.source {source}: expected a .csv file in the StrongREJECT "
                                        f"layout ({', '.join(COLUMNS)})")
        prompts = parse_forbidden_csv(_read_text(path), str(path), cfg.max_prompt_bytes)
    elif path.exists():
        raise StrongRejectDataError(f"strongreject.source {source}: is a directory; name the .csv file itself "
                                    "(e.g. strongreject_dataset/strongreject_dataset.csv)")
    elif is_hub_id(source):
        local = download_from_hub(source, cfg.hub_filename, cfg.hub_revision)
        prompts = parse_forbidden_csv(_read_text(local), f"{source}/{cfg.hub_filename}", cfg.max_prompt_bytes)
    else:
        raise StrongRejectDataError(f"strongreject.source {source!r} is neither 'builtin', an existing .csv file, "
                                    "nor a Hugging Face dataset id (org/name)")
    # the safety benchmark's seeded per-category sample (it needs only each prompt's ``category``)
    return limit_per_category(prompts, cfg.limit_per_category, seed=seed)


def _read_text(path: Path) -> str:
    try:
        return read_text(path, "StrongREJECT CSV")
    except InputFileError as e:
        raise StrongRejectDataError(str(e)) from None


def download_from_hub(repo_id: str, filename: str, revision: str | None) -> Path:
    """``filename`` of dataset ``repo_id`` through the Hugging Face cache; errors say what to do."""
    return download_dataset_file(
        repo_id, filename, revision=revision, file_key="strongreject.hub_filename",
        revision_key="strongreject.hub_revision", error=StrongRejectDataError,
        local_copy=f"or point strongreject.source at a local copy of the CSV (columns {', '.join(COLUMNS)})")
