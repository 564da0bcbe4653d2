"""DPO log-probabilities are taken on the right positions, also for prompt-learning methods that
prepend virtual tokens: compare TRL's logged logps/rewards with an explicit forward pass."""

import pytest
import torch

from peft_audit.config import TrainingConfig, VariantSpec
from peft_audit.methods import build_peft_config
from peft_audit.training.dpo import dpo_loss, make_dpo_trainer
from peft_audit.training.train import _common_args
from tiny_models import make_tiny_model

ROWS = [
    {"prompt": "What is two plus two?", "chosen": "The answer is four.", "rejected": "The answer is five, I think."},
    {"prompt": "Say sorry", "chosen": "I'm sorry.", "rejected": "No."},
]
BETA = 0.5


def _hand_logps(model, batch, num_virtual_tokens: int) -> torch.Tensor:
    """Sum of completion-token log-probs per sequence from an explicit forward of the PeftModel.

    Prompt-learning outputs have ``num_virtual_tokens`` extra leading positions; drop them so
    position t predicts token t+1 of the real input (prefix tuning adds none).
    """
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    logits = logits[:, num_virtual_tokens:, :]
    assert logits.shape[1] == batch["input_ids"].shape[1]
    logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    target = batch["input_ids"][:, 1:]
    token_logp = logp.gather(-1, target.unsqueeze(-1)).squeeze(-1)
    return (token_logp * batch["completion_mask"][:, 1:]).sum(dim=1)


@pytest.mark.parametrize("method,virtual", [("prompt-tuning", 6), ("p-tuning", 6), ("prefix-tuning", 0), ("lora", 0)])
def test_trainer_logps_match_hand_computation(method, virtual, tmp_path):
    torch.manual_seed(0)
    model, tok = make_tiny_model("llama")
    spec = VariantSpec(base_model="tiny", method=method, algo="dpo", lr=1e-2, epochs=1)
    common = _common_args(spec, TrainingConfig(batch_size=2), torch.device("cpu"), tmp_path, False)
    args = {"r": 4} if method == "lora" else {"num_virtual_tokens": 6}
    peft_config = build_peft_config(method, model, args)
    trainer = make_dpo_trainer(model, tok, peft_config, ROWS, common, 128, BETA, [])
    peft_model = trainer.model
    if method == "lora":
        # Fresh LoRA is an identity (B = 0); perturb it so policy and reference differ.
        with torch.no_grad():
            for name, p in peft_model.named_parameters():
                if "lora_B" in name:
                    p.normal_(0, 0.5)
    batch = next(iter(trainer.get_train_dataloader()))
    peft_model.train()  # TRL disabled dropout; "train" mode selects the metrics bucket
    with torch.no_grad():
        trainer.compute_loss(peft_model, dict(batch))
        metrics = {k: v[-1] for k, v in trainer._metrics["train"].items()}

        policy = _hand_logps(peft_model, batch, virtual)
        with peft_model.disable_adapter():
            reference = _hand_logps(peft_model, batch, 0)
    pc, pr = policy.chunk(2)
    rc, rr = reference.chunk(2)
    _, chosen_reward, rejected_reward = dpo_loss(pc, pr, rc, rr, BETA)

    assert metrics["logps/chosen"] == pytest.approx(pc.mean().item(), rel=1e-4, abs=1e-4)
    assert metrics["logps/rejected"] == pytest.approx(pr.mean().item(), rel=1e-4, abs=1e-4)
    # Rewards use the adapter-disabled base as reference (no second model copy).
    assert trainer.ref_model is None
    assert metrics["rewards/chosen"] == pytest.approx(chosen_reward.mean().item(), rel=1e-4, abs=1e-4)
    assert metrics["rewards/rejected"] == pytest.approx(rejected_reward.mean().item(), rel=1e-4, abs=1e-4)
    # The check can fail: the policy differs from the reference, and a misaligned slice differs from both.
    assert not torch.allclose(policy, reference)
    if virtual:
        logits = peft_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.detach()
        shifted = torch.log_softmax(logits[:, : batch["input_ids"].shape[1]][:, :-1], -1)
        wrong = (shifted.gather(-1, batch["input_ids"][:, 1:, None]).squeeze(-1) * batch["completion_mask"][:, 1:]).sum(1)
        assert not torch.allclose(wrong, policy, atol=1e-3)


def test_dpo_loss_formula():
    z = torch.zeros(3)
    loss, rc, rr = dpo_loss(z, z, z, z, 0.1)
    assert torch.allclose(loss, torch.full((3,), 0.6931471805599453))
    loss, rc, rr = dpo_loss(torch.tensor([-1.0]), torch.tensor([-5.0]), torch.tensor([-2.0]), torch.tensor([-2.0]), 0.5)
    assert rc.item() == pytest.approx(0.5) and rr.item() == pytest.approx(-1.5)
    assert loss.item() == pytest.approx(-torch.nn.functional.logsigmoid(torch.tensor(2.0)).item())
