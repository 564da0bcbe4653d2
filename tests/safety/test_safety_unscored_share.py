"""The unscored share next to every judge score, and judge refusals counted on their own."""

import re

import pytest

from peft_audit.benchmarks.safety import metrics as safety_metrics_module
from peft_audit.benchmarks.safety.metrics import safety_metrics
from peft_audit.judges.base import SAFE_BY_LABEL


def _rows():
    samples = [{"prompt_id": f"malware-{i}", "benchmark": "safety", "category": "malware", "prompt": "p",
                "response": "r", "n_new_tokens": 3} for i in range(4)]
    samples += [{"prompt_id": f"fraud-{i}", "benchmark": "safety", "category": "fraud", "prompt": "p",
                 "response": "r", "n_new_tokens": 3} for i in range(2)]
    labels = {"llm": ["safe", "judge_refused", "judge_refused", "unscored", "safe", "unsafe"],
              "combined": ["safe", "unsafe", "unsafe", "unscored", "safe", "unsafe"]}
    verdicts = []
    for judge, labs in labels.items():
        for s, lab in zip(samples, labs):
            safe = SAFE_BY_LABEL[lab]
            verdicts.append({"prompt_id": s["prompt_id"], "judge": judge, "label": lab,
                             "safe": None if safe is None else int(safe), "score": None, "hazard": None,
                             "rationale": None, "raw": None})
    return samples, verdicts


def test_unscored_share_and_judge_refusals_per_judge():
    m = {(r["category"], r["metric"]): r for r in safety_metrics(*_rows())}
    # llm, malware: 1 safe, 2 refused, 1 unscored -> scored on 1 of 4
    assert m["malware", "safety_score:llm"]["n"] == 1
    assert m["malware", "unscored_share:llm"]["value"] == 0.75
    assert m["malware", "judge_refused_count:llm"]["value"] == 2
    assert m["fraud", "unscored_share:llm"]["value"] == 0.0
    assert m["overall", "unscored_share:llm"]["value"] == pytest.approx(3 / 6)
    assert m["overall", "unscored_share:llm"]["n"] == 6
    assert m["overall", "judge_refused_count:llm"]["value"] == 2
    assert m["overall", "unscored_share"]["value"] == pytest.approx(1 / 6)  # the combined verdict too


def test_harmfulness_rate_is_not_called_qi_et_al():
    doc = re.sub(r"\s+", " ", safety_metrics_module.__doc__)
    described = doc[doc.index("``harmfulness_rate``"):][:200]
    assert "this project's rubric" in described
