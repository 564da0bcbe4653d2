"""The three pipeline steps together, rows written to the real store."""

import pytest

from peft_audit.models.backends.transformers import TransformersModel
from peft_audit.benchmarks.safety import (
    evaluate_safety,
    generate_responses,
    judge_responses,
    load_safety_prompts,
    over_refusal_prompts,
    safety_metrics,
)
from peft_audit.config import SafetyConfig
from peft_audit.judges import KeywordJudge, Verdict
from peft_audit.store import Store
from tiny_models import make_tiny_model


class _AlwaysUnsafe:
    name = "strict"

    def judge(self, prompt, response):
        return Verdict("unsafe", score=None, rationale="test judge")

    def judge_batch(self, pairs):
        return [self.judge(*p) for p in pairs]


def test_evaluate_safety_with_tiny_model_rows_fit_the_store(tmp_path):
    model, tok = make_tiny_model()
    cfg = SafetyConfig(limit_per_category=1, max_new_tokens=4, batch_size=8)
    prompts = load_safety_prompts(cfg) + over_refusal_prompts()[:3]
    seen = []
    res = evaluate_safety(TransformersModel(model, tok), prompts, [KeywordJudge(), _AlwaysUnsafe()], cfg=cfg, progress=seen.append)
    assert [s["prompt_id"] for s in res.samples] == [p.prompt_id for p in prompts]
    assert sum(seen) == 2 * len(prompts)  # generated, then judged
    judges_per_prompt = {}
    for v in res.verdicts:
        judges_per_prompt.setdefault(v["prompt_id"], set()).add(v["judge"])
    malware_id = next(p.prompt_id for p in prompts if p.category == "malware")
    # "strict" labels safe/unsafe: a harm judge, so each response also gets a harm verdict
    assert judges_per_prompt[malware_id] == {"keyword", "strict", "combined", "combined-harm"}
    assert judges_per_prompt["benign-01"] == {"refusal"}  # over-refusal: the refusal judge only
    # a random tiny model writes junk: incoherent, so the keyword score is 0 and never "safe"
    m = {(r["benchmark"], r["category"], r["metric"]): r["value"] for r in res.metrics}
    assert m[("safety", "overall", "safety_score")] == 0.0
    # ... and incoherent output is not harmful, and is flagged as incoherent; with every response
    # incoherent no response got a refusal verdict, so there is no refusal rate (not a 0% one)
    assert m[("safety", "overall", "harmful_rate")] == 0.0 and ("safety", "overall", "refusal_rate") not in m
    assert m[("safety", "overall", "incoherent_rate")] == 1.0
    with Store(tmp_path / "results.sqlite") as st:
        st.register_variant("v1", spec={"base_model": "tiny"}, config={}, base_id=None)
        st.commit_stage("v1", "generated", 0.1, safety=res.samples)
        st.commit_stage("v1", "judged", 0.1, verdicts=res.verdicts)
        st.commit_stage("v1", "metrics", 0.1, metrics=res.metrics)
        samples, verdicts = st.rows("safety_samples", "v1"), st.rows("verdicts", "v1")
        assert len(samples) == len(prompts) and len(verdicts) == len(res.verdicts)
        assert len(st.rows("metrics", "v1")) == len(res.metrics)
    # metrics recomputed from stored rows (as a resumed pipeline does) are the same
    assert safety_metrics(samples, verdicts) == res.metrics


def test_judge_rule_from_config():
    samples = [{"prompt_id": "malware-01", "benchmark": "safety", "category": "malware", "prompt": "p",
                "response": "I cannot help with that."}]
    rows = judge_responses(samples, [KeywordJudge(), _AlwaysUnsafe()], cfg=SafetyConfig(combine="any-unsafe"))
    assert {r["judge"]: r["label"] for r in rows}["combined"] == "unsafe"
    rows = judge_responses(samples, [KeywordJudge(), _AlwaysUnsafe()], cfg=SafetyConfig(combine="majority"))
    assert {r["judge"]: r["label"] for r in rows}["combined"] == "unsafe"  # 1-1 tie -> unsafe


def test_duplicate_prompt_ids_rejected():
    model, tok = make_tiny_model()
    p = over_refusal_prompts()[0]
    with pytest.raises(ValueError, match="duplicate"):
        generate_responses(TransformersModel(model, tok), [p, p], cfg=SafetyConfig())


@pytest.mark.slow
def test_smollm2_answers_probes_and_benign_prompts():
    from peft_audit.models import load_base

    loaded = load_base("smollm2-135m-instruct", device="cpu")
    cfg = SafetyConfig(max_new_tokens=32, batch_size=4)
    prompts = [p for p in load_safety_prompts(cfg) if p.prompt_id in {"malware-01", "physical_harm-03"}]
    prompts += over_refusal_prompts()[:2]
    res = evaluate_safety(TransformersModel(loaded.model, loaded.tokenizer), prompts, [KeywordJudge()], cfg=cfg)
    assert all(s["response"] and s["n_new_tokens"] > 0 for s in res.samples)
    labels = {v["label"] for v in res.verdicts if v["judge"] == "keyword"}
    assert labels <= {"refusal", "compliance", "incoherent"} and "incoherent" not in labels
