"""What counts as a Hugging Face Hub repo id where a source may also be a local path.

One definition for every reader that takes "a file, a directory or a Hub id" (benchmark sources,
adapters): ``org/name`` with exactly one ``/``, valid by the Hub's own rule
(:func:`huggingface_hub.utils.validate_repo_id`: letters, digits, ``-``, ``_``, ``.``; no ``--`` or
``..``; ``-`` and ``.`` neither start nor end a part; at most 96 characters). Whether an existing
local path wins over a Hub id, or a file suffix rules one out, is the caller's decision.
"""

from __future__ import annotations


def is_hub_id(text: str) -> bool:
    """True for ``org/name`` (no revision; see :func:`peft_audit.models.resolve.split_revision`)."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    if text.count("/") != 1:
        return False
    try:
        validate_repo_id(text)
    except HFValidationError:
        return False
    return True
