"""Where XSTest prompts come from: ``XSTestConfig.source``.

The layout is the official ``xstest_prompts.csv`` (Röttger et al., 2024; repository
``paul-rottger/xstest``, formerly ``exaggerated-safety``): a header row, then one prompt per row
in the columns

====== ============================================================================
id     unique prompt number (1..450 in the official file); the row number when absent
prompt the text sent to the model (required, non-empty)
type   one of the 10 safe types (``homonyms``, ``figurative_language``, ``safe_targets``,
       ``safe_contexts``, ``definitions``, ``real_group_nons_discr``,
       ``nons_group_real_discr``, ``historical_events``, ``privacy_public``,
       ``privacy_fictional``) or a contrast type ``contrast_*`` (required)
label  ``safe`` or ``unsafe``: the contrast types are ``unsafe``, all others ``safe``
       (XSTest's readme); derived from ``type`` when the column is absent or empty
focus  the word or entity the prompt turns on (optional)
note   a free-text note (optional)
====== ============================================================================

Sources: ``builtin`` (the project's own 38 prompts in that layout, ``data/xstest_sample.csv``,
written for this package: 2 per safe type, 2-3 per contrast type, requests only, nothing
operational); a local ``.csv`` or ``.jsonl`` file (JSONL: one object per line with the same
keys); a local directory holding ``filename``; or a Hugging Face **dataset** id ``owner/name``
whose file ``filename`` (default ``xstest_prompts.csv``) is fetched with
``huggingface_hub.hf_hub_download`` (``HF_ENDPOINT`` and ``HF_TOKEN`` honoured). Only CSV and
JSONL are read: Hub copies stored as parquet must be converted first (the error says how).

``limit_per_type`` keeps a seeded random sample of each type (file order kept).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from ...csvio import read_csv_records
from ...hub_ids import is_hub_id
from ...jsonl import read_records
from ...textio import DEFAULT_MAX_PROMPT_BYTES, InputFileError, prompt_size_error
from ..hub import download_dataset_file
from ..safety.sources import limit_per_category
from .config import XSTestConfig

SAFE, UNSAFE = "safe", "unsafe"
#: The label groups, in report order.
GROUPS = (SAFE, UNSAFE)
CONTRAST_PREFIX = "contrast_"
BUILTIN_FILE = "xstest_sample.csv"
REQUIRED_COLUMNS = ("prompt", "type")
_READABLE = (".csv", ".jsonl")


class XSTestDataError(ValueError):
    """An XSTest source could not be read; the message says where and what to do."""


@dataclass(frozen=True)
class XSTestPrompt:
    """One XSTest prompt. ``label`` is ``safe`` (should be answered) or ``unsafe`` (a contrast
    prompt, type ``contrast_*``, that a safe assistant declines)."""

    id: str
    prompt: str
    type: str
    label: str
    focus: str = ""
    note: str = ""
    #: where it was read (``file:line``), for errors about it
    where: str = field(default="", compare=False)

    @property
    def category(self) -> str:
        """The prompt type (the per-category unit of the store and the report)."""
        return self.type


def label_of_type(prompt_type: str) -> str:
    """``unsafe`` for a contrast type (``contrast_*``), else ``safe`` (XSTest's readme)."""
    return UNSAFE if prompt_type.startswith(CONTRAST_PREFIX) else SAFE


def load_xstest_prompts(cfg: XSTestConfig, *, seed: int = 0) -> list[XSTestPrompt]:
    """The prompts ``cfg.source`` names (module docstring), then ``cfg.limit_per_type``.
    Raises :class:`XSTestDataError` for an unusable source."""
    source = cfg.source
    if source == "builtin":
        text = resources.files(__package__).joinpath("data", BUILTIN_FILE).read_text(encoding="utf-8")
        prompts = parse_rows(_records(lambda: read_csv_records(f"{__package__}/data/{BUILTIN_FILE}", text=text)[1]),
                             cfg.max_prompt_bytes)
    else:
        path = Path(source).expanduser()
        if path.is_dir():
            path = path / cfg.filename
            if not path.is_file():
                raise XSTestDataError(f"xstest.source {source}: no file {cfg.filename!r} in that directory; "
                                      "set xstest.filename")
            prompts = read_table(path, cfg.max_prompt_bytes)
        elif path.is_file():
            prompts = read_table(path, cfg.max_prompt_bytes)
        elif is_hub_id(source) and not source.lower().endswith((*_READABLE, ".parquet")):
            prompts = read_table(download_from_hub(source, cfg.filename, cfg.revision), cfg.max_prompt_bytes)
        else:
            raise XSTestDataError(
                f"xstest.source {source!r} is neither 'builtin', an existing .csv/.jsonl file or directory, nor a "
                "Hugging Face dataset id (owner/name)")
    if not prompts:
        raise XSTestDataError(f"xstest.source {source}: no prompts found")
    return limit_per_category(prompts, cfg.limit_per_type, seed=seed)


def read_table(path: Path, max_bytes: int = DEFAULT_MAX_PROMPT_BYTES) -> list[XSTestPrompt]:
    """Prompts of a CSV (with header) or JSONL file in XSTest's columns (UTF-8, with or without a
    byte-order mark); a prompt over ``max_bytes`` is refused naming its line."""
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return parse_rows(_records(lambda: read_csv_records(path, what="XSTest file", field_limit=max_bytes,
                                                            limit_key=LIMIT_KEY)[1]), max_bytes)
    if suffix == ".jsonl":
        return parse_rows(_records(lambda: read_records(path, what="XSTest file")), max_bytes)
    raise XSTestDataError(_unsupported(path.name, str(path)))


#: The setting that limits a prompt's size (named in errors).
LIMIT_KEY = "xstest.max_prompt_bytes"


def _records(read) -> list[tuple[str, dict]]:
    """``read()``, its reader's errors (they name file and line) raised as :class:`XSTestDataError`."""
    try:
        return read()
    except InputFileError as e:
        raise XSTestDataError(str(e)) from None


def _unsupported(name: str, where: str) -> str:
    return (f"{where}: cannot read {name!r}: xstest reads CSV (.csv, with a header row) or JSON Lines (.jsonl) only. "
            "For a parquet copy, convert it first, e.g. python -c \"import pandas as pd; "
            f"pd.read_parquet('{name}').to_csv('xstest_prompts.csv', index=False)\", or use the official "
            "xstest_prompts.csv")


def parse_rows(rows, max_bytes: int = DEFAULT_MAX_PROMPT_BYTES) -> list[XSTestPrompt]:
    """Validate ``(location, row)`` pairs (module docstring) into prompts; errors name the
    location (file:line) and the column."""
    out: list[XSTestPrompt] = []
    first_seen: dict[str, str] = {}
    for n, (loc, row) in enumerate(rows, 1):
        missing = [c for c in REQUIRED_COLUMNS if c not in row]
        if missing:
            raise XSTestDataError(f"{loc}: no column {missing[0]!r} (columns: {', '.join(map(str, row))}); XSTest's "
                                  "layout has id, prompt, type, label, focus, note")
        for key in ("prompt", "type", "label"):  # a JSONL number or NaN must not become the text "nan"
            if row.get(key) is not None and not isinstance(row[key], str):
                raise XSTestDataError(f"{loc}: column {key!r} must be text, got {row[key]!r}")
        cell = {k: "" if v is None else str(v).strip() for k, v in row.items()}
        prompt, ptype = cell["prompt"], cell["type"]
        if not prompt:
            raise XSTestDataError(f"{loc}: column 'prompt' is empty")
        too_long = prompt_size_error(prompt, loc, max_bytes, LIMIT_KEY)
        if too_long:
            raise XSTestDataError(too_long)
        if not ptype:
            raise XSTestDataError(f"{loc}: column 'type' is empty")
        if ptype == "overall":
            raise XSTestDataError(f"{loc}: type 'overall' is reserved for the aggregate rows; rename it")
        expected = label_of_type(ptype)
        label = cell.get("label", "").lower() or expected
        if label not in GROUPS:
            raise XSTestDataError(f"{loc}: column 'label' is {cell['label']!r}; expected 'safe' or 'unsafe'")
        if label != expected:
            raise XSTestDataError(
                f"{loc}: type {ptype!r} is labelled {label!r}; in XSTest's layout the contrast types "
                f"({CONTRAST_PREFIX}*) are 'unsafe' and all others 'safe'")
        pid = cell.get("id") or str(n)
        if pid in first_seen:
            raise XSTestDataError(f"{loc}: id {pid!r} already used at {first_seen[pid]}; ids must be unique")
        first_seen[pid] = loc
        out.append(XSTestPrompt(pid, prompt, ptype, label, cell.get("focus", ""), cell.get("note", ""), loc))
    return out


def download_from_hub(repo_id: str, filename: str, revision: str | None = None) -> Path:
    """Fetch ``filename`` of the Hub dataset ``repo_id`` (``HF_ENDPOINT`` / ``HF_TOKEN`` read
    now). Raises :class:`XSTestDataError` saying what went wrong and what to do."""
    if not filename.lower().endswith(_READABLE):
        raise XSTestDataError(_unsupported(filename, f"xstest.filename of {repo_id}"))
    return download_dataset_file(
        repo_id, filename, revision=revision, file_key="xstest.filename",
        revision_key="xstest.revision", error=XSTestDataError,
        local_copy=("or point xstest.source at a local copy of xstest_prompts.csv (the official file is in the "
                    "GitHub repository paul-rottger/xstest)"))