from pathlib import Path

import pytest


def reload_and_generate(base_dir: Path, adapter_dir: Path, prompt: str = "What is two plus two?", new_tokens: int = 4):
    """Load a fresh base, attach the saved adapter with PEFT and greedily generate; returns the new token ids."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(base_dir))
    base = AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=torch.float32)
    model = PeftModel.from_pretrained(base, str(adapter_dir))
    model.eval()
    enc = tok.apply_chat_template(
        [{"role": "user", "content": prompt}], add_generation_prompt=True, return_dict=True, return_tensors="pt"
    )
    with torch.no_grad():
        out = model.generate(
            input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], max_new_tokens=new_tokens,
            min_new_tokens=new_tokens, do_sample=False, pad_token_id=tok.pad_token_id or tok.eos_token_id,
        )
    return out[0, enc["input_ids"].shape[1]:], model


@pytest.fixture
def quick_training():
    from peft_audit.config import TrainingConfig

    return TrainingConfig(max_steps=2, batch_size=2, max_seq_len=64, max_examples=8)
