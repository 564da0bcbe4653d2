"""Judges as specs: validated per judge, the old flat fields folded in (said once), caching as
a wrapper any judge can use, each judge built once per process and shared."""

from __future__ import annotations

import warnings

import pytest

from peft_audit.config import ConfigError, parse_config
from peft_audit.judges import JUDGES, Verdict
from peft_audit.judges import specs as specs_mod
from peft_audit.judges.cache import CachedJudge, JudgmentCache, cache_key
from peft_audit.judges.specs import JUDGE_NAMES, GuardSpec, LLMSpec, RefusalSpec

LLM = {"name": "llm", "url": "http://127.0.0.1:9/v1", "model": "judge-7b", "api_key_env": "MY_KEY"}


def test_every_registered_judge_has_a_spec_and_back():
    assert set(JUDGES) == set(JUDGE_NAMES)


def test_names_and_specs_validate_per_judge():
    cfg = parse_config({"safety": {"judges": ["refusal", LLM]}})
    assert cfg.safety.judges == [RefusalSpec(name="refusal"), LLMSpec(**LLM)]
    with pytest.raises(ConfigError, match=r"safety\.judges\.0\.llm\.urll: unknown key"):
        parse_config({"safety": {"judges": [{**LLM, "urll": "x"}]}})
    with pytest.raises(ConfigError, match=r"unknown judge 'gpt'; valid: refusal, keyword, harm, llm, guard, harmbench-cls, wildguard"):
        parse_config({"safety": {"judges": ["refusal", "gpt"]}})
    with pytest.raises(ConfigError, match="lists a judge twice"):
        parse_config({"safety": {"judges": ["refusal", "refusal"]}})


def test_old_flat_fields_become_specs_with_one_deprecation_message(monkeypatch):
    monkeypatch.setattr(specs_mod, "_warned", False)
    old = {"judges": ["keyword", "llm", "guard"], "judge_url": LLM["url"], "judge_model": "judge-7b",
           "judge_api_key_env": "MY_KEY", "judge_concurrency": 8, "guard_model": "g/guard", "batch_size": 4}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        a = parse_config({"safety": old})
        b = parse_config({"safety": old})
    messages = [str(w.message) for w in caught if issubclass(w.category, FutureWarning)]
    assert len(messages) == 1 and "safety.judge_url -> llm.url" in messages[0]
    assert a == b
    assert a.safety.judges[1] == LLMSpec(**LLM, concurrency=8)
    assert a.safety.judges[2] == GuardSpec(name="guard", model="g/guard", batch_size=4)


@pytest.mark.parametrize("safety, fairness, old_hash", [
    # protocol hashes that the branch point (ecd40bd) computed for these configs
    ({"judges": ["keyword", "llm"], "judge_url": "http://x/v1", "judge_model": "m", "judge_concurrency": 8}, {},
     "03e0e1779013"),
    ({"judges": ["guard"], "guard_model": "meta-llama/Llama-Guard-3-1B", "batch_size": 4}, {}, "90881e1028dc"),
    ({"judges": ["refusal"], "judge_url": "http://unused/v1"}, {}, "26979d69b6c8"),
    ({"judges": ["refusal", "keyword"], "combine": "any-unsafe"}, {"per_cell": 3}, "5080181cdbe0"),
])
def test_run_directories_written_with_flat_judge_fields_are_recognised(safety, fairness, old_hash):
    from peft_audit.sweep.plan import legacy_protocol_hash

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        assert legacy_protocol_hash(parse_config({"safety": safety, "fairness": fairness})) == old_hash


def test_llm_settings_that_do_not_change_verdicts_are_outside_the_protocol():
    from peft_audit.sweep.plan import eval_protocol_hash

    def h(**llm):
        return eval_protocol_hash(parse_config({"safety": {"judges": [{**LLM, **llm}]}}))

    assert h(concurrency=16, timeout_s=5, max_retries=0, backoff_s=0.1) == h()
    assert h(model="judge-70b") != h()


class CountingJudge:
    """Labels every response 'refusal' except 'fail', which it cannot judge."""

    name = "llm"
    cache_parts = ("judge-7b", "rubric-v9")

    def __init__(self):
        self.asked = 0

    def judge(self, prompt, response):
        return self.judge_batch([(prompt, response)])[0]

    def judge_batch(self, pairs):
        self.asked += len(pairs)
        return [Verdict("unscored") if r == "fail" else Verdict("refusal") for _, r in pairs]


def test_caching_wraps_any_judge_and_keeps_the_old_keys(tmp_path):
    inner = CountingJudge()
    cached = CachedJudge(inner, JudgmentCache(tmp_path / "c.sqlite"))
    pairs = [("p1", "no"), ("p2", "fail")]
    assert [v.label for v in cached.judge_batch(pairs)] == ["refusal", "unscored"]
    assert [v.label for v in cached.judge_batch(pairs)] == ["refusal", "unscored"]
    assert inner.asked == 3  # the refusal was served from the cache; the unscored one asked again
    assert cached.cache_parts == inner.cache_parts and cached.name == "llm"
    # the key of earlier releases' llm cache: (judge, model, rubric version, prompt, response)
    assert JudgmentCache(tmp_path / "c.sqlite").get(cache_key("llm", "judge-7b", "rubric-v9", "p1", "no")) is not None


def test_each_judge_is_built_once_per_worker_and_shared(tmp_path, monkeypatch):
    import peft_audit.judges.registry as registry
    from peft_audit.sweep.resources import WorkerResources

    built = []
    monkeypatch.setitem(registry.JUDGES, "llm", lambda spec: built.append(spec) or CountingJudge())
    a = parse_config({"safety": {"judges": ["refusal", LLM]}}).safety
    b = parse_config({"safety": {"judges": [LLM], "max_new_tokens": 9}}).safety  # another section, same llm
    resources = WorkerResources()
    ja, jb = resources.judges(a, tmp_path), resources.judges(b, tmp_path)
    assert len(built) == 1 and ja[1] is jb[0]
    assert isinstance(ja[1], CachedJudge)


def test_the_safety_default_judges_live_in_one_place(monkeypatch):
    # adding the harm judge to the default is a change of safety.config.DEFAULT_JUDGES alone
    import peft_audit.benchmarks.safety.config as safety_config

    assert ([j.name for j in safety_config.SafetyConfig().judges] == list(safety_config.DEFAULT_JUDGES)
            == ["refusal", "harm"])
    monkeypatch.setattr(safety_config, "DEFAULT_JUDGES", ("refusal", "keyword"))
    assert [j.name for j in safety_config.SafetyConfig().judges] == ["refusal", "keyword"]
    assert [j.name for j in safety_config.SafetyConfig.model_validate({}).judges] == ["refusal", "keyword"]
    assert [j.name for j in safety_config.SafetyConfig(judges=["keyword"]).judges] == ["keyword"]  # a listed one wins
