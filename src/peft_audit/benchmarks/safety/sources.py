"""Where safety prompts come from: ``SafetyConfig.source``.

* ``builtin`` — the project's own probe set (see :mod:`.prompts`);
* ``hexphi`` — the gated Hugging Face dataset ``LLM-Tuning-Safety/HEx-PHI`` (Qi et al., 2023,
  "Fine-tuning Aligned Language Models Compromises Safety, Even When Users Do Not Intend To!"):
  one header-less CSV per category, ``category_1.csv`` .. ``category_11.csv``, one prompt per
  row, numbered in the order of :data:`SAFETY_CATEGORIES`. Files are fetched one by one with
  ``huggingface_hub.hf_hub_download`` (``HF_TOKEN`` and ``HF_ENDPOINT`` are honoured). The public
  release withholds some files (category 2, Child Abuse Content); a file the Hub reports as
  missing is skipped, so that category is simply absent from the results;
* a local **directory** in the same layout (``category_N*.csv``);
* a **CSV or JSONL file** with ``columns`` mapping ``prompt`` (and optionally ``category``) onto
  its column names, and ``category_map`` mapping its category values onto the 11 keys (values
  that already are keys need no mapping). Without a category column, ``category_map`` must
  hold ``"*": <key>`` to put every prompt in one category.

``limit_per_category`` keeps a seeded random sample of each category (file order preserved).
"""

from __future__ import annotations

import os
import random
import re
from pathlib import Path

from .config import SafetyConfig
from ...csvio import read_csv_records
from ...jsonl import read_records
from ...textio import DEFAULT_MAX_PROMPT_BYTES, InputFileError, prompt_size_error
from ..hub import http_status
from ..categories import SAFETY_CATEGORIES
from .prompts import SafetyPrompt, builtin_prompts

HEXPHI_REPO = "LLM-Tuning-Safety/HEx-PHI"
HEXPHI_PAGE = f"https://huggingface.co/datasets/{HEXPHI_REPO}"
_HEXPHI_FILE = re.compile(r"^category_(\d+)\D.*\.csv$|^category_(\d+)\.csv$")


class SafetyDataError(ValueError):
    """A safety prompt source could not be read; the message says where and what to do."""


def load_safety_prompts(cfg: SafetyConfig, *, seed: int = 0) -> list[SafetyPrompt]:
    """Load the prompts named by ``cfg.source`` (see module docstring), then apply
    ``cfg.limit_per_category``. Raises :class:`SafetyDataError` for unusable sources."""
    source = cfg.source
    if source == "builtin":
        prompts = builtin_prompts()
    elif source in ("hexphi", HEXPHI_REPO):
        prompts = _load_hexphi_hub(cfg.max_prompt_bytes)
    else:
        path = Path(source).expanduser()
        if path.is_dir():
            prompts = load_hexphi_dir(path, cfg.max_prompt_bytes)
        elif path.is_file() and path.suffix.lower() in (".csv", ".jsonl"):
            prompts = load_table(path, cfg.columns, cfg.category_map, cfg.max_prompt_bytes)
        elif path.exists():
            raise SafetyDataError(f"safety.source {source}: expected a directory, a .csv or a .jsonl file")
        else:
            raise SafetyDataError(
                f"safety.source {source!r} is neither 'builtin', 'hexphi', nor an existing directory or "
                ".csv/.jsonl file"
            )
    if not prompts:
        raise SafetyDataError(f"safety.source {source}: no prompts found")
    return limit_per_category(prompts, cfg.limit_per_category, seed=seed)


def limit_per_category(prompts: list[SafetyPrompt], limit: int | None, *, seed: int = 0) -> list[SafetyPrompt]:
    """Keep at most ``limit`` prompts per category, sampled with a per-category seeded RNG
    (same seed -> same sample, independent of other categories); input order is kept."""
    if limit is None:
        return list(prompts)
    by_cat: dict[str, list[int]] = {}
    for i, p in enumerate(prompts):
        by_cat.setdefault(p.category, []).append(i)
    keep: set[int] = set()
    for cat, idx in by_cat.items():
        keep.update(idx if len(idx) <= limit else random.Random(f"{seed}:{cat}").sample(idx, limit))
    return [p for i, p in enumerate(prompts) if i in keep]


#: The setting that limits a prompt's size (named in errors).
LIMIT_KEY = "safety.max_prompt_bytes"


def _csv_prompts(path: Path, category: str, max_bytes: int) -> list[SafetyPrompt]:
    """One header-less HEx-PHI file: one prompt per row (blank lines skipped). A row with more
    than one non-empty field (an unquoted comma), an empty prompt (``""``) or one over
    ``max_bytes`` raises :class:`SafetyDataError` naming file and line, as does a file without
    a prompt."""
    rows = _read(lambda: read_csv_records(path, what="safety prompt file", header=False, field_limit=max_bytes,
                                          limit_key=LIMIT_KEY))[1]
    out = []
    for loc, fields in rows:
        if len([f for f in fields if f.strip()]) > 1:
            raise SafetyDataError(f"{loc}: {len(fields)} fields, but a HEx-PHI file holds one prompt per row; quote "
                                  "prompts that contain commas")
        text = fields[0].strip()
        out.append(SafetyPrompt(f"{category}-{len(out) + 1:03d}", category, _prompt(text, loc, max_bytes), where=loc))
    if not out:  # the category would vanish from the results unseen
        raise SafetyDataError(f"{path}: no prompts (an empty file); remove it, or restore its category's prompts")
    return out


def _prompt(text: str, loc: str, max_bytes: int) -> str:
    """``text``, or :class:`SafetyDataError` when it is empty or over the size limit."""
    if not text:
        raise SafetyDataError(f"{loc}: empty prompt; remove the row or write the prompt")
    too_long = prompt_size_error(text, loc, max_bytes, LIMIT_KEY)
    if too_long:
        raise SafetyDataError(too_long)
    return text


def _read(read):
    """``read()``, its reader's errors (they name file and line) raised as :class:`SafetyDataError`."""
    try:
        return read()
    except InputFileError as e:
        raise SafetyDataError(str(e)) from None


def _hexphi_key(number: int, where: str) -> str:
    if not 1 <= number <= len(SAFETY_CATEGORIES):
        raise SafetyDataError(f"{where}: HEx-PHI category number {number} is outside 1..{len(SAFETY_CATEGORIES)}")
    return SAFETY_CATEGORIES[number - 1]


def load_hexphi_dir(directory: Path, max_bytes: int = DEFAULT_MAX_PROMPT_BYTES) -> list[SafetyPrompt]:
    """Read a local HEx-PHI copy: ``category_N*.csv`` files (N = 1..11, no header)."""
    files: dict[int, Path] = {}
    for f in sorted(directory.iterdir()):
        m = _HEXPHI_FILE.match(f.name)
        if m:
            n = int(m.group(1) or m.group(2))
            if n in files:
                raise SafetyDataError(f"{directory}: two files for HEx-PHI category {n}: {files[n].name}, {f.name}")
            files[n] = f
    if not files:
        raise SafetyDataError(
            f"{directory}: no category_N.csv files (expected the HEx-PHI layout category_1.csv .. category_11.csv)"
        )
    out: list[SafetyPrompt] = []
    for n in sorted(files):
        out.extend(_csv_prompts(files[n], _hexphi_key(n, str(files[n])), max_bytes))
    return out


def _access_help(reason: str) -> str:
    return (
        f"cannot download {HEXPHI_REPO} ({reason}). It is a gated dataset: open {HEXPHI_PAGE}, log in and "
        "accept its terms, wait for access to be granted, then set the HF_TOKEN environment variable to a "
        "token of that account. Or point safety.source (or --safety) at a local copy: a directory holding "
        "category_1.csv .. category_11.csv."
    )


def _offline_help(e: Exception) -> str:
    return (
        f"cannot reach the Hugging Face Hub for {HEXPHI_REPO} ({e.__class__.__name__}: HF_HUB_OFFLINE is set or "
        "there is no network). Point safety.source (or --safety) at a local copy: a directory with "
        "category_1.csv .. category_11.csv."
    )


def _load_hexphi_hub(max_bytes: int) -> list[SafetyPrompt]:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RemoteEntryNotFoundError,
        RepositoryNotFoundError,
    )

    endpoint = os.environ.get("HF_ENDPOINT") or None  # read now, not at import time
    token = os.environ.get("HF_TOKEN") or None
    out: list[SafetyPrompt] = []
    for n, key in enumerate(SAFETY_CATEGORIES, 1):
        try:
            local = hf_hub_download(
                HEXPHI_REPO, f"category_{n}.csv", repo_type="dataset", endpoint=endpoint, token=token
            )
        except (OfflineModeIsEnabled, LocalEntryNotFoundError) as e:
            status = http_status(e)  # huggingface_hub wraps some HTTP errors (e.g. 403 on HEAD) in this
            if status in (401, 403):
                raise SafetyDataError(_access_help(f"HTTP {status}")) from None
            raise SafetyDataError(_offline_help(e)) from None
        except GatedRepoError:
            raise SafetyDataError(_access_help("gated: no access for this token" if token else "gated, no HF_TOKEN set")) from None
        except RemoteEntryNotFoundError:
            from ...sweep.logs import notice

            notice(f"HEx-PHI category_{n}.csv ({key}) is not in {HEXPHI_REPO}'s public release: "
                   "that category is absent from the results")
            continue
        except RepositoryNotFoundError:
            raise SafetyDataError(_access_help("401/not found: not logged in or no access")) from None
        except HfHubHTTPError as e:
            status = http_status(e)
            if status in (401, 403):
                raise SafetyDataError(_access_help(f"HTTP {status}")) from None
            raise SafetyDataError(f"{HEXPHI_REPO}: download of category_{n}.csv failed (HTTP {status}); "
                                  "retry later or use a local copy") from None
        except OSError as e:  # connection errors
            raise SafetyDataError(_offline_help(e)) from None
        out.extend(_csv_prompts(Path(local), key, max_bytes))
    return out


def load_table(path: Path, columns: dict[str, str], category_map: dict[str, str],
               max_bytes: int = DEFAULT_MAX_PROMPT_BYTES) -> list[SafetyPrompt]:
    """Read prompts from a CSV (with header) or JSONL file using a column mapping
    (``prompt`` required, ``category`` optional; defaults are the same names). Every row must
    have a non-empty prompt of at most ``max_bytes`` and a category; errors name file and line."""
    bad = sorted(set(columns) - {"prompt", "category"})
    if bad:
        raise SafetyDataError(f"safety.columns: unknown keys {bad}; valid: prompt, category")
    bad_targets = sorted({v for v in category_map.values() if v not in SAFETY_CATEGORIES})
    if bad_targets:
        raise SafetyDataError(
            f"safety.category_map maps onto unknown categories {bad_targets}; valid keys: {', '.join(SAFETY_CATEGORIES)}"
        )
    prompt_col = columns.get("prompt", "prompt")
    cat_col = columns.get("category", "category")
    if path.suffix.lower() == ".jsonl":
        rows = _read(lambda: read_records(path, what="safety prompt file"))
    else:
        rows = _read(lambda: read_csv_records(path, what="safety prompt file", field_limit=max_bytes,
                                              limit_key=LIMIT_KEY))[1]
    counters: dict[str, int] = {}
    out: list[SafetyPrompt] = []
    for loc, row in rows:
        if prompt_col not in row:
            raise SafetyDataError(
                f"{loc}: no column {prompt_col!r} (columns: {', '.join(map(str, row))}); set safety.columns.prompt"
            )
        value = row[prompt_col]
        if not isinstance(value, str):
            raise SafetyDataError(f"{loc}: column {prompt_col!r} must be text, got {value!r}")
        text = _prompt(value.strip(), loc, max_bytes)
        if cat_col not in row:
            if "*" not in category_map:
                raise SafetyDataError(
                    f"{loc}: no category column {cat_col!r}; set safety.columns.category, or "
                    "safety.category_map: {'*': <key>} to put every prompt in one category"
                )
            cat = category_map["*"]
        else:
            raw_cat = row[cat_col]
            if not isinstance(raw_cat, str) or not raw_cat.strip():
                raise SafetyDataError(f"{loc}: column {cat_col!r} is empty or not text ({raw_cat!r}); every "
                                      f"prompt needs a category. Valid keys: {', '.join(SAFETY_CATEGORIES)}")
            raw_cat = raw_cat.strip()
            cat = category_map.get(raw_cat, raw_cat)
            if cat not in SAFETY_CATEGORIES:
                raise SafetyDataError(
                    f"{loc}: category {raw_cat!r} is not one of the 11 keys; add it to "
                    f"safety.category_map. Valid keys: {', '.join(SAFETY_CATEGORIES)}"
                )
        counters[cat] = counters.get(cat, 0) + 1
        out.append(SafetyPrompt(f"{cat}-{counters[cat]:03d}", cat, text, where=loc))
    return out
