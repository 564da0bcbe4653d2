"""One rule for "is this a Hub repo id" (peft_audit.hub_ids), shared by benchmark sources and adapters."""

import pytest

from peft_audit.hub_ids import is_hub_id


@pytest.mark.parametrize(("text", "expected"), [
    ("HuggingFaceTB/SmolLM2-135M-Instruct", True),
    ("walledai/XSTest", True),
    ("org_1/name.v2", True),
    ("gpt2", False),            # a name without an owner: readers take that as a local path
    ("a/b/c", False),           # a path
    ("./org/name", False),
    ("/abs/path", False),
    ("~/x", False),
    ("org/-name", False),       # the Hub's rule: '-' and '.' neither start nor end a part
    ("org/na..me", False),      # nor '..' or '--' inside
    ("org/na--me", False),
    ("org/" + "x" * 97, False),  # at most 96 characters
    ("org/name@main", False),   # a revision is split off first (models.resolve.split_revision)
])
def test_is_hub_id(text, expected):
    assert is_hub_id(text) is expected
