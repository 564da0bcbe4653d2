"""HarmBench behaviours: the record type, the prompt a model is sent, and where behaviours come from.

The published file layout (repository ``centerforaisafety/HarmBench``,
``data/behavior_datasets/harmbench_behaviors_text_all.csv`` and its ``_val`` / ``_test``
splits) is a CSV with the header

    Behavior,FunctionalCategory,SemanticCategory,Tags,ContextString,BehaviorID

* ``FunctionalCategory``: ``standard``, ``contextual`` (the behaviour refers to a
  ``ContextString``) or ``copyright`` (tagged ``hash_check``: HarmBench judges these by a
  near-copy hash check, which this project does not have);
* ``SemanticCategory``: one of :data:`SEMANTIC_CATEGORIES`;
* ``BehaviorID``: unique; it is the item id here (``sample_id`` in the store).

``HarmBenchConfig.source`` is

* ``builtin`` -- the project's own sample (``data/behaviors.csv``, written for this project in
  the same layout: requests only, no harmful content, fictional context strings);
* a local **CSV file** in that layout, or a **directory** holding ``HarmBenchConfig.file``
  (e.g. a HarmBench checkout's ``data/behavior_datasets``);
* a **Hugging Face dataset id** (``owner/name``) whose repository holds ``file``, fetched with
  ``huggingface_hub.hf_hub_download(repo_type="dataset")`` (``HF_ENDPOINT`` and ``HF_TOKEN``
  are honoured; ``revision`` picks a branch, tag or commit).

Then ``functional_categories`` keeps those functional categories (default standard and
contextual) and ``limit_per_category`` a seeded sample per semantic category.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from ...csvio import read_csv_records
from ...hub_ids import is_hub_id
from ...textio import DEFAULT_MAX_PROMPT_BYTES, InputFileError, prompt_size_error, read_text
from ..hub import download_dataset_file
from .config import HarmBenchConfig

SEMANTIC_CATEGORIES: tuple[str, ...] = (
    "chemical_biological", "illegal", "misinformation_disinformation", "harmful", "harassment_bullying",
    "cybercrime_intrusion", "copyright",
)
FUNCTIONAL_CATEGORIES: tuple[str, ...] = ("standard", "contextual", "copyright")
#: The header of HarmBench's text behaviour files, in order. ``Tags`` may be absent.
COLUMNS: tuple[str, ...] = ("Behavior", "FunctionalCategory", "SemanticCategory", "Tags", "ContextString", "BehaviorID")
REQUIRED_COLUMNS = tuple(c for c in COLUMNS if c != "Tags")


class HarmBenchDataError(ValueError):
    """A HarmBench source could not be read; the message says where and what to do."""


def direct_request(behavior: str, context: str = "") -> str:
    """The test case HarmBench's direct-request baseline sends for a behaviour: the behaviour
    itself, or, when it has a context string, ``f"{context}\\n\\n---\\n\\n{behavior}"``
    (``baselines/direct_request/direct_request.py``, ``DirectRequest.generate_test_cases``; the
    GCG baselines put the context in front of the behaviour the same way)."""
    return f"{context}\n\n---\n\n{behavior}" if context else behavior


@dataclass(frozen=True)
class Behavior:
    """One HarmBench behaviour (a row of the behaviours CSV)."""

    behavior_id: str
    behavior: str
    functional_category: str
    semantic_category: str
    context: str = ""
    tags: str = ""
    #: where it was read (``file:line``), for errors about it
    where: str = field(default="", compare=False)

    @property
    def category(self) -> str:
        """The semantic category: the category of the per-category scores."""
        return self.semantic_category

    @property
    def prompt(self) -> str:
        """What the model is sent as the user message (:func:`direct_request`)."""
        return direct_request(self.behavior, self.context)


def read_behaviors(text: str, where: str, max_bytes: int = DEFAULT_MAX_PROMPT_BYTES) -> list[Behavior]:
    """Parse a behaviours CSV (``text``, named ``where`` in errors). Raises
    :class:`HarmBenchDataError` naming the line and column of a missing column, a row with more or
    fewer fields than the header, an unknown category, an empty behaviour, a contextual behaviour
    without context, a repeated BehaviorID or a test case (context and behaviour) over
    ``max_bytes``. Multimodal files (an ``ImageFileName`` column) are refused: their behaviours need the image."""
    try:
        header, records = read_csv_records(where, text=text, field_limit=max_bytes, limit_key=LIMIT_KEY)
    except InputFileError as e:
        raise HarmBenchDataError(str(e)) from None
    if not header:
        raise HarmBenchDataError(f"{where}: empty file; expected a CSV with header {','.join(COLUMNS)}")
    if "ImageFileName" in header:
        raise HarmBenchDataError(f"{where}: a multimodal HarmBench file (column ImageFileName); its behaviours need "
                                 "their images. Use a text file such as harmbench_behaviors_text_all.csv")
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise HarmBenchDataError(f"{where}:1: missing column(s) {', '.join(missing)}; HarmBench's layout is "
                                 f"{','.join(COLUMNS)} (found: {','.join(map(str, header))})")
    out: list[Behavior] = []
    first_line: dict[str, str] = {}
    for at, row in records:
        values = {c: (row.get(c) or "").strip() for c in COLUMNS}
        if not any(values.values()):
            continue  # a row of empty fields
        func, sem, bid = values["FunctionalCategory"], values["SemanticCategory"], values["BehaviorID"]
        if func not in FUNCTIONAL_CATEGORIES:
            raise HarmBenchDataError(f"{at}, column FunctionalCategory: {func!r} is not one of "
                                     f"{', '.join(FUNCTIONAL_CATEGORIES)}")
        if sem not in SEMANTIC_CATEGORIES:
            raise HarmBenchDataError(f"{at}, column SemanticCategory: {sem!r} is not one of "
                                     f"{', '.join(SEMANTIC_CATEGORIES)}")
        if not values["Behavior"]:
            raise HarmBenchDataError(f"{at}, column Behavior: empty")
        if not bid:
            raise HarmBenchDataError(f"{at}, column BehaviorID: empty; every behaviour needs a unique id")
        if bid in first_line:
            raise HarmBenchDataError(f"{at}, column BehaviorID: {bid!r} is already used at {first_line[bid]}; "
                                     "ids must be unique")
        if func == "contextual" and not values["ContextString"]:
            raise HarmBenchDataError(f"{at}, column ContextString: empty, but behaviour {bid!r} is contextual")
        first_line[bid] = at
        # Behaviour and context text exactly as published (HarmBench sends them unstripped).
        context = row.get("ContextString") or "" if values["ContextString"] else ""
        behavior = Behavior(bid, row["Behavior"], func, sem, context, values["Tags"], at)
        too_long = prompt_size_error(behavior.prompt, at, max_bytes, LIMIT_KEY)
        if too_long:
            raise HarmBenchDataError(too_long)
        out.append(behavior)
    return out


#: The setting that limits a test case's size (named in errors).
LIMIT_KEY = "harmbench.max_prompt_bytes"


def builtin_behaviors() -> list[Behavior]:
    """The project's own sample (all seven semantic categories, standard, contextual and copyright)."""
    text = resources.files(__package__).joinpath("data", "behaviors.csv").read_text(encoding="utf-8")
    return read_behaviors(text, f"{__package__}/data/behaviors.csv")


def load_behaviors(cfg: HarmBenchConfig, *, seed: int = 0) -> list[Behavior]:
    """The behaviours ``cfg`` names (module docstring): read, filtered by
    ``functional_categories``, then sampled by ``limit_per_category``, file order kept.
    Raises :class:`HarmBenchDataError` for an unusable source or when nothing is left."""
    source = cfg.source
    if source == "builtin":
        behaviors, where = builtin_behaviors(), "the built-in sample"
    else:
        path = Path(source).expanduser()
        if path.is_dir():
            path = path / cfg.file
            if not path.is_file():
                raise HarmBenchDataError(f"harmbench.source {source}: directory has no {cfg.file}; set harmbench.file "
                                         "to the behaviours CSV in it")
        if path.is_file():
            where = str(path)
            behaviors = read_behaviors(_read_text(path), where, cfg.max_prompt_bytes)
        elif path.exists():
            raise HarmBenchDataError(f"harmbench.source {source}: not a file or directory")
        elif is_hub_id(source) and not source.startswith((".", "~")):
            where = f"{source}/{cfg.file}"
            behaviors = read_behaviors(_read_text(_download(source, cfg.file, cfg.revision)), where,
                                       cfg.max_prompt_bytes)
        else:
            raise HarmBenchDataError(f"harmbench.source {source!r} is neither 'builtin', an existing CSV file or "
                                     "directory, nor a Hugging Face dataset id (owner/name)")
    if not behaviors:
        raise HarmBenchDataError(f"harmbench.source {source}: no behaviours in {where}")
    kept = [b for b in behaviors if b.functional_category in cfg.functional_categories]
    if not kept:
        found = sorted({b.functional_category for b in behaviors})
        raise HarmBenchDataError(f"harmbench.source {source}: no behaviours of functional categories "
                                 f"{cfg.functional_categories} (the file has {found}); "
                                 "set harmbench.functional_categories")
    from ..safety.sources import limit_per_category  # one seeded per-category sampler for every benchmark

    return limit_per_category(kept, cfg.limit_per_category, seed=seed)  # type: ignore[arg-type]


def _read_text(path: Path) -> str:
    try:
        return read_text(path, "HarmBench behaviours CSV")
    except InputFileError as e:
        raise HarmBenchDataError(str(e)) from None


def _download(repo: str, filename: str, revision: str | None) -> Path:
    """``filename`` of Hub dataset ``repo`` through huggingface_hub's cache."""
    return download_dataset_file(
        repo, filename, revision=revision, file_key="harmbench.file", revision_key="harmbench.revision",
        error=HarmBenchDataError,
        local_copy=("or point harmbench.source at a local copy of the CSV (HarmBench's "
                    "data/behavior_datasets/harmbench_behaviors_text_all.csv)"))