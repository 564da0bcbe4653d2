"""extract_metadata on real saved adapters, with and without a card and trainer state."""

import json
import pickle
import shutil

import pytest

from cards import CARDS, TRAINER_STATE
from peft_audit.adapters import AdapterNotFound, CorruptAdapter, extract_metadata
from peft_audit.adapters.metadata import FIELDS

METHODS = ["lora", "ia3", "prompt-tuning", "p-tuning", "prefix-tuning"]


@pytest.mark.parametrize("method", METHODS)
def test_method_and_config_fields(adapter_dirs, tiny_model_dir, method):
    meta = extract_metadata(adapter_dirs[method])
    assert meta.method == method
    assert meta.fields["method"].source == "adapter_config.json:peft_type"
    assert meta.value("base_model") == str(tiny_model_dir)
    if method == "lora":
        assert (meta.value("r"), meta.value("lora_alpha"), meta.value("target_modules")) == (4, 8, ["q_proj", "v_proj"])
    if method in ("prompt-tuning", "p-tuning", "prefix-tuning"):
        assert meta.value("num_virtual_tokens") == 5
    # PEFT's own card says nothing about training: those stay unknown.
    for unknown in ("algo", "learning_rate", "num_epochs", "train_batch_size"):
        assert meta.value(unknown) is None
        assert meta.to_dict()[unknown] is None
    assert set(meta.to_dict()) == {*FIELDS, "notes"}


def _with_card(src, dst, card, state=None):
    d = shutil.copytree(src, dst)
    (d / "README.md").write_text(card)
    if state is not None:
        (d / "trainer_state.json").write_text(json.dumps(state))
    return d


def test_card_and_trainer_state_merge_with_sources(adapter_dirs, tmp_path):
    d = _with_card(adapter_dirs["lora"], tmp_path / "a", CARDS["trainer_lora"][0], TRAINER_STATE)
    meta = extract_metadata(d)
    assert meta.to_dict()["learning_rate"] == {"value": 0.0002, "source": "README.md:training_hyperparameters"}
    assert meta.to_dict()["num_epochs"] == {"value": 3, "source": "README.md:training_hyperparameters"}
    assert meta.value("learning_rate_max_logged") == 0.000189
    assert meta.value("training_steps") == 375
    # adapter_config.json's base model wins over the card's, and the disagreement is noted.
    assert meta.fields["base_model"].source == "adapter_config.json:base_model_name_or_path"
    assert any("base_model" in n and "README.md" in n for n in meta.notes)


def test_card_base_model_used_when_config_has_none(adapter_dirs, tmp_path):
    d = _with_card(adapter_dirs["ia3"], tmp_path / "b", CARDS["trl_dpo"][0])
    cfg = json.loads((d / "adapter_config.json").read_text())
    cfg["base_model_name_or_path"] = None
    (d / "adapter_config.json").write_text(json.dumps(cfg))
    meta = extract_metadata(d)
    assert meta.value("base_model") == "Qwen/Qwen2.5-0.5B-Instruct"
    assert meta.value("algo") == "dpo"


def test_unknown_peft_type_is_noted_not_guessed(adapter_dirs):
    meta = extract_metadata(adapter_dirs["unknown_type"])
    assert meta.method is None and meta.value("peft_type") == "VERY_NEW_TUNING"
    assert any("VERY_NEW_TUNING" in n for n in meta.notes)


def test_missing_or_invalid_config(tmp_path):
    with pytest.raises(AdapterNotFound, match="adapter_config.json"):
        extract_metadata(tmp_path)
    (tmp_path / "adapter_config.json").write_text("{not json")
    with pytest.raises(CorruptAdapter, match="not valid JSON"):
        extract_metadata(tmp_path)


class _Boom:
    """Unpickling this runs code that creates a marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_training_args_bin_is_never_unpickled(adapter_dirs, tmp_path):
    d = shutil.copytree(adapter_dirs["lora"], tmp_path / "c")
    marker = tmp_path / "PWNED"
    (d / "training_args.bin").write_bytes(pickle.dumps(_Boom(marker)))
    extract_metadata(d)
    assert not marker.exists()
