"""Hub-id adapter resolution against a real HTTP server on 127.0.0.1 (fake_hub.py)."""

import pytest

from fake_hub import FakeHub, repo_from_dir
from peft_audit.adapters import AdapterGated, AdapterNotFound, UnsafeAdapter, check_compatibility, resolve_adapter
from peft_audit.adapters import hub as hub_mod


@pytest.fixture
def fake_hub(monkeypatch, tmp_path):
    import huggingface_hub.constants as c

    monkeypatch.setattr(c, "HF_HUB_OFFLINE", False)  # tests/conftest.py sets HF_HUB_OFFLINE=1
    monkeypatch.setattr(c, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    sleeps = []
    monkeypatch.setattr(hub_mod, "_sleep", sleeps.append)
    with FakeHub() as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        hub.sleeps = sleeps
        yield hub


def test_hub_id_downloads_only_adapter_files(fake_hub, adapter_dirs, tiny_model_dir):
    fake_hub.repos["org/tiny-lora"] = repo_from_dir(adapter_dirs["lora"], extra={"big.gguf": b"x" * 1000,
                                                                                 "training_args.bin": b"pickle"})
    d = resolve_adapter("org/tiny-lora")
    assert sorted(p.name for p in d.iterdir()) == ["README.md", "adapter_config.json", "adapter_model.safetensors"]
    assert d.name == fake_hub.repos["org/tiny-lora"].sha
    assert check_compatibility(d, tiny_model_dir).ok
    assert not any("big.gguf" in path or "training_args" in path for _, path in fake_hub.log)


def test_revision_pin_and_unknown_revision(fake_hub, adapter_dirs):
    repo = fake_hub.repos["org/ia3"] = repo_from_dir(adapter_dirs["ia3"])
    assert resolve_adapter(f"org/ia3@{repo.sha}").name == repo.sha
    with pytest.raises(AdapterNotFound, match="revision not found"):
        resolve_adapter("org/ia3@v9")


def test_gated_and_private_repos_say_why(fake_hub, adapter_dirs):
    fake_hub.repos["org/gated"] = repo_from_dir(adapter_dirs["lora"], gated=True)
    fake_hub.repos["org/private"] = repo_from_dir(adapter_dirs["lora"], private=True)
    with pytest.raises(AdapterGated, match="HF_TOKEN") as e:
        resolve_adapter("org/gated")
    assert e.value.status == "skipped"
    with pytest.raises(AdapterGated, match="HF_TOKEN"):
        resolve_adapter("org/private")


def test_rate_limit_is_retried_with_backoff(fake_hub, adapter_dirs):
    fake_hub.repos["org/busy"] = repo_from_dir(adapter_dirs["prompt-tuning"])
    fake_hub.rate_limit["org/busy"] = 2
    d = resolve_adapter("org/busy")
    assert (d / "adapter_config.json").is_file()
    assert len(fake_hub.sleeps) >= 1  # slept (Retry-After: 0) before succeeding


def test_repo_without_adapter_config(fake_hub):
    from fake_hub import FakeRepo

    fake_hub.repos["org/plain-model"] = FakeRepo(files={"config.json": b"{}"})
    with pytest.raises(AdapterNotFound, match="not a PEFT adapter"):
        resolve_adapter("org/plain-model")


def test_pickle_only_repo_is_skipped_without_fetching_the_pickle(fake_hub, adapter_dirs):
    fake_hub.repos["org/old"] = repo_from_dir(adapter_dirs["pickle_only"])
    with pytest.raises(UnsafeAdapter, match="no adapter_model.safetensors; .* never fetched or loaded") as e:
        resolve_adapter("org/old")
    assert e.value.status == "skipped"
    assert not any("adapter_model.bin" in path for _, path in fake_hub.log)


def test_local_paths(adapter_dirs, tmp_path):
    assert resolve_adapter(str(adapter_dirs["lora"])) == adapter_dirs["lora"]
    with pytest.raises(AdapterNotFound, match="not a saved PEFT adapter"):
        resolve_adapter(str(tmp_path))
    with pytest.raises(AdapterNotFound, match="neither an existing directory"):
        resolve_adapter("./no/such/dir")
