"""The held-out split of the training data: chosen by content, before capping and mixing, and
never reaching the trainer."""

import json

import pytest

from peft_audit.config import TrainingConfig
from peft_audit.training.data import heldout_split, load_training_data, row_key


def _rows(n):
    return [{"prompt": f"question {i}", "response": f"answer {i}"} for i in range(n)]


def test_split_is_by_content_not_position():
    rows = _rows(60)
    train, held = heldout_split(rows, 0.1, 20)
    assert len(held) == 20 and len(train) == 40
    train2, held2 = heldout_split(list(reversed(rows)), 0.1, 20)
    assert {row_key(r) for r in held2} == {row_key(r) for r in held}
    # a larger share than the minimum: round(0.5 * 60) rows
    assert len(heldout_split(rows, 0.45, 20)[1]) == 27


def test_small_data_or_zero_fraction_holds_nothing_out():
    assert heldout_split(_rows(39), 0.1, 20) == (_rows(39), [])
    assert heldout_split(_rows(60), 0.0, 20) == (_rows(60), [])


def test_copies_of_a_held_out_row_leave_training():
    rows = _rows(60)
    _, held = heldout_split(rows, 0.1, 20)
    train, held_again = heldout_split(rows + [dict(held[0])], 0.1, 20)
    assert held_again == held and held[0] not in train


@pytest.mark.parametrize("algo", ["sft", "dpo"])
def test_same_heldout_rows_whatever_the_cap_mix_and_seed(algo):
    plain = load_training_data(TrainingConfig(), algo, seed=0)
    repaired = load_training_data(TrainingConfig(max_examples=30, safety_mix=0.3), algo, seed=7)
    assert len(plain.heldout) >= 20
    assert plain.heldout == repaired.heldout and plain.heldout_record == repaired.heldout_record
    held = {row_key(r) for r in plain.heldout}
    for data in (plain, repaired):
        assert not held & {row_key(r) for r in data.rows}


def test_project_sets_each_hold_out_enough_rows():
    data = load_training_data(TrainingConfig(data="builtin:identity_shift"), "sft")
    assert len(data.heldout) >= 20 and len(data.rows) >= 32


def test_heldout_rows_never_reach_the_trainer(tiny_model_dir, tmp_path, monkeypatch):
    """Train on a tiny model; the rows the SFT trainer is built with hold no held-out row, and the
    adapter's provenance records the split."""
    from peft_audit.config import VariantSpec
    from peft_audit.models import load_base
    from peft_audit.training import sft, train_adapter

    seen = []
    make = sft.make_sft_trainer

    def spy(model, tokenizer, peft_config, rows, *a, **k):
        seen.extend(rows)
        return make(model, tokenizer, peft_config, rows, *a, **k)

    monkeypatch.setattr(sft, "make_sft_trainer", spy)
    loaded = load_base(str(tiny_model_dir), device="cpu")
    training = TrainingConfig(max_steps=1, batch_size=2, max_seq_len=48, safety_mix=0.2)
    spec = VariantSpec(base_model=str(tiny_model_dir), method="lora", algo="sft", lr=1e-3, epochs=1)
    result = train_adapter(loaded.model, loaded.tokenizer, spec=spec, training=training, out_dir=tmp_path / "a",
                           base_fingerprint=loaded.resolved.fingerprint, device="cpu", show_progress=False)
    data = load_training_data(training, "sft", seed=0)
    held = {row_key(r) for r in data.heldout}
    assert seen and len(held) >= 20
    assert not held & {row_key(r) for r in seen}
    record = json.loads((result.adapter_dir / "peft_audit_provenance.json").read_text())["dataset"]["heldout"]
    assert record == data.heldout_record and record["rows"] == len(held)
