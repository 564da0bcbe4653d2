"""Architecture matrix: 4 tiny families x 5 methods x 2 algorithms train 2 steps, the saved
adapter reloads with PEFT and generates."""

import json

import pytest
import torch

from peft_audit.config import ALGOS, METHODS, VariantSpec
from peft_audit.models import load_base
from peft_audit.training import PROVENANCE_FILE, train_adapter
from tiny_models import FAMILIES

from conftest import reload_and_generate


@pytest.mark.parametrize("algo", ALGOS)
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("family", FAMILIES)
def test_trains_saves_reloads_generates(family, method, algo, tiny_family_dirs, quick_training, tmp_path):
    base_dir = tiny_family_dirs[family]
    loaded = load_base(str(base_dir), device="cpu")
    spec = VariantSpec(base_model=str(base_dir), method=method, algo=algo, lr=1e-2, epochs=1, seed=0)
    result = train_adapter(
        loaded.model, loaded.tokenizer, spec=spec, training=quick_training, out_dir=tmp_path / "adapter",
        base_fingerprint=loaded.resolved.fingerprint, device="cpu", show_progress=False,
    )
    files = {p.name for p in result.adapter_dir.iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", PROVENANCE_FILE} <= files
    assert len(result.losses) == 2 and all(torch.isfinite(torch.tensor(result.losses)))
    assert json.loads((result.adapter_dir / "adapter_config.json").read_text())["peft_type"] == {
        "lora": "LORA", "ia3": "IA3", "prompt-tuning": "PROMPT_TUNING", "p-tuning": "P_TUNING",
        "prefix-tuning": "PREFIX_TUNING",
    }[method]

    new_tokens, model = reload_and_generate(base_dir, result.adapter_dir)
    assert new_tokens.numel() == 4
    # The reloaded adapter changes the model's output (its trained weights were applied).
    ids = torch.tensor([[5, 6, 7, 8, 9]])
    with torch.no_grad():
        with_adapter = model(input_ids=ids).logits[:, -1]
        with model.disable_adapter():
            without = model(input_ids=ids).logits[:, -1]
    assert not torch.allclose(with_adapter, without)
