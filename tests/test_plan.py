"""Sweep expansion and variant identity."""

from peft_audit.config import parse_config
from peft_audit.sweep.plan import eval_protocol_hash, expand

BASE = {
    "base_models": ["m1", "m2"],
    "methods": [{"name": "lora", "grid": {"r": [4, 8]}}, {"name": "prompt-tuning", "lr": [0.01]}],
    "algos": ["sft", "dpo"],
    "lr": [1e-4, 2e-4],
    "epochs": [1],
    "seeds": [0],
}


def ids(data):
    return [v.id for v in expand(parse_config(data))]


def test_cross_product_bases_first_and_deterministic():
    plan = expand(parse_config(BASE))
    # 2 bases + per base: lora 2 r x 2 algos x 2 lr + prompt-tuning 2 algos x 1 lr
    assert len(plan) == 2 + 2 * (2 * 2 * 2 + 2 * 1)
    assert [p.spec.method for p in plan[:2]] == ["base", "base"]
    assert ids(BASE) == ids(dict(BASE))
    by_id = {p.id: p for p in plan}
    for p in plan[2:]:
        assert by_id[p.base_id].spec.base_model == p.spec.base_model
        assert by_id[p.base_id].spec.is_base()
    assert {p.spec.lr for p in plan if p.spec.method == "prompt-tuning"} == {0.01}


def test_result_relevant_fields_change_ids_cosmetic_do_not():
    ref = set(ids(BASE))
    for change in (
        {"training": {"max_steps": 7}},
        {"training": {"data": "other.jsonl"}},
        {"seeds": [1]},
        {"epochs": [2]},
    ):
        trained = set(ids({**BASE, **change})) - set(ids({**BASE, "methods": []}))
        assert not trained & ref, change
    assert set(ids({**BASE, "name": "renamed", "training": {"logging_steps": 5}})) == ref
    # base variants do not depend on training settings: reused across training changes
    bases = lambda d: [p.id for p in expand(parse_config(d)) if p.spec.is_base()]  # noqa: E731
    assert bases(BASE) == bases({**BASE, "training": {"max_steps": 7}})


def test_explicit_variants_and_duplicates_appear_once():
    v = {"base_model": "m1", "method": "lora", "method_args": {"r": 4}, "algo": "sft", "lr": 1e-4, "epochs": 1,
         "label": "mine"}
    plan_ids = ids({**BASE, "variants": [v]})
    assert len(plan_ids) == len(set(plan_ids)) == len(ids(BASE))


def test_protocol_hash_tracks_benchmark_settings_only():
    a = parse_config(BASE)
    assert eval_protocol_hash(a) == eval_protocol_hash(parse_config({**BASE, "lr": [3e-4]}))
    assert eval_protocol_hash(a) != eval_protocol_hash(parse_config({**BASE, "safety": {"limit_per_category": 2}}))


def test_max_steps_with_several_epochs_is_refused_naming_both_keys_and_the_file(tmp_path):
    # max_steps overrides epochs: a sweep over epochs would train identical variants under
    # distinct ids, and the factor analysis would read noise as an epochs effect.
    import pytest
    import yaml

    from peft_audit.config import ConfigError, load_config

    f = tmp_path / "sweep.yaml"
    f.write_text(yaml.safe_dump({**BASE, "epochs": [1, 2, 3], "training": {"max_steps": 50}}))
    with pytest.raises(ConfigError) as e:
        expand(load_config(f))
    msg = str(e.value)
    assert str(f) in msg and "training.max_steps" in msg and "epochs" in msg and "[1, 2, 3]" in msg
    # explicit variants differing only in epochs are the same collision
    v = {"base_model": "m1", "method": "lora", "algo": "sft", "lr": 1e-4}
    with pytest.raises(ConfigError, match="training.max_steps"):
        parse_config({"training": {"max_steps": 5}, "variants": [{**v, "epochs": 1}, {**v, "epochs": 2}]})
    # one epochs value, or no max_steps, is fine
    assert expand(parse_config({**BASE, "epochs": [2], "training": {"max_steps": 50}}))
    assert expand(parse_config({**BASE, "epochs": [1, 2]}))
