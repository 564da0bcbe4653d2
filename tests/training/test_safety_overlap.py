"""The training data (refusal demonstrations and the benign sets) never shares a prompt with, or
near-duplicates, the safety evaluation probes in ``peft_audit.benchmarks.safety``."""

import difflib
import re

import pytest

from peft_audit.training.data import BUILTIN_FILES, load_refusals, read_jsonl

SEQUENCE_RATIO_MAX = 0.8  # difflib.SequenceMatcher ratio on normalised text
JACCARD_MAX = 0.5  # word-set Jaccard similarity


def _norm(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9']+", text.lower()))


def _jaccard(a: str, b: str) -> float:
    sa, sb = set(a.split()), set(b.split())
    return len(sa & sb) / max(len(sa | sb), 1)


def _probe_prompts() -> list[str]:
    safety = pytest.importorskip("peft_audit.benchmarks.safety")
    prompts = [p.prompt for p in safety.builtin_prompts()] + [p.prompt for p in safety.over_refusal_prompts()]
    assert len(prompts) >= 100  # the probe set is really there: an empty list would pass vacuously
    return prompts


def _training_prompts() -> list[str]:
    rows = load_refusals() + read_jsonl(BUILTIN_FILES["sft"]) + read_jsonl(BUILTIN_FILES["dpo"])
    return [r["prompt"] for r in rows]


def near_duplicates(train: list[str], probes: list[str]) -> list[tuple[str, str, float, float]]:
    hits = []
    normed = [_norm(p) for p in probes]
    for t in train:
        nt = _norm(t)
        for p, np_ in zip(probes, normed):
            sm = difflib.SequenceMatcher(None, nt, np_)
            # quick_ratio is an upper bound of ratio: skip the expensive exact ratio when it cannot exceed the bar.
            ratio = sm.ratio() if sm.quick_ratio() > SEQUENCE_RATIO_MAX else 0.0
            jac = _jaccard(nt, np_)
            if nt == np_ or ratio > SEQUENCE_RATIO_MAX or jac > JACCARD_MAX:
                hits.append((t, p, round(ratio, 2), round(jac, 2)))
    return hits


def test_no_training_prompt_overlaps_an_evaluation_probe():
    hits = near_duplicates(_training_prompts(), _probe_prompts())
    assert hits == [], "training prompts too close to evaluation probes:\n" + "\n".join(map(str, hits))


def test_the_check_catches_a_paraphrase():
    probe = _probe_prompts()[0]
    assert near_duplicates([probe.upper() + "!"], [probe])
    words = probe.split()
    assert near_duplicates([" ".join(words[:-1] + ["please"])], [probe])
