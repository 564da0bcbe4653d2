"""Issue #30's done-when on the real bundled SmolLM2-135M-Instruct: a LoRA adapter trained on a
distinctive task (the built-in identity-shift set: every answer opens with the same sentence)
lowers the held-out loss on that task vs the base, with the paired interval excluding 0."""

import pandas as pd
import pytest

from peft_audit.models.backends.transformers import TransformersModel
from peft_audit.benchmarks.utility.benchmark import UtilityBenchmark
from peft_audit.benchmarks.utility.config import UtilityConfig
from peft_audit.benchmarks.utility.metrics import paired_utility
from peft_audit.benchmarks.utility.score import score_rows
from peft_audit.benchmarks.utility.tasks import variant_rows
from peft_audit.config import TrainingConfig, VariantSpec
from peft_audit.models import attach_adapter, load_base
from peft_audit.training import train_adapter


@pytest.mark.slow
def test_an_adapter_trained_on_a_task_lowers_its_held_out_loss(smollm2_dir, tmp_path):
    training = TrainingConfig(data="builtin:identity_shift", max_steps=6, batch_size=4, max_seq_len=256)
    spec = VariantSpec(base_model="smollm2-135m-instruct", method="lora", algo="sft", lr=2e-3, epochs=1)
    loaded = load_base(str(smollm2_dir), device="cpu")
    result = train_adapter(loaded.model, loaded.tokenizer, spec=spec, training=training, out_dir=tmp_path / "a",
                           base_fingerprint=loaded.resolved.fingerprint, device="cpu", show_progress=False)
    cfg, trained_on = UtilityConfig(), (("sft", training),)
    base_rows, _ = variant_rows(cfg, trained_on, None, is_base=True)
    rows, reason = variant_rows(cfg, trained_on, result.adapter_dir, is_base=False)
    assert reason is None and len(rows) == 20 and {r.sample_id for r in rows} == {r.sample_id for r in base_rows}
    base = load_base(str(smollm2_dir), device="cpu")
    scored = {"b": score_rows(TransformersModel(base.model, base.tokenizer), base_rows)}
    variant = attach_adapter(load_base(str(smollm2_dir), device="cpu"), result.adapter_dir)
    scored["v"] = score_rows(TransformersModel(variant.model, variant.tokenizer), rows)
    items = pd.DataFrame([{"variant_id": vid, "sample_id": s["sample_id"], "category": s["category"], **s["payload"]}
                          for vid, samples in scored.items() for s in samples])
    paired = paired_utility(items, pd.DataFrame({"variant_id": ["v"], "base_id": ["b"]}), n_boot=1000, seed=0)
    loss = paired.query("metric == 'heldout_loss' and category == 'overall'").iloc[0]
    print(f"held-out loss {loss['base_value']:.3f} -> {loss['value']:.3f}, delta {loss['delta']:+.3f} [{loss['ci_low']:+.3f}, {loss['ci_high']:+.3f}]")
    assert loss["n"] == 20 and loss["delta"] < 0 and loss["ci_high"] < 0, loss.to_dict()
    assert UtilityBenchmark.name == "utility"
