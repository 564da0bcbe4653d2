"""Real PEFT adapters saved from the tiny models: one per method, plus broken ones."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from tiny_models import save_tiny_model

METHOD_CONFIGS = {
    "lora": lambda: __import__("peft").LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                                  task_type="CAUSAL_LM"),
    "ia3": lambda: __import__("peft").IA3Config(task_type="CAUSAL_LM"),
    "prompt-tuning": lambda: __import__("peft").PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=5),
    "p-tuning": lambda: __import__("peft").PromptEncoderConfig(task_type="CAUSAL_LM", num_virtual_tokens=5,
                                                               encoder_hidden_size=16),
    "prefix-tuning": lambda: __import__("peft").PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=5),
}


def save_adapter(base_dir: Path, method: str | Any, out: Path, **save_kw) -> Path:
    """Save a real PEFT adapter of ``method`` (a name in :data:`METHOD_CONFIGS`, or a PEFT config) on ``base_dir``."""
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(base_dir))
    peft_model = get_peft_model(model, METHOD_CONFIGS[method]() if isinstance(method, str) else method)
    peft_model.save_pretrained(str(out), **save_kw)
    return out


def _wide_llama(path: Path) -> Path:
    """A tiny Llama with hidden size 64 instead of 32 (the 'different base model')."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    from tiny_models import make_tokenizer

    tok = make_tokenizer()
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True)
    model = AutoModelForCausalLM.from_config(cfg)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def adapter_saver():
    """:func:`save_adapter`, for tests that build an adapter of their own config."""
    return save_adapter


@pytest.fixture(scope="session")
def adapter_dirs(tmp_path_factory, tiny_model_dir) -> dict[str, Path]:
    """name -> adapter dir. Good: the five methods on ``tiny_model_dir``. Bad: ``mismatched``
    (LoRA of a hidden-size-64 Llama), ``corrupt`` (truncated safetensors), ``unknown_type``
    (peft_type VERY_NEW_TUNING), ``pickle_only`` (LoRA saved as adapter_model.bin)."""
    root = tmp_path_factory.mktemp("adapters")
    dirs = {m: save_adapter(tiny_model_dir, m, root / m) for m in METHOD_CONFIGS}
    wide = _wide_llama(root / "bases" / "tiny-llama-wide")
    dirs["mismatched"] = save_adapter(wide, "lora", root / "mismatched")
    corrupt = shutil.copytree(dirs["lora"], root / "corrupt")
    st = corrupt / "adapter_model.safetensors"
    st.write_bytes(st.read_bytes()[: st.stat().st_size // 2])
    dirs["corrupt"] = corrupt
    unknown = shutil.copytree(dirs["lora"], root / "unknown_type")
    cfg = json.loads((unknown / "adapter_config.json").read_text())
    cfg["peft_type"] = "VERY_NEW_TUNING"
    (unknown / "adapter_config.json").write_text(json.dumps(cfg))
    dirs["unknown_type"] = unknown
    dirs["pickle_only"] = save_adapter(tiny_model_dir, "lora", root / "pickle_only", safe_serialization=False)
    return dirs
