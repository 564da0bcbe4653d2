"""End to end on the real bundled SmolLM2-135M-Instruct: each main method with SFT and DPO for a
few steps. SFT loss falls; DPO loss falls and the chosen-minus-rejected reward margin grows;
every saved adapter reloads with PEFT and generates.

The same small batch of two short rows is seen at every step (max_examples = batch_size), so a
decrease reflects optimisation rather than batch-to-batch noise, and a step stays cheap on a CPU.
"""

import json

import pytest

from peft_audit.config import TrainingConfig, VariantSpec
from peft_audit.models import load_base
from peft_audit.training import train_adapter

from conftest import reload_and_generate

LR = {"lora": 1e-3, "ia3": 1e-2, "prompt-tuning": 3e-2, "p-tuning": 1e-2}
STEPS = 4
ROWS = [
    {"prompt": "What is 7 + 5?", "response": "The answer is 12.", "chosen": "The answer is 12.", "rejected": "The answer is 15."},
    {"prompt": "Capital of France?", "response": "The capital of France is Paris.",
     "chosen": "The capital of France is Paris.", "rejected": "I don't know."},
]


@pytest.mark.slow
@pytest.mark.parametrize("algo", ["sft", "dpo"])
@pytest.mark.parametrize("method", list(LR))
def test_smollm2_trains_and_reloads(method, algo, smollm2_dir, tmp_path):
    loaded = load_base(str(smollm2_dir), device="cpu")
    spec = VariantSpec(base_model="smollm2-135m-instruct", method=method, algo=algo, lr=LR[method], epochs=1, seed=0,
                       method_args={"num_virtual_tokens": 8} if method in ("prompt-tuning", "p-tuning") else {})
    data = tmp_path / "rows.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    training = TrainingConfig(data=str(data), max_steps=STEPS, batch_size=2, max_seq_len=64, dpo_beta=0.1)
    result = train_adapter(loaded.model, loaded.tokenizer, spec=spec, training=training, out_dir=tmp_path / "ad",
                           base_fingerprint=loaded.resolved.fingerprint, device="cpu", show_progress=False)
    assert len(result.losses) == STEPS
    assert result.losses[-1] < result.losses[0], result.losses
    if algo == "dpo":
        margins = [h["rewards/margins"] for h in result.log_history]
        assert margins[-1] > margins[0], margins
    new_tokens, _ = reload_and_generate(smollm2_dir, result.adapter_dir, new_tokens=3)
    assert new_tokens.numel() == 3
