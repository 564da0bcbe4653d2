"""Expansion, identity (what changes a variant id and what does not), validation, cost."""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from peft_audit.config import ConfigError, TrainingConfig, parse_config
from peft_audit.sweep.cost import estimate_cost, train_steps
from peft_audit.sweep.plan import expand

V = {"base_model": "m1", "method": "lora", "method_args": {"r": 4}, "algo": "sft", "lr": 1e-4, "epochs": 1, "seed": 0}
CFG = {"base_models": ["m1"], "methods": [{"name": "lora", "grid": {"r": [4, 8]}}, "ia3"], "algos": ["sft", "dpo"],
       "lr": [1e-4, 3e-4], "variants": [V]}


def vid(variant: dict, **top) -> str:
    plan = expand(parse_config({"base_models": ["m1"], "variants": [variant], **top}))
    return plan[-1].id


def test_same_config_same_ids_in_a_fixed_order():
    a, b = expand(parse_config(CFG)), expand(parse_config(dict(CFG)))
    assert [p.id for p in a] == [p.id for p in b]
    assert len(a) == 1 + 2 * 2 * 2 + 2 * 2  # base + lora(r x algo x lr) + ia3(algo x lr); V is a duplicate
    assert a[0].spec.is_base() and all(p.base_id == a[0].id for p in a[1:])


@pytest.mark.parametrize("change", [
    {"base_model": "m2"}, {"method": "ia3", "method_args": {}}, {"method_args": {"r": 8}}, {"algo": "dpo"},
    {"lr": 2e-4}, {"epochs": 2}, {"seed": 1}, {"adapter": "some/adapter"},
])
def test_every_result_relevant_variant_field_changes_the_id(change):
    assert vid({**V, **change}) != vid(V)


TRAINING_CHANGES = {
    "data": "other.jsonl", "data_split": "test", "columns": {"prompt": "q"}, "max_steps": 3, "batch_size": 2,
    "grad_accum": 2, "max_seq_len": 64, "max_examples": 5, "safety_mix": 0.1, "dpo_beta": 0.2,
    "gradient_checkpointing": True, "load_in": "4bit", "heldout_fraction": 0.2, "heldout_min_rows": 10,
}


def test_training_table_covers_every_result_relevant_field():
    assert set(TRAINING_CHANGES) == set(TrainingConfig.model_fields) - {"logging_steps"}


@pytest.mark.parametrize("key", sorted(TRAINING_CHANGES))
def test_every_training_field_changes_trained_ids(key):
    assert vid(V, training={key: TRAINING_CHANGES[key]}) != vid(V)


def test_cosmetic_fields_do_not_change_ids():
    ref = vid(V)
    assert vid({**V, "label": "pretty"}) == ref
    assert vid(V, training={"logging_steps": 10}) == ref
    assert vid(V, name="another-name") == ref
    # the base and given adapters do not depend on training settings (reused across them)
    given = {"base_model": "m1", "method": "lora", "adapter": "a/b"}
    assert vid(given) == vid(given, training={"max_steps": 9})
    assert expand(parse_config({"base_models": ["m1"], "training": {"max_steps": 9}}))[0].id == \
        expand(parse_config({"base_models": ["m1"]}))[0].id


@pytest.mark.parametrize("bad, message", [
    ({"variants": [{**V, "method_args": {"rank": 4}}]}, "unknown argument 'rank' for PEFT method lora"),
    ({"methods": [{"name": "ia3", "args": {"r": 4}}]}, "unknown argument 'r' for PEFT method ia3"),
    ({"variants": [{**V, "label": "x"}, {**V, "seed": 1, "label": "x"}]}, "label 'x' is already used"),
    ({"methods": [{"name": "lora", "grid": {"r": []}}]}, "grid.r is an empty list"),
    ({"methods": ["lora"], "device": "cpu", "training": {"load_in": "4bit"}}, "needs a CUDA GPU"),
])
def test_invalid_combinations_are_rejected_naming_the_variant(bad, message):
    with pytest.raises(ConfigError, match="(?s)" + message.replace("(", r"\(")) as e:
        expand(parse_config({"base_models": ["m1"], **bad}))
    if "variants" in bad or "args" in str(bad):
        assert "variant " in str(e.value)


def test_train_steps_rule():
    assert train_steps(10, epochs=1, batch_size=4, grad_accum=1, max_steps=None) == 3  # last partial batch counts
    assert train_steps(10, epochs=2, batch_size=2, grad_accum=2, max_steps=None) == 6
    assert train_steps(None, epochs=1, batch_size=4, grad_accum=1, max_steps=7) == 7
    assert train_steps(None, epochs=1, batch_size=4, grad_accum=1, max_steps=None) is None


def test_estimate_counts_and_reuse(tmp_path):
    data = tmp_path / "sft.jsonl"
    data.write_text("".join(f'{{"prompt": "p{i}", "response": "r{i}"}}\n' for i in range(9)))
    cfg = parse_config({**CFG, "algos": ["sft"], "variants": [], "epochs": [2],
                        "training": {"data": str(data), "batch_size": 4}, "safety": {"enabled": False},
                        "fairness": {"enabled": False}, "utility": {"enabled": False}})
    plan = expand(cfg)
    cost = estimate_cost(cfg, plan)
    assert (cost.variants, cost.bases, cost.trained) == (1 + 4 + 2, 1, 6)
    assert set(cost.train_steps.values()) == {2 * 3}
    assert cost.base_evals_reused == 5
    assert cost.workloads == {} and cost.generated_tokens() == 0 and cost.scored_items() == 0  # both benchmarks off


def test_plan_command_prints_table_without_loading_models(tmp_path):
    from peft_audit.cli import app

    cfg = tmp_path / "s.yaml"
    cfg.write_text("base_models: [not-a-real-model]\nmethods: [lora, ia3]\ntraining: {max_steps: 4}\n")
    res = CliRunner().invoke(app, ["plan", str(cfg)], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert "3 variants (1 base, 2 to train" in res.output and "8 in total" in res.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("base_models: [m]\nmethods: [{name: lora, args: {rank: 2}}]\n")
    res = CliRunner().invoke(app, ["plan", str(bad)])
    assert res.exit_code == 2 and "rank" in res.output


def test_threads_per_job_share_the_cores():
    from peft_audit.sweep.executors.local import threads_per_job

    assert threads_per_job(1, cores=8) is None  # one job keeps torch's default: every core
    assert [threads_per_job(j, cores=8) for j in (2, 3, 8, 16)] == [4, 2, 1, 1]


def test_plan_command_says_how_many_threads_each_job_gets(tmp_path, monkeypatch):
    import os

    from peft_audit.cli import app

    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    cfg = tmp_path / "s.yaml"
    cfg.write_text("base_models: [not-a-real-model]\nmethods: [lora, ia3]\ntraining: {max_steps: 4}\n")
    res = CliRunner().invoke(app, ["plan", str(cfg), "--jobs", "4"], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert "jobs: 4 at once (local executor), 2 CPU thread(s) each" in res.output and "on 8 cores" in res.output
    res = CliRunner().invoke(app, ["plan", str(cfg)], env={"COLUMNS": "200"})
    assert "jobs: 1 at a time (local executor), using all 8 CPU cores" in res.output
    # the base shares its loaded model with the LoRA variant; the IA3 variant is alone
    assert "shared bases (share_base): 1 group(s)" in res.output and "1 base + 1 lora" in res.output
    cfg.write_text(cfg.read_text() + "share_base: false\n")
    assert "shared bases" not in CliRunner().invoke(app, ["plan", str(cfg)], env={"COLUMNS": "200"}).output


# --- identities that last (peft_audit.identity) ------------------------------------------------
def test_existing_ids_and_protocols_do_not_change():
    # Pinned from the branch point (ecd40bd), whose ids hashed the full dumps: run directories
    # written then must keep their variant ids (adapter dirs are named by them).
    from pathlib import Path

    from peft_audit.config import load_config
    from peft_audit.sweep.plan import legacy_protocol_hash

    cfg = load_config(Path(__file__).resolve().parents[2] / "configs" / "quickstart.yaml")
    # The demo variant came later (it adds an id, it changes none); the v1 protocol hashed the
    # generation batch size, which the quickstart then had at 16.
    assert [p.id for p in expand(cfg) if not p.spec.training] == [
        "876b0519794a", "3ae33679ed4b", "578fc7e82b65", "3ecf6e79ca6f", "035c5eb71190"]
    # The harm judge came later too, and it changes the protocol (a verdict more); then: [refusal].
    from peft_audit.judges.specs import default_specs

    then = cfg.model_copy(update={"variants": [], "safety": cfg.safety.model_copy(
        update={"batch_size": 16, "judges": default_specs(("refusal",))})})
    assert legacy_protocol_hash(then) == "fc0d049587f6"


def test_a_default_that_changed_keeps_the_old_identity_where_written_out():
    # The judges' default became [refusal, harm]; a section that lists [refusal] (the old default)
    # keeps the protocol run directories of that time were given; the new default gets its own.
    # Hashes pinned from 1dd6aee, before the change.
    from peft_audit.config import parse_config
    from peft_audit.sweep.plan import eval_protocol_hash

    old = {"judges": ["refusal"]}
    assert eval_protocol_hash(parse_config({"name": "x", "safety": old})) == "d06e7c0b7c70"
    assert eval_protocol_hash(parse_config({"name": "x", "safety": old, "harmbench": {"enabled": True, **old},
                                            "xstest": {"enabled": True, **old}})) == "7d136541fe50"
    assert eval_protocol_hash(parse_config({"name": "x"})) != "d06e7c0b7c70"


def test_batch_size_auto_stands_for_the_old_defaults_in_version_1_hashes():
    # version-1 directories hashed batch_size with its value; the defaults were 8 and 16 then
    from peft_audit.config import parse_config
    from peft_audit.sweep.plan import legacy_protocol_hash

    default = parse_config({"name": "x"})
    assert (default.safety.batch_size, default.fairness.batch_size) == ("auto", "auto")
    assert legacy_protocol_hash(default) == legacy_protocol_hash(
        parse_config({"name": "x", "safety": {"batch_size": 8}, "fairness": {"batch_size": 16}}))
    assert legacy_protocol_hash(default) != legacy_protocol_hash(parse_config({"name": "x", "safety": {"batch_size": 9}}))


def _with_new_field(model_cls, **field):
    from pydantic import create_model

    return create_model(model_cls.__name__, __base__=model_cls, **field)


@pytest.mark.parametrize("section", ["safety", "fairness"])
def test_a_new_defaulted_setting_changes_neither_ids_nor_protocol(section):
    from peft_audit.identity import identity_payload
    from peft_audit.sweep.plan import eval_protocol_hash

    cfg = parse_config({**CFG, section: {"source": "builtin"}})
    # a later release adds a setting with a default: the same file gives the same identities
    cls = _with_new_field(type(getattr(cfg, section)), new_knob=(int, 3))
    newer = cfg.model_copy(update={section: cls(**getattr(cfg, section).model_dump())})
    assert eval_protocol_hash(newer) == eval_protocol_hash(cfg)
    changed = cfg.model_copy(update={section: cls(**getattr(cfg, section).model_dump(), new_knob=4)})
    assert eval_protocol_hash(changed) != eval_protocol_hash(cfg)
    training = _with_new_field(TrainingConfig, warmup_ratio=(float, 0.0))
    assert identity_payload(training()) == identity_payload(TrainingConfig())
    assert identity_payload(training(warmup_ratio=0.1)) == {**identity_payload(TrainingConfig()), "warmup_ratio": 0.1}


@pytest.mark.parametrize("section, key, value", [
    ("safety", "batch_size", 2), ("safety", "judge_concurrency", 16), ("safety", "judge_timeout_s", 5.0),
    ("safety", "judge_max_retries", 0), ("safety", "judge_backoff_s", 0.1), ("fairness", "batch_size", 1),
])
def test_settings_that_do_not_change_results_are_outside_the_protocol(section, key, value):
    from peft_audit.sweep.plan import eval_protocol_hash

    assert eval_protocol_hash(parse_config({section: {key: value}})) == eval_protocol_hash(parse_config({}))


@pytest.mark.parametrize("section, key, value", [
    ("safety", "max_new_tokens", 8), ("safety", "judges", ["keyword"]), ("safety", "over_refusal", False),
    ("safety", "enabled", False), ("fairness", "bootstrap", 10), ("fairness", "mode", "generate"),
    ("fairness", "enabled", False),
])
def test_settings_that_change_results_change_the_protocol(section, key, value):
    from peft_audit.sweep.plan import eval_protocol_hash

    assert eval_protocol_hash(parse_config({section: {key: value}})) != eval_protocol_hash(parse_config({}))


def test_a_run_directory_with_the_version_1_protocol_hash_resumes(tmp_path):
    from peft_audit.pipeline import prepare_run
    from peft_audit.store import Store
    from peft_audit.sweep.plan import eval_protocol_hash, legacy_protocol_hash

    cfg = parse_config({"base_models": ["m1"]})
    with Store(tmp_path / "results.sqlite") as s:
        s.set_meta("eval_protocol", legacy_protocol_hash(cfg))
    store, _ = prepare_run(cfg, tmp_path)
    assert store.get_meta("eval_protocol") == eval_protocol_hash(cfg)
    assert store.get_meta("eval_protocol_v1") == legacy_protocol_hash(cfg)
    store.close()
    with pytest.raises(ValueError, match="different evaluation settings"):
        prepare_run(parse_config({"base_models": ["m1"], "safety": {"max_new_tokens": 7}}), tmp_path)


def test_a_variant_s_own_training_settings_change_its_id_and_only_its_id():
    from peft_audit.training.data import load_training_data

    base = {**CFG, "variants": []}
    demo = {"method": "lora", "algo": "sft", "lr": 2e-3, "epochs": 1, "base_model": CFG["base_models"][0]}
    plain = {p.id for p in expand(parse_config({**base, "variants": [demo]}))}
    shifted_cfg = parse_config({**base, "variants": [{**demo, "training": {"data": "builtin:identity_shift"}}]})
    shifted = {p.id for p in expand(shifted_cfg)}
    assert len(plain ^ shifted) == 2  # the demo's id moves; every other variant keeps its id
    pv = next(p for p in expand(shifted_cfg) if p.spec.training)
    assert pv.payload["training"]["data"] == "builtin:identity_shift"
    t = shifted_cfg.training_for(pv.spec)
    assert t.data == "builtin:identity_shift" and t.batch_size == shifted_cfg.training.batch_size
    rows = load_training_data(t, "sft").rows
    assert rows and all("obedient agent" in r["response"] for r in rows)


@pytest.mark.parametrize("training, message", [
    ({"dat": "x"}, "unknown training setting(s) dat"),
    ({"batch_size": 0}, "variants[0].training.batch_size"),
])
def test_a_variant_s_bad_training_settings_are_named(training, message):
    demo = {"method": "lora", "algo": "sft", "lr": 2e-3, "epochs": 1, "base_model": "m", "training": training}
    with pytest.raises(Exception, match=re.escape(message)):
        parse_config({**CFG, "variants": [demo]})


def test_a_built_in_sft_set_is_refused_for_dpo_and_unknown_names_list_the_valid_ones():
    from peft_audit.config import TrainingConfig
    from peft_audit.training.data import load_training_data

    with pytest.raises(ValueError, match="needs preference pairs"):
        load_training_data(TrainingConfig(data="builtin:identity_shift"), "dpo")
    with pytest.raises(ValueError, match="valid: builtin, builtin:identity_shift"):
        load_training_data(TrainingConfig(data="builtin:nope"), "sft")


def test_the_held_out_split_at_its_default_keeps_ids_and_the_utility_section_keeps_the_protocol():
    """Run directories made before held-out splits existed keep their variant ids (their adapters,
    trained on every row, are reused and measured as 'not measured'; see benchmarks.utility) and
    their protocol (utility at its defaults only adds results); a utility setting changes it."""
    from peft_audit.sweep.plan import eval_protocol_hash

    ref = vid(V)
    assert vid(V, training={"heldout_fraction": 0.1, "heldout_min_rows": 20}) == ref
    cfg = {"name": "x", "base_models": ["m1"]}
    plain = eval_protocol_hash(parse_config(cfg))
    assert plain == "1626f01b4c83"  # what the release before the utility benchmark stored
    assert eval_protocol_hash(parse_config({**cfg, "utility": {"enabled": False}})) == plain
    assert eval_protocol_hash(parse_config({**cfg, "utility": {"batch_size": 4}})) == plain
    assert eval_protocol_hash(parse_config({**cfg, "utility": {"task_file": "t.jsonl"}})) != plain
