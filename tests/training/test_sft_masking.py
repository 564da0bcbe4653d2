"""SFT: the chat template is applied and only assistant tokens carry loss (prompt labels -100)."""

import torch

from peft_audit.config import TrainingConfig, VariantSpec
from peft_audit.methods import build_peft_config
from peft_audit.training.sft import make_sft_trainer
from peft_audit.training.train import _common_args
from tiny_models import make_tiny_model


def _first_batch(rows, tmp_path, max_seq_len=384):
    model, tok = make_tiny_model("llama")
    spec = VariantSpec(base_model="tiny", method="lora", algo="sft", lr=1e-3, epochs=1)
    common = _common_args(spec, TrainingConfig(batch_size=len(rows)), torch.device("cpu"), tmp_path, False)
    trainer = make_sft_trainer(model, tok, build_peft_config("lora", model, {}), rows, common, max_seq_len, [])
    # The trainer's own (shuffled) dataloader and collator: what training actually sees.
    return next(iter(trainer.get_train_dataloader())), tok


def test_only_assistant_tokens_have_labels(tmp_path):
    rows = [
        {"prompt": "What is two plus two?", "response": "The answer is four."},
        {"messages": [
            {"role": "user", "content": "Say hello"}, {"role": "assistant", "content": "Sure, here is a poem."},
            {"role": "user", "content": "Another"}, {"role": "assistant", "content": "I cannot help with that."},
        ]},
    ]
    batch, tok = _first_batch(rows, tmp_path)
    learned = set()
    for ids, labels, attn in zip(batch["input_ids"], batch["labels"], batch["attention_mask"]):
        text = tok.decode(ids)
        assert "<|im_start|>assistant\n" in text  # chat template applied
        target = tok.decode(ids[labels != -100])
        learned.add(target)
        # Every prompt token (user turns, role headers, earlier assistant turns) is masked.
        assert "user" not in target and "<|im_start|>" not in target
        first = int((labels != -100).nonzero()[0])
        assert (labels[:first] == -100).all()
        assert tok.decode(ids[:first]).endswith("<|im_start|>assistant\n")
        # Padding carries no loss either.
        assert (labels[attn == 0] == -100).all()
    assert learned == {"The answer is four.<|im_end|>\n", "I cannot help with that.<|im_end|>\n"}


def test_max_seq_len_truncates(tmp_path):
    rows = [{"prompt": "Hi", "response": "answer " * 100}]
    batch, _ = _first_batch(rows, tmp_path, max_seq_len=32)
    assert batch["input_ids"].shape[1] == 32
