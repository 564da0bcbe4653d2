"""The ``xstest:`` section: off by default, rule-based judges only (refusal required), and only
result-changing settings in the run's protocol hash."""

import pytest

from peft_audit.config import ConfigError, parse_config
from peft_audit.judges.specs import KeywordSpec, RefusalSpec
from peft_audit.sweep.plan import eval_protocol_hash


def test_off_by_default_so_existing_runs_keep_their_protocol():
    cfg = parse_config({})
    assert cfg.xstest.enabled is False
    assert eval_protocol_hash(cfg) == eval_protocol_hash(parse_config({"xstest": {"max_new_tokens": 7}}))


def test_protocol_hash_covers_results_not_batch_size():
    on = parse_config({"xstest": {"enabled": True}})
    assert eval_protocol_hash(on) != eval_protocol_hash(parse_config({}))
    assert eval_protocol_hash(on) == eval_protocol_hash(parse_config({"xstest": {"enabled": True, "batch_size": 32}}))
    assert eval_protocol_hash(on) != eval_protocol_hash(parse_config({"xstest": {"enabled": True, "max_new_tokens": 64}}))


def test_judges_as_names():
    assert parse_config({"xstest": {"judges": ["keyword", "refusal"]}}).xstest.judges == [
        KeywordSpec(name="keyword"), RefusalSpec(name="refusal")]


@pytest.mark.parametrize("judges, message", [
    (["refusal", {"name": "llm", "url": "http://x/v1", "model": "m"}], r"\['llm'\] are not used by xstest"),
    (["llm"], r"\['llm'\] are not used by xstest"),  # said before the llm spec's missing url
    (["keyword"], "must include 'refusal'"),
    (["refusal", "refusal"], "lists a judge twice"),
])
def test_judges_that_cannot_give_the_three_classes_are_refused(judges, message):
    with pytest.raises(ConfigError, match=message):
        parse_config({"xstest": {"judges": judges}})
