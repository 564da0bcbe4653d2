"""Where an adapter comes from: a local directory or a Hub repo: :func:`resolve_adapter`.

A reference is a directory holding ``adapter_config.json``, or a Hugging Face Hub id
``org/name`` with an optional ``@revision`` (branch, tag or commit). Hub repos are fetched with
``huggingface_hub.snapshot_download`` restricted to the adapter's own files (config, safetensors
weights, card, trainer state, other ``*.json``); pickled ``.bin`` weights are never fetched: a repo
without safetensors is skipped (:class:`~peft_audit.adapters.errors.UnsafeAdapter`).

``HF_TOKEN`` and ``HF_ENDPOINT`` are read from the environment at call time (so a test or a
mirror can set them after import); the token is never logged. HTTP 429 (rate limited) is
retried with exponential backoff, honouring ``Retry-After``. Errors are mapped to
:mod:`peft_audit.adapters.errors`: gated/forbidden -> :class:`AdapterGated` (skipped), missing
repo/revision -> :class:`AdapterNotFound`, connection problems -> :class:`AdapterNetworkError`.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from ..hub_ids import is_hub_id
from ..models.resolve import split_revision
from .errors import AdapterGated, AdapterNetworkError, AdapterNotFound, UnsafeAdapter
from .metadata import CONFIG, PICKLE_WEIGHTS, SAFETENSORS

ADAPTER_FILES = [CONFIG, SAFETENSORS, "README.md", "trainer_state.json", "*.json"]
METADATA_FILES = [CONFIG, "README.md", "trainer_state.json"]

_COMMIT = re.compile(r"^[0-9a-f]{40}$")

#: Rate-limit retries: waits base, 2*base, 4*base, ... seconds (or the server's Retry-After).
RETRIES = 4
BACKOFF_BASE_S = 2.0
_sleep: Callable[[float], None] = time.sleep  # replaced in tests

T = TypeVar("T")


def is_hub_ref(ref: str) -> bool:
    """True for ``org/name[@rev]`` that is not an existing local path."""
    if ref.startswith((".", "/", "~", "\\")) or Path(ref).expanduser().exists():
        return False
    return is_hub_id(split_revision(ref)[0])


def hub_endpoint() -> str | None:
    """``HF_ENDPOINT`` as set now (huggingface_hub reads it only once, at import)."""
    return (os.environ.get("HF_ENDPOINT") or "").rstrip("/") or None


def _status(e: BaseException | None) -> int | None:
    while e is not None:
        resp = getattr(e, "response", None)
        code = getattr(resp, "status_code", None)
        if isinstance(code, int):
            return code
        e = e.__cause__
    return None


def _retry_after(e: BaseException) -> float | None:
    while e is not None:
        resp = getattr(e, "response", None)
        if resp is not None:
            try:
                return max(0.0, float(resp.headers.get("Retry-After")))
            except (TypeError, ValueError):
                return None
        e = e.__cause__
    return None


def hub_call(what: str, fn: Callable[[], T]) -> T:
    """Run a huggingface_hub call; retry on 429; map its errors to :class:`AdapterError`s.

    ``what`` names the repo (and revision) in messages.
    """
    import httpx2
    from huggingface_hub.errors import (
        GatedRepoError, HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError,
    )

    from huggingface_hub.errors import HFValidationError

    for attempt in range(RETRIES + 1):
        try:
            return fn()
        except HFValidationError as e:
            raise AdapterNotFound(f"{what}: not a valid Hub repo id ({str(e).splitlines()[0]})") from None
        except GatedRepoError:
            raise AdapterGated(f"{what}: gated repo; accept its conditions on the Hub and set HF_TOKEN") from None
        except RevisionNotFoundError:
            raise AdapterNotFound(f"{what}: revision not found on the Hub (check the part after '@')") from None
        except RepositoryNotFoundError as e:
            if _status(e) == 401:
                raise AdapterGated(
                    f"{what}: not accessible without authentication (private, gated or missing); set HF_TOKEN "
                    "to a token that can read it"
                ) from None
            raise AdapterNotFound(f"{what}: repository not found on the Hub (check the id)") from None
        except (HfHubHTTPError, LocalEntryNotFoundError, httpx2.HTTPError, OSError) as e:
            code = _status(e)
            if code == 429 and attempt < RETRIES:
                _sleep(_retry_after(e) or BACKOFF_BASE_S * 2 ** attempt)
                continue
            if code in (401, 403):
                raise AdapterGated(f"{what}: access denied (HTTP {code}); set HF_TOKEN to a token that can read it") from None
            if code == 404:
                raise AdapterNotFound(f"{what}: not found on the Hub (HTTP 404)") from None
            if code == 429:
                raise AdapterNetworkError(f"{what}: still rate limited (HTTP 429) after {RETRIES} retries; try later") from None
            if isinstance(e, (HfHubHTTPError, LocalEntryNotFoundError, httpx2.HTTPError)):
                why = f"HTTP {code}" if code else e.__class__.__name__
                raise AdapterNetworkError(
                    f"{what}: could not reach the Hub at {hub_endpoint() or 'huggingface.co'} ({why}); "
                    "check the connection or HF_ENDPOINT"
                ) from None
            raise
    raise AssertionError("unreachable")  # pragma: no cover


def snapshot(repo: str, revision: str | None, patterns: list[str]) -> Path:
    """``snapshot_download`` of ``patterns`` from ``repo`` at ``revision`` into the HF cache."""
    from huggingface_hub import snapshot_download

    what = f"{repo}@{revision}" if revision else repo
    local = hub_call(what, lambda: snapshot_download(
        repo, revision=revision, allow_patterns=patterns, endpoint=hub_endpoint(),
    ))
    return Path(local)


def commit_of(snapshot_dir: Path) -> str | None:
    """The commit sha of a huggingface_hub cache snapshot folder (its name), else None."""
    return snapshot_dir.name if _COMMIT.match(snapshot_dir.name) else None


def resolve_adapter(ref: str) -> Path:
    """A local directory holding the adapter named by ``ref`` (see module docstring).

    Raises :class:`AdapterNotFound` (no such dir/repo, or no ``adapter_config.json``),
    :class:`AdapterGated`, :class:`AdapterNetworkError`.
    """
    p = Path(ref).expanduser()
    if p.is_dir():
        if not (p / CONFIG).is_file():
            raise AdapterNotFound(f"{p}: no {CONFIG}, so this is not a saved PEFT adapter")
        return p
    if not is_hub_ref(ref):
        raise AdapterNotFound(
            f"adapter {ref!r} is neither an existing directory nor a Hub id of the form org/name[@revision]"
        )
    repo, rev = split_revision(ref)
    d = snapshot(repo, rev, ADAPTER_FILES)
    if not (d / CONFIG).is_file():
        raise AdapterNotFound(f"{ref}: the repo has no {CONFIG} at its top level, so it is not a PEFT adapter")
    if not (d / SAFETENSORS).is_file():
        raise UnsafeAdapter(f"{ref}: the repo has no {SAFETENSORS}; peft-audit reads adapter weights only from "
                            f"safetensors (a pickled {PICKLE_WEIGHTS} is never fetched or loaded) -- ask for a "
                            "safetensors version")
    return d
