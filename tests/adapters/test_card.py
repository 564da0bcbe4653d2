"""Model-card and trainer-state parsing on realistic hand-written cards (tests/adapters/cards.py)."""

import pytest

from cards import CARDS, TRAINER_STATE
from peft_audit.adapters.card import parse_model_card, parse_trainer_state


@pytest.mark.parametrize("name", sorted(CARDS))
def test_card_fields_exactly_as_written(name):
    text, expected = CARDS[name]
    fields, _notes = parse_model_card(text)
    assert {k: s.value for k, s in fields.items()} == expected
    assert all(s.source.startswith("README.md:") for s in fields.values())


def test_hyperparameters_are_sourced_to_the_trainer_list():
    fields, _ = parse_model_card(CARDS["trainer_lora"][0])
    assert fields["learning_rate"].source == "README.md:training_hyperparameters"
    assert fields["base_model"].source == "README.md:front_matter.base_model"


def test_algo_from_trl_sentence_and_tags():
    fields, _ = parse_model_card(CARDS["trl_dpo"][0])
    assert fields["algo"].value == "dpo"
    body_only = CARDS["trl_sft"][0].split("---", 2)[2]  # drop front matter: the sentence alone
    fields, _ = parse_model_card(body_only)
    assert fields["algo"].value == "sft" and "body" in fields["algo"].source


def test_conflicting_algos_stay_unknown_with_a_note():
    fields, notes = parse_model_card(CARDS["trainer_steps_both_algos"][0])
    assert "algo" not in fields
    assert any("several training algorithms" in n for n in notes)


def test_broken_front_matter_and_non_numbers_are_noted_not_guessed():
    fields, notes = parse_model_card(CARDS["broken_front_matter"][0])
    assert "train_batch_size" not in fields
    assert any("not valid YAML" in n for n in notes)
    assert any("train_batch_size" in n for n in notes)


def test_trainer_state_logged_lr_is_not_the_learning_rate():
    fields, _ = parse_trainer_state(TRAINER_STATE)
    got = {k: s.value for k, s in fields.items()}
    assert got == {"num_epochs": 3, "training_steps": 375, "train_batch_size": 4, "epochs_completed": 3.0,
                   "learning_rate_max_logged": 0.000189}
    assert "learning_rate" not in fields
    assert "lower bound" in fields["learning_rate_max_logged"].source


def test_trainer_state_garbage_is_ignored():
    fields, notes = parse_trainer_state([1, 2])
    assert fields == {} and notes
    fields, _ = parse_trainer_state({"num_train_epochs": "three", "log_history": [{"loss": 1.0}]})
    assert fields == {}
