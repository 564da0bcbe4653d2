"""One file of a Hugging Face Hub dataset, for any benchmark's ``source: org/name``.

:func:`download_dataset_file` is ``huggingface_hub.hf_hub_download(repo_type="dataset")`` with
``HF_ENDPOINT`` and ``HF_TOKEN`` read at call time (not at import), and every failure turned
into one message that says what went wrong and what to do, raised as the caller's own error
class: gated or private (accept the terms, set ``HF_TOKEN``), no such repository, revision or
file (which setting to fix), an HTTP error (retry later), offline or no network (use a local
copy).
"""

from __future__ import annotations

import os
from pathlib import Path


def http_status(e: BaseException | None) -> int | None:
    """HTTP status of ``e`` or of the first exception in its cause/context chain that has one
    (huggingface_hub wraps some HTTP errors, e.g. a 403 on HEAD, in LocalEntryNotFoundError)."""
    for _ in range(10):
        if e is None:
            return None
        status = getattr(getattr(e, "response", None), "status_code", None)
        if status is not None:
            return status
        e = e.__cause__ or e.__context__
    return None


def download_dataset_file(repo: str, filename: str, *, revision: str | None = None, file_key: str,
                          revision_key: str, local_copy: str, error: type[Exception] = ValueError) -> Path:
    """The local path of ``filename`` in Hub dataset ``repo`` (through huggingface_hub's cache).

    ``file_key`` / ``revision_key`` name the settings that choose the file and the revision
    (e.g. ``xstest.filename``); ``local_copy`` ends each message about access or network with
    the alternative (e.g. "or point xstest.source at a local copy of xstest_prompts.csv").
    Raises ``error`` with the message.
    """
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (GatedRepoError, HfHubHTTPError, LocalEntryNotFoundError, OfflineModeIsEnabled,
                                        RemoteEntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError)

    token = os.environ.get("HF_TOKEN") or None
    where = f"Hub dataset {repo}"

    def no_access(why: str) -> Exception:
        return error(f"{where}: no access ({why}): accept its terms on the Hub and set HF_TOKEN to a token of an "
                     f"account with access, {local_copy}")

    try:
        return Path(hf_hub_download(repo, filename, repo_type="dataset", revision=revision,
                                    endpoint=os.environ.get("HF_ENDPOINT") or None, token=token))
    except GatedRepoError:
        raise no_access("gated, " + ("no access for this token" if token else "no HF_TOKEN set")) from None
    except RevisionNotFoundError:
        raise error(f"{where} has no revision {revision!r}; fix {revision_key}") from None
    except RemoteEntryNotFoundError:
        raise error(f"{where} has no file {filename!r}; set {file_key} to the file's path in that repository") from None
    except RepositoryNotFoundError:
        raise error(f"{where} not found, or private and HF_TOKEN has no access; check the name, {local_copy}") from None
    except (OfflineModeIsEnabled, LocalEntryNotFoundError, HfHubHTTPError) as e:
        status = http_status(e)
        if status in (401, 403):
            raise no_access(f"HTTP {status}") from None
        if status is not None:
            raise error(f"{where}: the Hub answered HTTP {status} for {filename!r}; retry later, {local_copy}") from None
        raise error(f"cannot reach the Hugging Face Hub for {repo} ({e.__class__.__name__}: HF_HUB_OFFLINE is set or "
                    f"there is no network); {local_copy}") from None
    except OSError as e:  # connection errors
        raise error(f"cannot reach the Hugging Face Hub for {repo} ({e}); {local_copy}") from None
