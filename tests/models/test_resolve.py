"""Resolving model names: alias -> cached GGUF conversion, directories, clear errors."""

import pytest
import torch

from peft_audit.models import ModelResolutionError, load_base, resolve_model
from peft_audit.models.resolve import alias_gguf_path, convert_gguf


def test_local_directory_loads(tiny_model_dir):
    loaded = load_base(str(tiny_model_dir), device="cpu")
    assert loaded.resolved.source == "dir"
    assert loaded.tokenizer.pad_token is not None
    assert not loaded.model.training


@pytest.mark.parametrize(
    "name, phrase",
    [
        ("./does/not/exist", "does not exist"),
        ("/tmp/nope-model.gguf", "GGUF file not found"),
        ("just-a-word", "neither an alias"),
    ],
)
def test_bad_names_are_explained(name, phrase):
    with pytest.raises(ModelResolutionError, match=phrase):
        resolve_model(name)


def test_directory_without_config_is_rejected(tmp_path):
    with pytest.raises(ModelResolutionError, match="no config.json"):
        resolve_model(str(tmp_path))


def test_cuda_request_without_cuda_is_explained(tiny_model_dir):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ValueError, match="CUDA is not available"):
        load_base(str(tiny_model_dir), device="cuda")


@pytest.mark.slow
def test_bundled_alias_converts_once_and_matches_gguf_logits(tmp_path, monkeypatch):
    """The cached safetensors must give the same logits as loading the GGUF directly."""
    from transformers import AutoModelForCausalLM

    gguf = alias_gguf_path("smollm2-135m-instruct")
    cached = resolve_model("smollm2-135m-instruct")
    assert cached.source == "alias" and (cached.path / "config.json").is_file()
    assert convert_gguf(gguf) == cached.path  # second call hits the cache
    direct = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    loaded = load_base("smollm2-135m-instruct", device="cpu")
    ids = loaded.tokenizer("The capital of France is", return_tensors="pt").input_ids
    with torch.no_grad():
        assert torch.allclose(direct(ids).logits, loaded.model(ids).logits, atol=1e-5)
