"""check_compatibility on real adapters: good ones fit, bad ones fail with expected vs found."""

import pickle
import shutil
from pathlib import Path

import pytest

from peft_audit.adapters import CorruptAdapter, check_compatibility, read_tensor_shapes
from peft_audit.adapters.compat import compare_base_names

GOOD = ["lora", "ia3", "prompt-tuning", "p-tuning", "prefix-tuning"]


@pytest.mark.parametrize("name", GOOD)
def test_good_adapters_fit(adapter_dirs, tiny_model_dir, name):
    res = check_compatibility(adapter_dirs[name], tiny_model_dir)
    assert res.ok and res.status == "ok" and res.reasons == [], res.reasons


@pytest.mark.parametrize("name", ["lora", "ia3", "prompt-tuning", "prefix-tuning"])
def test_every_method_rejects_the_wide_base(adapter_dirs, tmp_path_factory, name):
    wide = adapter_dirs["mismatched"].parent / "bases" / "tiny-llama-wide"
    res = check_compatibility(adapter_dirs[name], wide)
    assert not res.ok and res.status == "failed"
    assert any("expected shape" in r for r in res.reasons), res.reasons


def test_mismatched_hidden_size_names_expected_and_found(adapter_dirs, tiny_model_dir):
    res = check_compatibility(adapter_dirs["mismatched"], tiny_model_dir)
    assert not res.ok and res.status == "failed"
    msg = res.message()
    assert "base model name" in msg and "tiny-llama-wide" in msg
    assert "q_proj.lora_A.weight: expected shape [4, 32] for base module model.layers.0.self_attn.q_proj, found [4, 64]" in msg


def test_force_overrides_a_mismatch_but_keeps_the_reasons(adapter_dirs, tiny_model_dir):
    res = check_compatibility(adapter_dirs["mismatched"], tiny_model_dir, force=True)
    assert res.ok and res.reasons == []
    assert any(w.startswith("--force: ignored") and "expected shape" in w for w in res.warnings)


def test_corrupt_safetensors_fails_clearly(adapter_dirs, tiny_model_dir):
    res = check_compatibility(adapter_dirs["corrupt"], tiny_model_dir, force=True)  # force cannot fix a broken file
    assert not res.ok and res.status == "failed"
    assert "truncated, corrupt" in res.message() and "adapter_model.safetensors" in res.message()
    with pytest.raises(CorruptAdapter):
        read_tensor_shapes(adapter_dirs["corrupt"])


def test_unknown_peft_type_is_skipped(adapter_dirs, tiny_model_dir):
    res = check_compatibility(adapter_dirs["unknown_type"], tiny_model_dir)
    assert res.status == "skipped" and "VERY_NEW_TUNING" in res.message() and "lora" in res.message()


def test_pickled_weights_are_never_unpickled(adapter_dirs, tiny_model_dir):
    # A plain-tensor .bin from peft itself is skipped too: the check cannot tell it from a hostile one without unpickling
    res = check_compatibility(adapter_dirs["pickle_only"], tiny_model_dir, force=True)
    assert not res.ok and res.status == "skipped"
    assert "adapter_model.bin: pickled weights, which peft-audit never loads" in res.message()


def test_pickled_weights_with_code_are_refused(adapter_dirs, tmp_path, tiny_model_dir):
    d = shutil.copytree(adapter_dirs["pickle_only"], tmp_path / "evil")
    marker = tmp_path / "PWNED"

    class Boom:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    import torch

    torch.save({"x": Boom()}, d / "adapter_model.bin", pickle_module=pickle)
    res = check_compatibility(d, tiny_model_dir)
    assert res.status == "skipped" and "never loads" in res.message()
    assert not marker.exists()


def test_missing_module_is_named(adapter_dirs, tiny_model_dir, tmp_path):
    from safetensors.torch import load_file, save_file

    d = shutil.copytree(adapter_dirs["lora"], tmp_path / "renamed")
    sd = {k.replace("q_proj", "query_key_value"): v for k, v in load_file(d / "adapter_model.safetensors").items()}
    save_file(sd, d / "adapter_model.safetensors")
    res = check_compatibility(d, tiny_model_dir)
    assert not res.ok and "query_key_value" in res.message() and "does not have" in res.message()


@pytest.mark.parametrize(
    "adapter_base, ours, fits",
    [
        ("HuggingFaceTB/SmolLM2-135M-Instruct", ["smollm2-135m-instruct"], True),
        ("meta-llama/Llama-2-7b-hf", ["/models/llama-2-7b-hf"], True),
        ("meta-llama/Llama-2-7b-hf@main", ["meta-llama/Llama-2-7b-hf"], True),
        ("meta-llama/Llama-2-7b-hf", ["meta-llama/Llama-2-13b-hf"], False),
        ("Qwen/Qwen2.5-0.5B-Instruct", ["smollm2-135m-instruct"], False),
        (None, ["anything"], True),
    ],
)
def test_base_name_normalisation(adapter_base, ours, fits):
    assert compare_base_names(adapter_base, ours)[0] is fits


# --- one model, several spellings: compared by identity, not by name (issue 15, case 3) ----------
def _with_base_name(adapter: Path, out: Path, base_name: str) -> Path:
    import json
    import shutil

    d = shutil.copytree(adapter, out)
    cfg = json.loads((d / "adapter_config.json").read_text())
    cfg["base_model_name_or_path"] = base_name
    (d / "adapter_config.json").write_text(json.dumps(cfg))
    return d


def test_an_adapter_of_this_very_checkpoint_fits_under_another_spelling(adapter_dirs, tiny_model_dir, tmp_path):
    # Trained on the checkpoint directory, audited through a link with another name (as an
    # adapter trained on the bundled alias records the cached conversion's path).
    link = tmp_path / "SmolLM2-135M-Instruct"
    link.symlink_to(tiny_model_dir, target_is_directory=True)
    d = _with_base_name(adapter_dirs["lora"], tmp_path / "a", str(tiny_model_dir))
    r = check_compatibility(d, link)
    assert r.ok and r.reasons == [], r.reasons


def test_provenance_fingerprint_identifies_the_base(adapter_dirs, tiny_model_dir, tmp_path):
    import json

    from peft_audit.models import resolve_model
    from peft_audit.training.provenance import PROVENANCE_FILE

    d = _with_base_name(adapter_dirs["lora"], tmp_path / "a", "/gone/cache/somewhere/model")
    assert not check_compatibility(d, tiny_model_dir).ok  # the name alone does not match
    fp = resolve_model(str(tiny_model_dir)).fingerprint
    (d / PROVENANCE_FILE).write_text(json.dumps({"base_model": {"id": "x", "fingerprint": fp}}))
    assert check_compatibility(d, tiny_model_dir).ok


def test_a_name_mismatch_says_how_to_override(adapter_dirs, tiny_model_dir, tmp_path):
    d = _with_base_name(adapter_dirs["lora"], tmp_path / "a", "meta-llama/Llama-3-8B")
    r = check_compatibility(d, tiny_model_dir)
    assert not r.ok and "--force" in r.reasons[-1]
