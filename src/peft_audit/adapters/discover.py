"""Find published adapters of a base model on the Hub: :func:`discover`.

Lists models tagged ``base_model:adapter:<base>`` and ``peft`` -- the tags the Hub derives from an
adapter card's ``base_model`` and ``library_name: peft`` (https://huggingface.co/docs/hub/model-cards#specifying-a-base-model)
-- most downloaded first, then fetches only each repo's small metadata files
(``adapter_config.json``, ``README.md``, ``trainer_state.json``) at the listed commit and extracts
:class:`~peft_audit.adapters.metadata.AdapterMetadata`. Every entry pins that commit, so a later
``audit`` evaluates exactly what was inspected.

A repo that cannot be read (gated, private, missing config, unknown adapter type, network) is
recorded as skipped with its reason; discovery goes on. Rate limits are retried with backoff
(:func:`peft_audit.adapters.hub.hub_call`).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field

from .audit_file import AuditEntry, AuditFile, SkippedEntry
from .errors import AdapterError
from .hub import METADATA_FILES, commit_of, hub_call, hub_endpoint, snapshot
from .metadata import extract_metadata


@dataclass
class DiscoverResult:
    audit_file: AuditFile
    filtered_out: list[str] = field(default_factory=list)  # repos whose method was not requested


def list_adapter_repos(base: str, limit: int | None) -> list:
    """``ModelInfo`` of adapter repos for ``base`` (at most ``limit``), most downloaded first."""
    from huggingface_hub import HfApi

    api = HfApi(endpoint=hub_endpoint())
    return hub_call(f"listing adapters of {base}", lambda: list(itertools.islice(
        api.list_models(filter=[f"base_model:adapter:{base}", "peft"], sort="downloads",
                        expand=["sha", "gated", "private", "tags"], limit=limit),
        limit,
    )))


def discover(base: str, *, limit: int | None = 50, methods: list[str] | None = None,
             progress: Callable[[int], None] | None = None) -> DiscoverResult:
    """Examine at most ``limit`` adapter repos of ``base`` (see module docstring).

    ``methods``: keep only these peft-audit method names (``lora``, ``ia3``, ...); others are
    reported in ``filtered_out``. ``progress`` is called with 1 after each repo.
    """
    infos = list_adapter_repos(base, limit)
    entries: list[AuditEntry] = []
    skipped: list[SkippedEntry] = []
    filtered: list[str] = []
    for info in infos:
        repo = info.id
        try:
            d = snapshot(repo, info.sha, METADATA_FILES)
            meta = extract_metadata(d)
            sha = commit_of(d) or info.sha
            if meta.method is None:
                skipped.append(SkippedEntry(id=repo, revision=sha, status="skipped",
                                            reason=f"adapter type {meta.value('peft_type')!r} cannot be evaluated"))
            elif methods and meta.method not in methods:
                filtered.append(f"{repo} ({meta.method})")
            else:
                entries.append(AuditEntry(ref=f"{repo}@{sha}" if sha else repo, id=repo, revision=sha,
                                          method=meta.method, metadata=meta.to_dict()))
        except AdapterError as e:
            skipped.append(SkippedEntry(id=repo, revision=info.sha, status=e.status, reason=str(e)))
        if progress:
            progress(1)
    af = AuditFile(base=base, endpoint=hub_endpoint(), adapters=entries, skipped=skipped)
    return DiscoverResult(af, filtered)
