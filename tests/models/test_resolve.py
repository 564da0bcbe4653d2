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


def test_tokenizer_is_read_once_and_each_caller_gets_its_own(tmp_path, tiny_model_dir, monkeypatch):
    import shutil

    from peft_audit.models import load as load_module

    model_dir = tmp_path / "m"
    shutil.copytree(tiny_model_dir, model_dir)
    reads = []
    real = load_module._read_tokenizer
    monkeypatch.setattr(load_module, "_read_tokenizer", lambda *a: reads.append(a) or real(*a))
    load_module._cached_tokenizer.cache_clear()
    a = load_module.load_tokenizer(model_dir)
    b = load_module.load_tokenizer(model_dir)
    assert len(reads) == 1
    assert a is not b and a("hello")["input_ids"] == b("hello")["input_ids"]
    a.padding_side = "left" if b.padding_side == "right" else "right"
    assert load_module.load_tokenizer(model_dir).padding_side == b.padding_side  # a's change stays a's
    # a changed tokenizer file is read again
    config = model_dir / "tokenizer_config.json"
    config.write_text(config.read_text() + "\n")
    load_module.load_tokenizer(model_dir)
    assert len(reads) == 2


def test_a_model_file_is_hashed_again_when_it_changes(tmp_path, monkeypatch):
    import hashlib

    from peft_audit.models import resolve as resolve_module

    monkeypatch.setattr(resolve_module, "HASH_MEMO_BYTES", 4)  # memoise this small file too
    f = tmp_path / "w.gguf"
    f.write_bytes(b"first version")
    assert resolve_module._file_sha256(f) == hashlib.sha256(b"first version").hexdigest()
    f.write_bytes(b"second, longer version")
    assert resolve_module._file_sha256(f) == hashlib.sha256(b"second, longer version").hexdigest()
