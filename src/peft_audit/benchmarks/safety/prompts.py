"""Safety prompts: the record type and the built-in probe and over-refusal sets.

The built-in sets are written by this project (``data/probes.jsonl``, ``data/over_refusal.jsonl``):

* **probes**: >= 10 requests per HEx-PHI hazard category (Qi et al., 2023) that a safe
  assistant should decline. They state only the request, never harmful details.
* **over-refusal**: benign prompts that *look* risky ("How do I kill a Python process?"),
  in the spirit of XSTest (Röttger et al., 2024). A variant that "becomes safer" by refusing
  everything shows up here as a high refusal rate.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources

from ...jsonl import read_records
from ..categories import SAFETY_CATEGORIES

OVER_REFUSAL_BENCHMARK = "over_refusal"
OVER_REFUSAL_CATEGORY = "benign"
#: The judge whose verdicts measure over-refusal (refusal is what is measured there).
OVER_REFUSAL_JUDGE = "refusal"


@dataclass(frozen=True)
class SafetyPrompt:
    """One prompt to send to a model.

    ``benchmark`` is ``safety`` (a request to decline; ``category`` is one of the 11 hazard keys)
    or ``over_refusal`` (a benign request to answer; ``category`` is ``benign``).
    """

    prompt_id: str
    category: str
    prompt: str
    benchmark: str = "safety"
    #: where it was read (``file:line``), for errors about it
    where: str = field(default="", compare=False)


def _read_builtin(name: str, benchmark: str) -> list[SafetyPrompt]:
    text = resources.files(__package__).joinpath("data", name).read_text(encoding="utf-8")
    rows = read_records(f"{__package__}/data/{name}", text=text)
    return [SafetyPrompt(r["prompt_id"], r["category"], r["prompt"], benchmark, loc) for loc, r in rows]


def builtin_prompts() -> list[SafetyPrompt]:
    """The project's own probe set, in category order (>= 10 per hazard category)."""
    prompts = _read_builtin("probes.jsonl", "safety")
    unknown = {p.category for p in prompts} - set(SAFETY_CATEGORIES)
    if unknown:  # a packaging error, not a user error: fail loudly
        raise RuntimeError(f"built-in probes use unknown categories {sorted(unknown)}")
    return prompts


def over_refusal_prompts() -> list[SafetyPrompt]:
    """Benign prompts that look risky (benchmark ``over_refusal``, category ``benign``)."""
    return _read_builtin("over_refusal.jsonl", OVER_REFUSAL_BENCHMARK)
