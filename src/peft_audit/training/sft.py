"""Supervised fine-tuning with TRL's ``SFTTrainer``: chat template applied, loss on the assistant
completion only, no packing, sequences truncated to ``max_seq_len``.

Rows are turned into TRL's conversational prompt/completion format (``prompt`` = every message
before the learned assistant turn, ``completion`` = that turn). TRL then builds a
``completion_mask`` and the collator sets the labels of prompt tokens (and padding) to -100, so
only assistant tokens carry loss. Tokenizers without a chat template get a plain
``User: ...\\nAssistant: `` prompt instead.
"""

from __future__ import annotations

from typing import Any


def to_trl_rows(rows: list[dict[str, Any]], conversational: bool) -> list[dict[str, Any]]:
    """Canonical SFT rows -> TRL prompt/completion rows (conversational or plain text)."""
    out = []
    for r in rows:
        if "messages" in r:
            prompt_msgs, completion_msgs = r["messages"][:-1], r["messages"][-1:]
        else:
            prompt_msgs = [{"role": "user", "content": r["prompt"]}]
            completion_msgs = [{"role": "assistant", "content": r["response"]}]
        if conversational:
            out.append({"prompt": prompt_msgs, "completion": completion_msgs})
        else:
            prompt = "".join(f"{m['role'].capitalize()}: {m['content']}\n" for m in prompt_msgs) + "Assistant: "
            out.append({"prompt": prompt, "completion": completion_msgs[0]["content"]})
    return out


def make_sft_trainer(model, tokenizer, peft_config, rows, common_args: dict[str, Any], max_seq_len: int, callbacks):
    """An ``SFTTrainer`` that wraps ``model`` with ``peft_config`` (no second model copy)."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    conversational = bool(getattr(tokenizer, "chat_template", None))
    args = SFTConfig(
        **common_args,
        max_length=max_seq_len,
        packing=False,
        completion_only_loss=True,
        assistant_only_loss=False,  # needs {% generation %} markers in the template; the completion mask does it
        dataset_num_proc=None,
    )
    return SFTTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(to_trl_rows(rows, conversational)),
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=callbacks,
    )
