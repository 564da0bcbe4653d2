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
    assert variant_display(_v("a")) == "lora · sft · lr 1e-3 · 1 ep · seed 0"  # alone: its seed is said
    names = variant_labels([_v("abcdef123"), _v("fedcba321")])
    assert names == {"abcdef123": "lora · sft · lr 1e-3 · 1 ep · #abcdef", "fedcba321": "lora · sft · lr 1e-3 · 1 ep · #fedcba"}


def test_a_run_without_config_labels_is_read_back_with_readable_names(tmp_path):
    """The frames every report, plot and gate line reads name variants by their settings, not their hash."""
    from typer.testing import CliRunner

    from peft_audit.analysis import load_run_frames
    from peft_audit.cli import app
    from peft_audit.store import Store

    with Store(tmp_path / "results.sqlite") as st:
        st.register_variant("b0", spec={"base_model": "smol", "method": "base"}, config={}, base_id=None)
        for vid, method in (("3ae33679ed4b", "lora"), ("035c5eb71190", "p-tuning")):
            st.register_variant(vid, spec={"base_model": "smol", "method": method, "algo": "sft", "lr": 1e-3,
                                           "epochs": 1, "seed": 0, "method_args": {}}, config={}, base_id="b0")
    labels = dict(zip(*load_run_frames(tmp_path).variants[["id", "label"]].to_numpy().T))
    assert labels == {"b0": "smol (base)", "3ae33679ed4b": "lora · sft · lr 1e-3 · 1 ep",
                      "035c5eb71190": "p-tuning · sft · lr 1e-3 · 1 ep"}
    out = CliRunner().invoke(app, ["show", str(tmp_path)], env={"COLUMNS": "250"}).output
    assert "lora · sft · lr 1e-3 · 1 ep" in out and "p-tuning · sft · lr 1e-3 · 1 ep" in out
