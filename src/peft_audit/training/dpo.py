"""Direct Preference Optimization with TRL's ``DPOTrainer`` and a PEFT adapter.

Loss (Rafailov et al., 2023, "Direct Preference Optimization: Your Language Model is Secretly a
Reward Model", arXiv:2305.18290, Eq. 7):

    L = -log sigmoid( beta * [ (log pi(y_w|x) - log ref(y_w|x)) - (log pi(y_l|x) - log ref(y_l|x)) ] )

with log pi(y|x) the sum of completion-token log-probabilities. The reference is the same model
with the adapter disabled (TRL's ``use_adapter(..., None)``), so no second copy is held.

Prompt-learning methods (prompt tuning, P-tuning) prepend ``num_virtual_tokens`` positions to
the model's outputs. TRL 1.16 keeps the last ``seq_len - 1`` per-token log-probs
(``outputs.log_probs[:, -seq_len:]`` on the shifted mask), i.e. drops the virtual positions, and
PEFT pads the labels with -100 for them; ``tests/training/test_dpo_logps.py`` checks this against
a hand computation, so no wrapper is needed. Prefix tuning adds no output positions.

Note for prompt-learning methods: "adapter disabled" removes the virtual tokens, and a freshly
initialised soft prompt already changes the model, so at step 0 the policy differs from the
reference (initial loss != log 2, rewards != 0), unlike LoRA (B = 0) and IA3 (scales = 1).
"""

from __future__ import annotations

from typing import Any


def to_trl_rows(rows: list[dict[str, Any]], conversational: bool) -> list[dict[str, Any]]:
    """Canonical preference rows -> TRL prompt/chosen/rejected rows."""
    out = []
    for r in rows:
        if conversational:
            out.append({
                "prompt": [{"role": "user", "content": r["prompt"]}],
                "chosen": [{"role": "assistant", "content": r["chosen"]}],
                "rejected": [{"role": "assistant", "content": r["rejected"]}],
            })
        else:
            prompt = f"User: {r['prompt']}\nAssistant: "
            out.append({"prompt": prompt, "chosen": r["chosen"], "rejected": r["rejected"]})
    return out


def make_dpo_trainer(model, tokenizer, peft_config, rows, common_args: dict[str, Any], max_seq_len: int, beta: float, callbacks):
    """A ``DPOTrainer`` that wraps ``model`` with ``peft_config``; reference = adapter disabled."""
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    conversational = bool(getattr(tokenizer, "chat_template", None))
    args = DPOConfig(**common_args, max_length=max_seq_len, beta=beta, dataset_num_proc=None)
    return DPOTrainer(
        model=model,
        ref_model=None,
        args=args,
        train_dataset=Dataset.from_list(to_trl_rows(rows, conversational)),
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=callbacks,
    )


def dpo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta: float):
    """Per-pair DPO loss and implicit rewards (Rafailov et al., 2023, Eq. 7; rewards Sec. 5).

    Inputs are summed completion log-probabilities (tensors of shape [batch]); returns
    (loss [batch], chosen_reward [batch], rejected_reward [batch]) with reward = beta * log-ratio.
    """
    import torch.nn.functional as F

    chosen_reward = beta * (policy_chosen - ref_chosen)
    rejected_reward = beta * (policy_rejected - ref_rejected)
    return -F.logsigmoid(chosen_reward - rejected_reward), chosen_reward, rejected_reward
