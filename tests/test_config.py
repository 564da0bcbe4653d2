"""Config validation: each kind of bad input gives its own specific error, naming file and key."""

import pytest

from peft_audit.config import ConfigError, load_config, parse_config


def write(tmp_path, text):
    p = tmp_path / "sweep.yaml"
    p.write_text(text)
    return p


def test_valid_minimal_config_has_defaults(tmp_path):
    from peft_audit.judges.specs import HarmSpec, RefusalSpec

    cfg = load_config(write(tmp_path, "name: x\nmethods: [lora, ia3]\n"))
    assert [m.name for m in cfg.methods] == ["lora", "ia3"]
    assert cfg.base_models == ["smollm2-135m-instruct"]
    assert cfg.safety.judges == [RefusalSpec(name="refusal"), HarmSpec(name="harm")]


@pytest.mark.parametrize(
    "text, key, phrase",
    [
        ("nmae: x\n", "nmae", "unknown key"),
        ("safety: {sourse: builtin}\n", "safety.sourse", "unknown key"),
        ("lr: [0.0]\n", "lr", "learning rate must be a finite number > 0"),
        ("lr: [-1e-4]\n", "lr", "learning rate must be a finite number > 0"),
        ("epochs: [0]\n", "epochs", "epochs must be >= 1"),
        ("methods: [loraa]\n", "methods.0.name", "unknown PEFT method 'loraa'"),
        ("training: {batch_size: many}\n", "training.batch_size", "integer"),
        ("training: {max_steps: 0}\n", "training.max_steps", "greater than or equal to 1"),
        ("safety: {batch_size: big}\n", "safety.batch_size", "batch_size must be a positive integer or 'auto', got 'big'"),
        ("fairness: {batch_size: 0}\n", "fairness.batch_size", "batch_size must be a positive integer or 'auto', got 0"),
        ("fairness: {mode: vibes}\n", "fairness.mode", "'loglik' or 'generate'"),
        ("methods: [{name: lora, lr: [0]}]\n", "methods.0.lr", "learning rate must be a finite number > 0"),
        ("variants: [{base_model: m, method: lora}]\n", "variants.0", "needs algo, lr and epochs"),
    ],
)
def test_bad_values_name_file_and_key(tmp_path, text, key, phrase):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        load_config(path)
    msg = str(e.value)
    assert str(path) in msg
    assert f"  {key}:" in msg
    assert phrase in msg


def test_not_yaml_and_not_mapping_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path, "a: [1, 2\n"))
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(write(tmp_path, "- 1\n- 2\n"))
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")


def test_empty_file_is_all_defaults():
    assert parse_config(None).name == "audit"
