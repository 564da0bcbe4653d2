"""Tiny randomly initialised models of each architecture family, built in the test (no files
downloaded), with a small byte-level BPE tokenizer that carries a ChatML chat template.

They make unit tests run in seconds while exercising the same code paths as 7B models:
the family-specific module names (q_proj/gate_proj/...), chat templates, PEFT wrapping.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

CHATML = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

_CORPUS = [
    "The quick brown fox jumps over the lazy dog. What is two plus two? The answer is four.",
    "I cannot help with that request. I'm sorry, but I can't assist with that.",
    "Sure, here is a short poem about the sea and the sky. Context question answer unknown.",
    "The grandfather and the grandson were talking. Who was forgetful? Can't be determined.",
    "abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 0123456789 .,;:!?'\"()-[]{}<>/\\@#$%^&*+=_~`|",
]

FAMILIES = ("llama", "qwen2", "mistral", "gemma")


@lru_cache(maxsize=1)
def make_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(_CORPUS * 4, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>", bos_token=None, unk_token=None
    )
    fast.chat_template = CHATML
    return fast


def make_config(family: str, vocab_size: int):
    import transformers as tf

    common = dict(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=True,
    )
    cls = {
        "llama": tf.LlamaConfig,
        "qwen2": tf.Qwen2Config,
        "mistral": tf.MistralConfig,
        "gemma": tf.GemmaConfig,
    }[family]
    if family == "gemma":
        common["head_dim"] = 8
    return cls(**common)


def make_tiny_model(family: str = "llama", seed: int = 0):
    import torch
    from transformers import AutoModelForCausalLM

    tok = make_tokenizer()
    torch.manual_seed(seed)
    cfg = make_config(family, len(tok))
    cfg.eos_token_id = tok.eos_token_id
    cfg.pad_token_id = tok.pad_token_id
    model = AutoModelForCausalLM.from_config(cfg)
    model.eval()
    return model, tok


def make_lively_tiny_model(seed: int = 0, family: str = "llama"):
    """A tiny random model with larger weights, so its greedy output depends on the prompt."""
    import torch

    model, tok = make_tiny_model(family, seed=seed)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    return model, tok


def save_tiny_model(path: Path, family: str = "llama", seed: int = 0) -> Path:
    """Save a tiny model + tokenizer as a local checkpoint directory (loadable by name)."""
    model, tok = make_tiny_model(family, seed)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def save_lively_tiny_model(path: Path, seed: int = 0) -> Path:
    """:func:`make_lively_tiny_model` saved as a local checkpoint directory."""
    model, tok = make_lively_tiny_model(seed)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def save_random_adapter(model_dir: Path, out: Path, config, seed: int) -> Path:
    """A PEFT adapter of ``config`` on the model in ``model_dir`` whose trainable tensors (LoRA's
    B, prompt embeddings, IA3 vectors) are random, so it changes answers; saved to ``out``."""
    import torch
    from peft import get_peft_model

    from peft_audit.models import load_base

    torch.manual_seed(seed)
    peft_model = get_peft_model(load_base(str(model_dir), device="cpu").model, config)
    with torch.no_grad():
        for n, p in peft_model.named_parameters():
            if "lora_B" in n or "prompt_embeddings" in n or "ia3_l" in n:
                p.copy_(torch.randn_like(p))
    peft_model.save_pretrained(out)
    return out


def with_lora(model, specs: dict):
    """``model`` with a LoRA adapter per entry of ``specs`` (name -> (config, seed)), each drawn
    at random and scaled up so that it changes the answers."""
    import torch
    from peft import get_peft_model

    peft_model = None
    for name, (config, seed) in specs.items():
        torch.manual_seed(seed)
        if peft_model is None:
            peft_model = get_peft_model(model, config, adapter_name=name)
        else:
            peft_model.add_adapter(name, config)
    with torch.no_grad():
        for n, p in peft_model.named_parameters():
            if "lora_" in n:
                p.mul_(8.0)
    peft_model.eval()
    return peft_model


def mixed_lora_model():
    """Two LoRA adapters on different layers of a lively tiny model."""
    from peft import LoraConfig

    model, tok = make_lively_tiny_model()
    specs = {name: (LoraConfig(task_type="CAUSAL_LM", r=rank, lora_alpha=2 * rank, target_modules=targets,
                               init_lora_weights=False), seed)
             for name, (rank, targets, seed) in {"a": (4, ["q_proj", "v_proj"], 1), "b": (2, ["up_proj", "o_proj"], 2)}.items()}
    return with_lora(model, specs), tok


def mixed_ia3_model():
    """Two IA3 adapters, one with feed-forward scaling, on a lively tiny model."""
    import torch
    from peft import IA3Config, get_peft_model

    model, tok = make_lively_tiny_model()
    peft_model = get_peft_model(model, IA3Config(task_type="CAUSAL_LM", target_modules=["k_proj", "down_proj"],
                                                 feedforward_modules=["down_proj"]), adapter_name="a")
    peft_model.add_adapter("b", IA3Config(task_type="CAUSAL_LM", target_modules=["v_proj"], feedforward_modules=[]))
    torch.manual_seed(7)
    with torch.no_grad():
        for n, p in peft_model.named_parameters():
            if "ia3_l" in n:
                p.copy_(1 + 0.8 * torch.randn_like(p))
    return peft_model.eval(), tok


def prompt_learning_model(kind: str):
    """A prompt-tuning or prefix-tuning adapter (``kind``) with enlarged virtual tokens."""
    import torch
    from peft import PrefixTuningConfig, PromptTuningConfig, get_peft_model

    model, tok = make_lively_tiny_model()
    torch.manual_seed(11)
    config = (PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=5) if kind == "prompt-tuning"
              else PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=5))
    peft_model = get_peft_model(model, config)
    with torch.no_grad():
        for n, p in peft_model.named_parameters():
            if "prompt_encoder" in n:
                p.mul_(4.0)
    return peft_model.eval(), tok


#: name -> (model maker, the adapters a mixed batch cycles through or None; "__base__" is
#: ``generate.BASE_ROWS``, the rows without an adapter)
ADAPTER_CASES = {
    "base": (lambda: make_lively_tiny_model(), None),
    "mixed LoRA": (mixed_lora_model, ["a", "__base__", "b"]),
    "mixed IA3": (mixed_ia3_model, ["b", "a", "__base__"]),
    "prompt tuning": (lambda: prompt_learning_model("prompt-tuning"), None),
    "prefix tuning": (lambda: prompt_learning_model("prefix-tuning"), None),
}


def with_and_without(monkeypatch, module, name: str, run):
    """``run()`` twice: with ``module.name`` (a "which speed-up applies" function such as
    ``generate.screened_head``) as it is, asserting that it found one at every call, then with it
    answering None everywhere. Returns both results, for the test to compare."""
    real = getattr(module, name)
    used = []

    def spy(*args):
        found = real(*args)
        used.append(found is not None)
        return found

    monkeypatch.setattr(module, name, spy)
    applied = run()
    assert used and all(used)
    monkeypatch.setattr(module, name, lambda *args: None)
    return applied, run()
