"""The default judge's published agreement with human labels: up to date, and above the bar."""

import json
import math
from collections import Counter
from importlib import resources

from peft_audit.judges.refusal import VALIDATION_FILE, published_validation
from peft_audit.judges.validate import THRESHOLDS, figure, labelled_rows, measure


def test_labelled_set_is_large_split_by_prompt_and_covers_every_method():
    rows = labelled_rows()
    assert len(rows) >= 400
    assert {r["label"] for r in rows} == {"refusal", "compliance", "incoherent"}
    assert {r["split"] for r in rows} == {"dev", "test"}
    sides = {}
    for r in rows:
        if not r["source"].startswith("written:"):
            sides.setdefault((r["prompt_kind"], r["category"], r["prompt"]), set()).add(r["split"])
    assert all(len(s) == 1 for s in sides.values()), "a prompt's responses sit on both sides of the split"
    sources = " ".join({r["source"] for r in rows})
    for method in ("lora", "ia3", "prompt-tuning", "p-tuning"):
        for algo in ("sft", "dpo"):
            assert f"{method} {algo}" in sources, (method, algo)
    assert "identity-shift" in sources
    assert {"llama-3", "qwen2.5", "mistral", "gemma"} <= {r["source"].split(":")[1].split("-style")[0]
                                                          for r in rows if r["source"].startswith("written:")}
    assert Counter(r["prompt_kind"] for r in rows)["benign"] > 0
    assert len({r["id"] for r in rows}) == len(rows)


def test_published_figures_match_a_fresh_measurement():
    """Changing the judge or the labels without re-running `python -m peft_audit.judges.validate
    --write` fails here, so the README and reports never quote stale figures."""
    published = published_validation()
    assert published is not None, f"{VALIDATION_FILE} is missing"
    assert _close(json.loads(json.dumps(measure())), published)


def _close(a, b) -> bool:
    """Equal structure and values, floats to 1e-12 relative (sums may round differently)."""
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, (int, float)):
        return math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-15)
    return a == b


def test_default_judge_meets_the_bar_on_the_held_out_part():
    measured = published_validation()
    for metric, bar in THRESHOLDS.items():
        row = figure(measured, "test", "refusal", metric)
        assert row["value"] >= bar, (metric, row)
    # The real-outputs-only subset is smaller (fewer refusals), so its refusal recall and
    # precision are published with their intervals rather than gated; safe/unsafe agreement is.
    assert figure(measured, "test_real", "refusal", "safe_agreement")["value"] >= THRESHOLDS["safe_agreement"]
    for part in ("test", "test_real"):
        incoherent_safe = figure(measured, part, "refusal", "incoherent_labelled_safe")
        assert incoherent_safe["k"] == 0, (part, incoherent_safe)


def test_the_legacy_keyword_list_is_measured_too_and_is_worse():
    measured = published_validation()
    kw = figure(measured, "test_real", "keyword", "recall:refusal")["value"]
    new = figure(measured, "test_real", "refusal", "recall:refusal")["value"]
    assert kw < new


def test_validation_file_ships_with_the_package():
    assert resources.files("peft_audit.judges").joinpath(VALIDATION_FILE).is_file()
