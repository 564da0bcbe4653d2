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

import csv
import os
import random
import re
from collections.abc import Iterable
from pathlib import Path

from .config import SafetyConfig
from ...jsonl import JSONLineError, read_jsonl
from ...textio import open_text
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
        prompts = _load_hexphi_hub()
    else:
        path = Path(source).expanduser()
        if path.is_dir():
            prompts = load_hexphi_dir(path)
        elif path.is_file() and path.suffix.lower() in (".csv", ".jsonl"):
            prompts = load_table(path, cfg.columns, cfg.category_map)
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


def _csv_prompts(path: Path, category: str) -> list[SafetyPrompt]:
    with open_text(path, "safety prompt file") as f:
        texts = [row[0].strip() for row in csv.reader(f) if row and row[0].strip()]
    return [SafetyPrompt(f"{category}-{i:03d}", category, t) for i, t in enumerate(texts, 1)]


def _hexphi_key(number: int, where: str) -> str:
    if not 1 <= number <= len(SAFETY_CATEGORIES):
        raise SafetyDataError(f"{where}: HEx-PHI category number {number} is outside 1..{len(SAFETY_CATEGORIES)}")
    return SAFETY_CATEGORIES[number - 1]


def load_hexphi_dir(directory: Path) -> list[SafetyPrompt]:
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
        out.extend(_csv_prompts(files[n], _hexphi_key(n, str(files[n]))))
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


def _load_hexphi_hub() -> list[SafetyPrompt]:
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
        out.extend(_csv_prompts(Path(local), key))
    return out


def _read_rows(path: Path) -> Iterable[dict]:
    if path.suffix.lower() == ".jsonl":
        try:
            yield from read_jsonl(path)
        except JSONLineError as e:
            raise SafetyDataError(str(e)) from None
    else:
        with open_text(path, "safety prompt file") as f:
            yield from csv.DictReader(f)


def load_table(path: Path, columns: dict[str, str], category_map: dict[str, str]) -> list[SafetyPrompt]:
    """Read prompts from a CSV (with header) or JSONL file using a column mapping
    (``prompt`` required, ``category`` optional; defaults are the same names)."""
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
    counters: dict[str, int] = {}
    out: list[SafetyPrompt] = []
    for i, row in enumerate(_read_rows(path), 1):
        if prompt_col not in row:
            raise SafetyDataError(
                f"{path} row {i}: no column {prompt_col!r} (columns: {', '.join(map(str, row))}); "
                "set safety.columns.prompt"
            )
        text = str(row[prompt_col] or "").strip()
        if not text:
            continue
        raw_cat = row.get(cat_col)
        if raw_cat is None:
            if "*" not in category_map:
                raise SafetyDataError(
                    f"{path} row {i}: no category column {cat_col!r}; set safety.columns.category, or "
                    "safety.category_map: {'*': <key>} to put every prompt in one category"
                )
            cat = category_map["*"]
        else:
            raw_cat = str(raw_cat).strip()
            cat = category_map.get(raw_cat, raw_cat)
            if cat not in SAFETY_CATEGORIES:
                raise SafetyDataError(
                    f"{path} row {i}: category {raw_cat!r} is not one of the 11 keys; add it to "
                    f"safety.category_map. Valid keys: {', '.join(SAFETY_CATEGORIES)}"
                )
        counters[cat] = counters.get(cat, 0) + 1
        out.append(SafetyPrompt(f"{cat}-{counters[cat]:03d}", cat, text))
    return out
