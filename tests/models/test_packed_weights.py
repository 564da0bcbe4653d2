"""Pre-packed oneDNN weights while evaluating on the CPU (``models/packed_weights.py``): they
give plain ``F.linear``'s numbers within float summation error, never serve a stale weight
(in-place updates, PEFT-style writes through ``.data``, a reloaded checkpoint), never reach
autograd, leave the modules as they were, and can be turned off."""

from __future__ import annotations

import pytest
import torch

from peft_audit.models import kernels, load_base, packed_weights
from peft_audit.models.generate import generate
from peft_audit.models.packed_weights import packed_linears
from peft_audit.models.scoring import score_continuations
from tiny_models import make_tiny_model

pytestmark = pytest.mark.skipif(not kernels.available(), reason="this torch has no oneDNN linear ops")


def _patched(model) -> list[str]:
    return [name for name, m in model.named_modules() if "forward" in vars(m)]


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.bfloat16, 3e-2)])
def test_same_numbers_as_plain_linear(dtype, tol):
    model = make_tiny_model("llama")[0].to(dtype)
    ids = torch.randint(0, model.config.vocab_size, (3, 7))
    with torch.no_grad():
        plain = model(input_ids=ids).logits.float()
        with packed_linears(model):
            assert len(_patched(model)) == 2 * 7 + 1  # every projection of both layers, and the head
            packed = model(input_ids=ids).logits.float()
    assert _patched(model) == []
    assert (packed - plain).abs().max().item() < tol


def test_uses_the_packed_kernel(monkeypatch):
    calls = []
    real = packed_weights._forward

    def counting(module, entry, x):
        calls.append(module)
        return real(module, entry, x)

    monkeypatch.setattr(packed_weights, "_forward", counting)
    model = make_tiny_model("llama")[0]
    with torch.no_grad(), packed_linears(model):
        model(input_ids=torch.tensor([[1, 2, 3]]))
    assert len(calls) == 15


def test_changed_weights_are_never_served_stale():
    model = make_tiny_model("llama")[0]
    proj = model.model.layers[0].mlp.down_proj
    x = torch.randn(4, proj.in_features)
    with torch.no_grad(), packed_linears(model):
        proj(x)
        proj.weight.add_(0.5)  # an in-place update inside the block
        assert torch.allclose(proj(x), torch.nn.functional.linear(x, proj.weight), atol=1e-5)
    # PEFT's merge adds its delta through .data, which leaves the version counter alone
    version = proj.weight._version
    proj.weight.data += 0.25
    assert proj.weight._version == version
    with torch.no_grad(), packed_linears(model):
        assert torch.allclose(proj(x), torch.nn.functional.linear(x, proj.weight), atol=1e-5)


def test_autograd_never_sees_a_packed_weight(monkeypatch):
    model = make_tiny_model("llama")[0]
    proj = model.model.layers[0].mlp.up_proj
    x = torch.randn(2, proj.in_features, requires_grad=True)
    monkeypatch.setattr(kernels, "packed_linear", lambda *a: pytest.fail("packed kernel used with autograd on"))
    with packed_linears(model):
        assert "forward" in vars(proj)
        out = proj(x)
    out.sum().backward()
    assert torch.equal(out, torch.nn.functional.linear(x, proj.weight))
    assert proj.weight.grad is not None
    assert torch.allclose(x.grad, proj.weight.sum(dim=0).expand_as(x).detach())


def test_a_reloaded_checkpoint_reuses_the_packed_copies(tiny_model_dir, monkeypatch):
    reorders = []
    real = kernels.reorder
    monkeypatch.setattr(kernels, "reorder", lambda w: reorders.append(w.shape) or real(w))
    ids = torch.tensor([[3, 4, 5, 6]])
    first = load_base(str(tiny_model_dir), device="cpu").model
    with torch.no_grad(), packed_linears(first):
        expected = first(input_ids=ids).logits
    packed_once = len(reorders)
    assert packed_once == 15
    second = load_base(str(tiny_model_dir), device="cpu").model
    with torch.no_grad(), packed_linears(second):
        assert torch.equal(second(input_ids=ids).logits, expected)
    assert len(reorders) == packed_once  # nothing packed again
    third = load_base(str(tiny_model_dir), device="cpu").model
    with torch.no_grad():
        third.model.layers[0].mlp.gate_proj.weight.mul_(2.0)  # changed after loading: its own copy
    with torch.no_grad(), packed_linears(third):
        changed = third(input_ids=ids).logits
    assert len(reorders) == packed_once + 1
    with torch.no_grad():
        assert torch.allclose(changed, third(input_ids=ids).logits, atol=1e-5)
    assert not torch.allclose(changed, expected, atol=1e-5)


def test_nested_blocks_leave_the_outer_one_patched():
    model = make_tiny_model("llama")[0]
    with packed_linears(model):
        outer = _patched(model)
        with packed_linears(model):
            pass
        assert _patched(model) == outer and outer
    assert _patched(model) == []


def test_off_switch_and_memory_guard(monkeypatch):
    model = make_tiny_model("llama")[0]
    monkeypatch.setenv(packed_weights.DISABLE_ENV, "0")
    with packed_linears(model):
        assert _patched(model) == []
    monkeypatch.setenv(packed_weights.DISABLE_ENV, "1")
    monkeypatch.setattr(packed_weights, "MEMORY_SHARE", 0.0)
    packed_weights._packed.clear()
    with packed_linears(model):
        assert _patched(model) == []  # the copies would not fit: plain kernels


def test_generation_and_scoring_match_plain_kernels(monkeypatch):
    """The pipeline's own paths: greedy answers equal, log-likelihoods within 1e-4."""
    model, tok = make_tiny_model("llama")
    prompts = ["hello there", "fox", "Who was forgetful in the story?", "sky", "Name a colour."]
    options = [[" yes", " no"], [" four", " five"], [" no"], [" blue", " grey"], [" red"]]
    packed = generate(model, tok, prompts, max_new_tokens=6, batch_size=3)
    packed_scores = score_continuations(model, tok, prompts, options, batch_size=2)
    monkeypatch.setenv(packed_weights.DISABLE_ENV, "off")
    plain = generate(model, tok, prompts, max_new_tokens=6, batch_size=3)
    plain_scores = score_continuations(model, tok, prompts, options, batch_size=2)
    assert [g.text for g in packed] == [g.text for g in plain]
    for a, b in zip(packed_scores, plain_scores):
        assert a == pytest.approx(b, abs=1e-4)
