"""The one readable name of a variant (peft_audit.sweep.plan.variant_labels)."""

from peft_audit.sweep.plan import variant_display, variant_labels


def _v(vid, **kw):
    return {"id": vid, "base_model": "org/tiny", "method": "lora", "algo": "sft", "lr": 1e-3, "epochs": 1, "seed": 0, **kw}


def test_trained_variant_reads_as_its_settings():
    names = variant_labels([_v("b", method="base", algo=None, lr=None, epochs=None), _v("a"), _v("c", lr=2.5e-4, epochs=2)])
    assert names == {"b": "org/tiny (base)", "a": "lora · sft · lr 1e-3 · 1 ep", "c": "lora · sft · lr 2.5e-4 · 2 ep"}


def test_config_label_wins_and_nan_label_does_not():
    assert variant_labels([_v("a", label="my adapter"), _v("b", label=float("nan"), lr=1e-4)]) == {
        "a": "my adapter", "b": "lora · sft · lr 1e-4 · 1 ep"}


def test_base_model_and_seed_only_when_they_vary():
    names = variant_labels([_v("a"), _v("b", seed=1), _v("c", base_model="org/other")])
    assert names == {"a": "lora · sft · lr 1e-3 · 1 ep · tiny · seed 0", "b": "lora · sft · lr 1e-3 · 1 ep · tiny · seed 1",
                     "c": "lora · sft · lr 1e-3 · 1 ep · other · seed 0"}


def test_method_args_that_differ_are_named_and_store_rows_read_their_spec():
    rows = [{"id": "a", "base_model": "m", "method": "lora", "spec": {"method_args": {"r": 8}, "algo": "dpo"}},
            {"id": "b", "base_model": "m", "method": "lora", "spec": {"method_args": {"r": 16}, "algo": "dpo"}}]
    assert variant_labels(rows) == {"a": "lora · r 8 · dpo", "b": "lora · r 16 · dpo"}


def test_audited_adapter_and_a_name_never_stands_for_two_variants():
    assert variant_display({"base_model": "m", "method": "lora", "adapter": "/x/my-adapter/"}) == "lora · my-adapter"
    names = variant_labels([_v("abcdef123"), _v("fedcba321")])
    assert names == {"abcdef123": "lora · sft · lr 1e-3 · 1 ep · #abcdef", "fedcba321": "lora · sft · lr 1e-3 · 1 ep · #fedcba"}
