"""Hostile adapter_config.json values (issue 31, finding 2): each real adapter (saved by peft on the
tiny Llama) gets one key edited; the check must fail in one line that names the key and both
values, before anything is allocated. ``invalid`` cases (the config contradicts its own tensors,
or is not a sane number) fail even with --force; ``misfit`` cases (the base model differs) are
what --force exists for."""

from __future__ import annotations

import json
import math
import shutil
import struct
from pathlib import Path

import pytest

from peft_audit.adapters import check_compatibility

DROP = object()  # an edit that removes the key

# (case id, adapter, edits to adapter_config.json, text the one-line reason must contain, forceable)
CASES = [
    # LoRA: r sizes every A and B matrix PEFT builds before it reads the file (the saved rank is 4)
    ("lora-r-huge", "lora", {"r": 100_000_000}, ["r: 100000000, but tensor ", "lora_A.weight has rank 4"], False),
    ("lora-r-200000", "lora", {"r": 200_000}, ["r: 200000, but tensor", "has rank 4"], False),
    ("lora-r-astronomic", "lora", {"r": 10**30}, [f"r: {10**30}, but tensor"], False),
    ("lora-r-negative", "lora", {"r": -5}, ["r: expected a whole number >= 1, found -5"], False),
    ("lora-r-zero", "lora", {"r": 0}, ["r: expected a whole number >= 1, found 0"], False),
    ("lora-r-bool", "lora", {"r": True}, ["r: expected a whole number >= 1, found True"], False),
    ("lora-r-text", "lora", {"r": "4"}, ["r: expected a whole number >= 1, found '4'"], False),
    ("lora-r-float", "lora", {"r": 4.0}, ["r: expected a whole number >= 1, found 4.0"], False),
    ("lora-r-missing", "lora", {"r": DROP}, ["r: 8, but tensor", "has rank 4"], False),  # PEFT's default r is 8
    ("lora-alpha-text", "lora", {"lora_alpha": "8"}, ["lora_alpha: expected a finite number > 0, found '8'"], False),
    ("lora-alpha-negative", "lora", {"lora_alpha": -8}, ["lora_alpha: expected a finite number > 0, found -8"], False),
    ("lora-alpha-zero", "lora", {"lora_alpha": 0}, ["lora_alpha: expected a finite number > 0, found 0"], False),
    ("lora-alpha-nan", "lora", {"lora_alpha": float("nan")}, ["lora_alpha: expected a finite number > 0, found nan"],
     False),
    ("lora-alpha-inf", "lora", {"lora_alpha": float("inf")}, ["lora_alpha: expected a finite number > 0, found inf"],
     False),
    ("lora-alpha-400-digits", "lora", {"lora_alpha": 10**400}, ["lora_alpha: expected a finite number > 0, found 1000"],
     False),
    ("lora-alpha-bool", "lora", {"lora_alpha": False}, ["lora_alpha: expected a finite number > 0, found False"], False),
    ("lora-rank-pattern-huge", "lora", {"rank_pattern": {"q_proj": 100_000}},
     ["rank_pattern['q_proj']: 100000, but tensor", "q_proj.lora_A.weight has rank 4"], False),
    ("lora-rank-pattern-negative", "lora", {"rank_pattern": {"v_proj": -1}},
     ["rank_pattern['v_proj']: expected a whole number >= 1, found -1"], False),
    ("lora-rank-pattern-list", "lora", {"rank_pattern": [4]}, ["rank_pattern: expected an object"], False),
    ("lora-rank-pattern-bad-regex", "lora", {"rank_pattern": {"q_proj(": 4}}, ["rank_pattern: key 'q_proj(' is not a regular expression"],
     False),
    ("lora-rank-pattern-null", "lora", {"rank_pattern": None},
     ["rank_pattern: expected an object {module pattern: value}, found None"], False),
    ("lora-bias-number", "lora", {"bias": 5}, ["bias: expected one of none, all, lora_only, found 5"], False),
    ("lora-init-number", "lora", {"init_lora_weights": 1},
     ["init_lora_weights: expected true, false or an initialisation's name, found 1"], False),
    ("lora-dora-text", "lora", {"use_dora": "yes"}, ["use_dora: expected true or false, found 'yes'"], False),
    ("lora-alpha-pattern-text", "lora", {"alpha_pattern": {"v_proj": "x"}},
     ["alpha_pattern['v_proj']: expected a finite number > 0, found 'x'"], False),
    ("lora-targets-other-architecture", "lora", {"target_modules": ["c_attn"]},
     ["target_modules: ['c_attn'] does not select module model.layers.0.self_attn.q_proj (and 3 more modules), "
      "but the weights file holds its tensors", "target_modules: ['c_attn'] matches no module of the base model"], False),
    ("lora-targets-half", "lora", {"target_modules": ["q_proj"]},
     ["target_modules: ['q_proj'] does not select module model.layers.0.self_attn.v_proj"], False),
    ("lora-selects-modules-without-tensors", "lora",  # the rank of k_proj would come from r alone
     {"target_modules": ["q_proj", "v_proj", "k_proj"], "r": 100_000_000, "rank_pattern": {"q_proj": 4, "v_proj": 4}},
     ["target_modules: ['k_proj', 'q_proj', 'v_proj'] selects module model.layers.0.self_attn.k_proj (and 1 more "
      "modules), but the weights file holds no tensors for it"], False),
    ("lora-layer-replication-many", "lora", {"layer_replication": [[0, 2]] * 1000},
     ["layer_replication: builds 2000 layers, but the weights file holds tensors of 2"], False),
    ("lora-layer-replication-outside", "lora", {"layer_replication": [[0, 5]]},
     ["layer_replication: expected [start, end] pairs within the base model's 2 layers, found [[0, 5]]"], False),
    ("lora-megatron", "lora", {"megatron_config": {"tensor_model_parallel_size": 1}, "megatron_core": "antigravity"},
     ["megatron_config: set, but peft-audit does not load Megatron adapters", "'antigravity'"], False),
    ("lora-target-parameters", "lora", {"target_parameters": ["mlp.experts.gate_up_proj"]},
     ["target_parameters: set, but peft-audit cannot check adapters on parameters"], False),
    ("lora-targets-number", "lora", {"target_modules": 7}, ["target_modules: expected a list of module names, found 7"],
     False),
    ("lora-targets-bad-regex", "lora", {"target_modules": "q_proj("}, ["target_modules: 'q_proj(' is not a regular expression"],
     False),
    ("lora-layers-negative", "lora", {"layers_to_transform": [-1]}, ["layers_to_transform: expected a layer index"], False),
    ("lora-peft-type-lower-case", "lora", {"peft_type": "lora"}, ["peft_type: 'lora', but PEFT reads only 'LORA'"], False),
    ("lora-peft-rejects", "lora", {"layers_pattern": "layers"}, ["adapter_config.json: PEFT rejects it (ValueError"], False),
    ("lora-base-name-number", "lora", {"base_model_name_or_path": 123},
     ["base_model_name_or_path: expected a model name, found 123"], False),
    ("lora-base-name-other", "lora", {"base_model_name_or_path": "openai-community/gpt2"},
     ["base model name: the adapter was trained on 'openai-community/gpt2'"], True),
    ("lora-modules-to-save-unknown", "lora", {"modules_to_save": ["score"]},
     ["modules_to_save: ['score'] matches no module of the base model"], True),
    ("lora-trainable-tokens-outside-vocab", "lora", {"trainable_token_indices": [10**9]},
     ["trainable_token_indices: [1000000000], but the base model has 400 tokens"], False),
    ("lora-trainable-tokens-repeated", "lora", {"trainable_token_indices": [3] * 100_000},
     ["trainable_token_indices: 100000 ids, but only 1 distinct"], False),
    ("lora-trainable-tokens-negative", "lora", {"trainable_token_indices": [-1]},
     ["trainable_token_indices: expected a list of token ids"], False),
    ("lora-trainable-tokens-empty", "lora", {"trainable_token_indices": []}, ["trainable_token_indices: no ids"], False),
    ("lora-trainable-tokens-without-tensor", "lora", {"trainable_token_indices": [1, 2]},
     ["trainable_token_indices: 2 ids, but the weights file holds no trainable_tokens_delta tensor"], False),
    # IA3: sized by the base modules; what it targets must exist
    ("ia3-modules-to-save-without-tensors", "ia3", {"modules_to_save": ["q_proj"]},  # PEFT would copy both whole
     ["modules_to_save: ['q_proj'] selects module model.layers.0.self_attn.q_proj (and 1 more modules), but the "
      "weights file holds no tensors for it"], False),
    ("ia3-targets-other-architecture", "ia3", {"target_modules": ["c_attn", "c_fc"], "feedforward_modules": ["c_fc"]},
     ["target_modules: ['c_attn', 'c_fc'] matches no module of the base model"], False),
    ("ia3-feedforward-not-targeted", "ia3", {"feedforward_modules": ["lm_head"]}, ["PEFT rejects it (ValueError"],
     False),
    ("ia3-feedforward-number", "ia3", {"feedforward_modules": 3}, ["feedforward_modules: expected a list of module names"],
     False),
    # prompt tuning: an embedding table of num_virtual_tokens x num_transformer_submodules rows of token_dim
    ("prompt-tokens-huge", "prompt-tuning", {"num_virtual_tokens": 100_000_000},
     ["num_virtual_tokens: 100000000, but tensor prompt_embeddings has 5 rows"], False),
    ("prompt-tokens-zero", "prompt-tuning", {"num_virtual_tokens": 0},
     ["num_virtual_tokens: expected a whole number >= 1, found 0"], False),
    ("prompt-tokens-null", "prompt-tuning", {"num_virtual_tokens": None},
     ["num_virtual_tokens: missing; expected a whole number >= 1"], False),
    ("prompt-tokens-bool", "prompt-tuning", {"num_virtual_tokens": True},
     ["num_virtual_tokens: expected a whole number >= 1, found True"], False),
    ("prompt-token-dim-huge", "prompt-tuning", {"token_dim": 10**9},
     ["token_dim: 1000000000, but tensor prompt_embeddings is 32 wide"], False),
    ("prompt-token-dim-text", "prompt-tuning", {"token_dim": "32"}, ["token_dim: expected a whole number >= 1, found '32'"],
     False),
    ("prompt-submodules", "prompt-tuning", {"num_transformer_submodules": 2},
     ["num_virtual_tokens 5 x num_transformer_submodules 2, but tensor prompt_embeddings has 5 rows"], False),
    ("prompt-submodules-negative", "prompt-tuning", {"num_transformer_submodules": -1},
     ["num_transformer_submodules: expected a whole number >= 1, found -1"], False),
    ("prompt-modules-to-save-without-tensors", "prompt-tuning", {"modules_to_save": ["lm_head"]},
     ["modules_to_save: ['lm_head'] selects module lm_head, but the weights file holds no tensors for it"], False),
    ("prompt-num-layers", "prompt-tuning", {"num_layers": 1_000_000},
     ["num_layers: 1000000, but the base model has 2"], True),
    ("prompt-heads", "prompt-tuning", {"num_attention_heads": 7}, ["num_attention_heads: 7, but the base model has 4"],
     True),
    # P-tuning: the same table, plus the prompt encoder PEFT builds to train it
    ("p-tuning-tokens-huge", "p-tuning", {"num_virtual_tokens": 10**8},
     ["num_virtual_tokens: 100000000, but tensor prompt_embeddings has 5 rows"], False),
    ("p-tuning-encoder-huge", "p-tuning", {"encoder_hidden_size": 10**9},
     ["encoder_hidden_size: 1000000000 makes a prompt encoder of", "but the base model has"], False),
    ("p-tuning-encoder-300-digits", "p-tuning", {"encoder_hidden_size": 10**300},
     ["makes a prompt encoder of ~1e600 parameters"], False),
    ("p-tuning-encoder-text", "p-tuning", {"encoder_hidden_size": "16"},
     ["encoder_hidden_size: expected a whole number >= 1, found '16'"], False),
    ("p-tuning-lstm-layers", "p-tuning", {"encoder_reparameterization_type": "LSTM", "encoder_num_layers": 10**6},
     ["encoder_hidden_size: 16, encoder_num_layers: 1000000 (LSTM) makes a prompt encoder"], False),
    ("p-tuning-token-dim", "p-tuning", {"token_dim": 64}, ["token_dim: 64, but tensor prompt_embeddings is 32 wide"],
     False),
    # prefix tuning: num_layers x 2 key/value prefixes of token_dim (= head_dim x key/value heads: 8 x 2)
    ("prefix-layers-huge", "prefix-tuning", {"num_layers": 1_000_000},
     ["num_layers 1000000 x 2 x token_dim 16 = 32000000, but tensor prompt_embeddings is 64 wide"], False),
    ("prefix-token-dim-huge", "prefix-tuning", {"token_dim": 10**6},
     ["num_layers 2 x 2 x token_dim 1000000 = 4000000, but tensor prompt_embeddings is 64 wide"], False),
    ("prefix-heads-not-a-divisor", "prefix-tuning", {"num_attention_heads": 3},
     ["num_attention_heads: 3 does not divide token_dim 16"], False),
    ("prefix-heads-other", "prefix-tuning", {"num_attention_heads": 4},
     ["num_attention_heads: 4, but the base model has 2"], True),
    ("prefix-projection-huge", "prefix-tuning", {"prefix_projection": True, "encoder_hidden_size": 10**9},
     ["encoder_hidden_size: 1000000000 makes a prompt encoder"], False),
]


def _edited(adapter: Path, out: Path, edits: dict) -> Path:
    d = shutil.copytree(adapter, out)
    cfg = json.loads((d / "adapter_config.json").read_text())
    for key, value in edits.items():
        if value is DROP:
            cfg.pop(key, None)
        else:
            cfg[key] = value
    (d / "adapter_config.json").write_text(json.dumps(cfg))
    return d


@pytest.mark.parametrize("case, adapter, edits, expected, forceable", CASES, ids=[c[0] for c in CASES])
def test_a_hostile_config_value_fails_in_one_line_naming_key_and_values(
        adapter_dirs, tiny_model_dir, tmp_path, case, adapter, edits, expected, forceable):
    d = _edited(adapter_dirs[adapter], tmp_path / case, edits)
    res = check_compatibility(d, tiny_model_dir)
    assert not res.ok and res.status == "failed"
    assert all("\n" not in r for r in res.reasons)
    for text in expected:
        assert text in res.message(), res.message()
    forced = check_compatibility(d, tiny_model_dir, force=True)
    assert forced.ok is forceable, forced
    if forceable:
        assert any(w.startswith("--force: ignored") and expected[0] in w for w in forced.warnings)


@pytest.fixture(scope="module")
def more_adapters(adapter_dirs, adapter_saver, tiny_model_dir) -> dict[str, Path]:
    """Real adapters with the rarer keys: LoRA with rank_pattern, alpha_pattern and modules_to_save
    (the embedding copied); LoRA with trainable_token_indices; prompt tuning with modules_to_save."""
    from peft import LoraConfig, PromptTuningConfig

    configs = {
        "patterned": LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], rank_pattern={"v_proj": 2},
                                alpha_pattern={"v_proj": 4}, modules_to_save=["embed_tokens"], task_type="CAUSAL_LM"),
        "tokens": LoraConfig(r=4, target_modules=["q_proj"], trainable_token_indices=[1, 2, 3], task_type="CAUSAL_LM"),
        "prompt-saving-head": PromptTuningConfig(num_virtual_tokens=3, modules_to_save=["lm_head"], task_type="CAUSAL_LM"),
    }
    root = adapter_dirs["lora"].parent
    return {name: adapter_saver(tiny_model_dir, cfg, root / name) for name, cfg in configs.items()}


@pytest.fixture(scope="module")
def patterned_lora(more_adapters) -> Path:
    return more_adapters["patterned"]


@pytest.mark.parametrize("name, edits", [
    ("patterned", {}), ("patterned", {"target_modules": r".*\.(q_proj|v_proj)"}), ("patterned", {"target_modules": DROP}),
    ("tokens", {}), ("prompt-saving-head", {}),
], ids=["as-saved", "regex", "peft-default-targets", "trainable-tokens", "prompt-with-modules-to-save"])
def test_rarer_keys_and_target_spellings_fit(more_adapters, tiny_model_dir, tmp_path, name, edits):
    res = check_compatibility(_edited(more_adapters[name], tmp_path / "a", edits), tiny_model_dir)
    assert res.ok and res.reasons == [], res.reasons


def test_trainable_token_ids_must_match_the_delta_rows(more_adapters, tiny_model_dir, tmp_path):
    r = check_compatibility(_edited(more_adapters["tokens"], tmp_path / "a", {"trainable_token_indices": [1, 2, 3, 4]}),
                            tiny_model_dir)
    assert not r.ok and "trainable_token_indices: 4 ids, but tensor " in r.message() and "has shape [3, 32]" in r.message()


def test_all_linear_selects_modules_the_file_has_no_tensors_for(patterned_lora, tiny_model_dir, tmp_path):
    r = check_compatibility(_edited(patterned_lora, tmp_path / "a", {"target_modules": "all-linear"}), tiny_model_dir)
    assert not r.ok and "target_modules: 'all-linear' selects module model.layers.0.mlp.down_proj" in r.message()


def test_a_config_over_a_file_without_adapter_tensors_fails(adapter_dirs, tiny_model_dir, tmp_path):
    import torch
    from safetensors.torch import save_file

    d = shutil.copytree(adapter_dirs["lora"], tmp_path / "a")
    save_file({"unrelated": torch.zeros(1)}, d / "adapter_model.safetensors")
    r = check_compatibility(d, tiny_model_dir, force=True)
    assert not r.ok and "selects module model.layers.0.self_attn.q_proj (and 3 more modules), but the weights file holds no tensors" in r.message()


def test_rank_pattern_is_checked_against_each_module(patterned_lora, tiny_model_dir, tmp_path):
    r = check_compatibility(_edited(patterned_lora, tmp_path / "a", {"rank_pattern": {}}), tiny_model_dir, force=True)
    assert not r.ok and "adapter_config.json r: 4, but tensor " in r.message() and "v_proj.lora_A.weight has rank 2" in r.message()
    r = check_compatibility(_edited(patterned_lora, tmp_path / "b", {"rank_pattern": {"v_proj": 100_000}}), tiny_model_dir)
    assert not r.ok and "rank_pattern['v_proj']: 100000, but tensor" in r.message()


def test_a_resized_embedding_in_modules_to_save_is_a_misfit(patterned_lora, tiny_model_dir, tmp_path):
    from safetensors.torch import load_file, save_file
    import torch

    d = shutil.copytree(patterned_lora, tmp_path / "a")
    sd = load_file(d / "adapter_model.safetensors")
    key = next(k for k in sd if "embed_tokens" in k)
    sd[key] = torch.zeros(sd[key].shape[0] + 10, sd[key].shape[1])
    save_file(sd, d / "adapter_model.safetensors")
    r = check_compatibility(d, tiny_model_dir)
    assert not r.ok and f"tensor {key}: expected shape [{sd[key].shape[0] - 10}, 32]" in r.message()


def test_tensors_of_another_hidden_size_name_both_sizes(adapter_dirs, adapter_saver, tiny_model_dir):
    # a prompt-tuning adapter of the hidden-size-64 Llama, audited on the hidden-size-32 one
    wide = adapter_dirs["mismatched"].parent / "bases" / "tiny-llama-wide"
    d = adapter_saver(wide, "prompt-tuning", adapter_dirs["lora"].parent / "wide-prompt")
    r = check_compatibility(d, tiny_model_dir)
    assert not r.ok and "token_dim: 64, but the base model has 32" in r.message()
    assert "tensor prompt_embeddings: expected shape [5, 32], found [5, 64]" in r.message()


def _write_safetensors(path: Path, header: dict, data: bytes, length: int | None = None) -> None:
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw) if length is None else length) + raw + data)


@pytest.mark.parametrize("header, data, length", [
    ({"prompt_embeddings": {"dtype": "F32", "shape": [100_000_000, 32], "data_offsets": [0, 12_800_000_000]}},
     b"\0" * 640, None),
    ({"prompt_embeddings": {"dtype": "F32", "shape": [2**62, 2**62], "data_offsets": [0, 640]}}, b"\0" * 640, None),
    ({"prompt_embeddings": {"dtype": "F32", "shape": [5, 32], "data_offsets": [0, 640]}}, b"\0" * 640, 2**62),
], ids=["sizes-beyond-the-file", "overflowing-shape", "header-length-huge"])
def test_a_header_claiming_absurd_sizes_is_refused_unread(adapter_dirs, tiny_model_dir, tmp_path, header, data, length):
    d = shutil.copytree(adapter_dirs["prompt-tuning"], tmp_path / "a")
    _write_safetensors(d / "adapter_model.safetensors", header, data, length)
    r = check_compatibility(d, tiny_model_dir, force=True)
    assert not r.ok and r.status == "failed" and "adapter_model.safetensors: cannot read safetensors" in r.message()


@pytest.mark.parametrize("adapter, edits, tensors", [
    ("prompt-tuning", {"num_virtual_tokens": 1_000_000}, {"prompt_embeddings": [1_000_000, 32]}),
    ("lora", {}, {"an_extra_tensor": [1 << 28]}),  # 1 GiB, not on disk: PEFT ignores the name but reads the data
], ids=["consistent-but-huge-prompt", "gigabyte-extra-tensor"])
def test_a_weights_file_larger_than_the_base_model_is_refused(adapter_dirs, tiny_model_dir, tmp_path, adapter, edits,
                                                              tensors):
    from peft_audit.adapters import read_tensor_shapes

    d = _edited(adapter_dirs[adapter], tmp_path / "a", edits)
    header, offset = {}, 0
    for name, shape in {**{k: list(v) for k, v in read_tensor_shapes(d).items()}, **tensors}.items():
        n = 4 * math.prod(shape)
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + n]}
        offset += n
    _write_safetensors(d / "adapter_model.safetensors", header, b"")
    with open(d / "adapter_model.safetensors", "r+b") as f:  # a sparse file: the sizes hold, no disk is used
        f.seek(0, 2)
        f.truncate(f.tell() + offset)
    r = check_compatibility(d, tiny_model_dir, force=True)
    assert not r.ok and "values, but the base model has only" in r.message(), r.message()


@pytest.mark.parametrize("text, why", [
    ('{"peft_type": "LORA", "r": ' + "9" * 5000 + "}", "not valid JSON"),
    ("[" * 100_000 + "]" * 100_000, "not valid JSON"),
    ('{"peft_type": "LORA", "pad": "' + "x" * (17 << 20) + '"}', "more than the 16 MiB"),
], ids=["5000-digit-r", "nested", "17-MiB"])
def test_an_unreadable_config_fails_without_being_read_whole(adapter_dirs, tiny_model_dir, tmp_path, text, why):
    d = shutil.copytree(adapter_dirs["lora"], tmp_path / "a")
    (d / "adapter_config.json").write_text(text)
    r = check_compatibility(d, tiny_model_dir)
    assert not r.ok and r.status == "failed" and why in r.message() and "adapter_config.json" in r.message()


def test_run_and_audit_fail_the_adapter_before_any_model_loads(adapter_dirs, tiny_model_dir, tmp_path, monkeypatch):
    from peft_audit import pipeline
    from peft_audit.adapters import plan_audit
    from peft_audit.config import SweepConfig, VariantSpec
    from peft_audit.sweep.plan import expand

    def no_load(*a, **k):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr("peft_audit.models.load_base", no_load)
    monkeypatch.setattr("peft_audit.models.attach_adapter", no_load)
    d = _edited(adapter_dirs["lora"], tmp_path / "huge-r", {"r": 100_000_000})
    expected = "adapter_config.json r: 100000000, but tensor"
    # `run`: the variant fails (isolated, as any variant failure) in its first step, before the load
    cfg = SweepConfig(name="t", base_models=[str(tiny_model_dir)], methods=[], force_adapters=True,
                      variants=[VariantSpec(base_model=str(tiny_model_dir), method="lora", adapter=str(d))])
    pv = next(pv for pv in expand(cfg) if pv.spec.adapter)
    with pytest.raises(ValueError, match=f"adapter {d} does not fit base .*: {expected}"):
        pipeline.evaluate_variant(cfg, tmp_path / "run", pv, set(), sink=None)
    # `audit`: the adapter is recorded as failed and left out of the sweep, --force or not
    plan = plan_audit(str(tiny_model_dir), [str(d), str(adapter_dirs["lora"])], force=True)
    assert [o.status for o in plan.outcomes] == ["failed", "ok"] and expected in plan.outcomes[0].reason
    assert [v.adapter for v in plan.config.variants] == [str(adapter_dirs["lora"])]
