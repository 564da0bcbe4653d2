import pytest
import torch

from tiny_models import FAMILIES, make_tiny_model


@pytest.mark.parametrize("family", FAMILIES)
def test_tiny_model_forward_and_chat_template(family):
    model, tok = make_tiny_model(family)
    enc = tok.apply_chat_template([{"role": "user", "content": "hi"}], add_generation_prompt=True, return_dict=True, return_tensors="pt")
    out = model(**enc)
    assert out.logits.shape[-1] == len(tok)
    assert torch.isfinite(out.logits).all()
