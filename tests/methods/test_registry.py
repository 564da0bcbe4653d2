"""Every registered method builds a PeftConfig on every family; bad names/args fail loudly."""

import pytest

from peft_audit.config import METHODS
from peft_audit.methods import (
    METHOD_MODULES,
    build_peft_config,
    is_prompt_learning,
    resolve_method_args,
    trainable_parameters,
)
from tiny_models import FAMILIES, make_tiny_model


def test_registry_matches_config_methods():
    assert tuple(METHOD_MODULES) == METHODS


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("method", METHODS)
def test_builds_and_wraps_every_family(family, method):
    from peft import get_peft_model

    model, tok = make_tiny_model(family)
    total_before = sum(p.numel() for p in model.parameters())
    cfg = build_peft_config(method, model, {}, tokenizer=tok)
    peft_model = get_peft_model(model, cfg)
    trainable, total = trainable_parameters(peft_model)
    assert 0 < trainable < total_before
    assert total >= total_before


@pytest.mark.parametrize("family", FAMILIES)
def test_lora_default_targets_all_linear_projections(family):
    model, _ = make_tiny_model(family)
    cfg = build_peft_config("lora", model, {})
    assert set(cfg.target_modules) == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}


def test_ia3_defaults_and_feedforward_subset():
    model, _ = make_tiny_model("qwen2")
    cfg = build_peft_config("ia3", model, {})
    assert set(cfg.feedforward_modules) <= set(cfg.target_modules)
    assert "down_proj" in cfg.feedforward_modules
    with pytest.raises(ValueError, match="feedforward_modules"):
        build_peft_config("ia3", model, {"target_modules": "k_proj,v_proj", "feedforward_modules": "down_proj"})


def test_cli_strings_are_coerced():
    args = resolve_method_args("lora", {"r": "16", "alpha": "32", "dropout": "0.1", "target_modules": "q_proj, v_proj"})
    assert args == {"r": 16, "alpha": 32, "dropout": 0.1, "target_modules": ["q_proj", "v_proj"]}
    model, _ = make_tiny_model("llama")
    cfg = build_peft_config("lora", model, {"r": "4", "target_modules": "q_proj"})
    assert cfg.r == 4 and set(cfg.target_modules) == {"q_proj"}
    with pytest.raises(ValueError, match="must be a int"):
        resolve_method_args("lora", {"r": "four"})


def test_unknown_method_and_argument_name_the_valid_choices():
    model, _ = make_tiny_model("llama")
    with pytest.raises(ValueError, match="valid: lora, ia3, prompt-tuning, p-tuning, prefix-tuning"):
        build_peft_config("adapterx", model, {})
    with pytest.raises(ValueError, match="valid: r, alpha, dropout, target_modules"):
        build_peft_config("lora", model, {"rank": 8})
    with pytest.raises(ValueError, match="valid: num_virtual_tokens, encoder_hidden_size, encoder_type"):
        build_peft_config("p-tuning", model, {"encoder": "MLP"})


def test_p_tuning_encoder_types():
    model, _ = make_tiny_model("llama")
    assert build_peft_config("p-tuning", model, {"encoder_type": "lstm"}).encoder_reparameterization_type == "LSTM"
    with pytest.raises(ValueError, match="MLP, LSTM"):
        build_peft_config("p-tuning", model, {"encoder_type": "GRU"})


def test_prompt_tuning_text_init(tiny_model_dir):
    from peft import get_peft_model
    from peft_audit.models import load_tokenizer

    model, _ = make_tiny_model("llama")
    tok = load_tokenizer(tiny_model_dir)
    cfg = build_peft_config("prompt-tuning", model, {"num_virtual_tokens": 4, "init": "text:answer the question"}, tokenizer=tok)
    assert cfg.prompt_tuning_init == "TEXT" and cfg.prompt_tuning_init_text == "answer the question"
    peft_model = get_peft_model(model, cfg)
    ids = tok("answer the question")["input_ids"]
    expected = model.get_input_embeddings().weight[ids[:4]]
    got = peft_model.prompt_encoder["default"].embedding.weight
    assert got.shape[0] == 4
    assert (got - expected).abs().max().item() < 1e-6
    with pytest.raises(ValueError, match="random"):
        build_peft_config("prompt-tuning", model, {"init": "zeros"})


def test_prompt_learning_flags():
    assert [m for m in METHODS if is_prompt_learning(m)] == ["prompt-tuning", "p-tuning", "prefix-tuning"]
