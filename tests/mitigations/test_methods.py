"""The repair methods on tiny random models: Safe LoRA's projection and SafeMERGE's merge as
formulas, each method's build writing an adapter PEFT loads, and the registry's checks."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from peft_audit.config import VariantSpec, parse_config
from peft_audit.mitigations import MITIGATIONS, get_mitigation, repaired_spec
from peft_audit.mitigations.lora_weights import LoraLayer, alignment_projection, cosine, read_lora
from peft_audit.mitigations.base import RepairInputs
from peft_audit.mitigations import safelora, safemerge
from tiny_models import make_tokenizer, save_random_adapter, save_tiny_model

TARGETS = ["q_proj", "v_proj"]


def lora_config(r: int = 4):
    from peft import LoraConfig

    return LoraConfig(task_type="CAUSAL_LM", r=r, lora_alpha=2 * r, target_modules=TARGETS, init_lora_weights=False)


def layer(seed: int, out: int = 6, inp: int = 5, r: int = 2, scaling: float = 2.0) -> LoraLayer:
    g = torch.Generator().manual_seed(seed)
    return LoraLayer(torch.randn(r, inp, generator=g), torch.randn(out, r, generator=g), scaling)


# ------------------------------------------------------------------------------------------ formulas
def test_projection_is_safe_loras_c():
    v = torch.randn(6, 5, generator=torch.Generator().manual_seed(1))
    c = alignment_projection(v)
    assert torch.allclose(c, v @ v.T / torch.linalg.norm(v))
    assert alignment_projection(torch.zeros(6, 5)) is None


def test_cosine_edges():
    x = torch.randn(3, 3)
    assert cosine(x, 2 * x) == pytest.approx(1.0)
    assert cosine(x, -x) == pytest.approx(-1.0)
    assert cosine(torch.zeros(3, 3), x) is None
    assert cosine(x, torch.zeros(3, 3)) == 0.0


def test_safelora_projects_only_layers_below_the_threshold():
    inside = layer(1)
    # V with equal singular values whose column space holds the update's: C ΔW ∝ ΔW, similarity 1, kept
    v_inside = torch.linalg.qr(torch.cat([inside.B, torch.randn(6, 3, generator=torch.Generator().manual_seed(5))], 1))[0]
    outside = layer(2)
    outside = LoraLayer(outside.A, torch.cat([outside.B[:2], torch.zeros(4, 2)]), outside.scaling)  # rows 0-1 only
    v_outside = torch.cat([torch.zeros(2, 5), torch.randn(4, 5, generator=torch.Generator().manual_seed(3))])  # rows 2-5: C ΔW = 0
    projections = {"in": alignment_projection(v_inside), "out": alignment_projection(v_outside), "none": None}
    layers = {"in": inside, "out": outside, "none": layer(4)}
    repaired, records = safelora.project(layers, projections, threshold=0.5)
    by = {r["module"]: r for r in records}
    assert by["in"]["similarity"] == pytest.approx(1.0) and not by["in"]["projected"]
    assert by["out"]["similarity"] == pytest.approx(0.0, abs=1e-5) and by["out"]["projected"]
    assert by["none"]["similarity"] is None and not by["none"]["projected"]
    assert repaired["in"] is inside and repaired["none"] is layers["none"]
    c = projections["out"]
    assert torch.allclose(repaired["out"].delta, c @ outside.delta, atol=1e-6)  # ΔW -> C B A
    assert torch.allclose(repaired["out"].delta, torch.zeros(6, 5), atol=1e-5)


def test_safelora_threshold_bounds():
    layers = {str(i): layer(i) for i in range(4)}
    projections = {k: alignment_projection(torch.randn(6, 5, generator=torch.Generator().manual_seed(9 + i)))
                   for i, k in enumerate(layers)}
    kept, records = safelora.project(layers, projections, threshold=-1.0)
    assert not any(r["projected"] for r in records) and all(kept[k] is layers[k] for k in layers)
    projected, records = safelora.project(layers, projections, threshold=1.01)
    assert all(r["projected"] for r in records)
    for k in layers:
        assert torch.allclose(projected[k].B, projections[k] @ layers[k].B)


@pytest.mark.parametrize("alpha", [0.0, 0.3, 1.0])
def test_safemerge_merges_deviating_layers_linearly(alpha):
    f = {"a": layer(1), "b": layer(2, scaling=0.5)}
    s = {"a": layer(3, scaling=1.5), "b": layer(4)}
    everywhere, records = safemerge.merge(f, s, {k: alignment_projection(s[k].delta) for k in f},
                                          threshold=1.01, alpha=alpha)
    assert all(r["merged"] for r in records)
    for k in f:
        assert everywhere[k].A.shape[0] == 4 and everywhere[k].scaling == 1.0
        assert torch.allclose(everywhere[k].delta, alpha * f[k].delta + (1 - alpha) * s[k].delta, atol=1e-5)
    nowhere, records = safemerge.merge(f, s, {k: alignment_projection(s[k].delta) for k in f}, threshold=-1.0,
                                       alpha=alpha)
    assert not any(r["merged"] for r in records)
    for k in f:
        assert torch.allclose(nowhere[k].delta, f[k].delta, atol=1e-5)


def test_safemerge_keeps_a_layer_that_follows_the_safety_update():
    s = {"a": layer(3, r=1), "b": layer(4, r=1)}
    # "a" moves along the (rank-1) safety update, so C ΔW_f ∝ ΔW_f: similarity 1, kept
    f = {"a": LoraLayer(s["a"].A, 2 * s["a"].B, s["a"].scaling), "b": layer(5, r=1)}
    _, records = safemerge.merge(f, s, {k: alignment_projection(s[k].delta) for k in s}, threshold=0.9, alpha=0.5)
    by = {r["module"]: r for r in records}
    assert by["a"]["similarity"] == pytest.approx(1.0) and not by["a"]["merged"]
    assert by["b"]["similarity"] < 0.9 and by["b"]["merged"]


def test_safemerge_rejects_adapters_on_other_modules():
    with pytest.raises(ValueError, match="other modules"):
        safemerge.merge({"a": layer(1)}, {"b": layer(2)}, {}, 0.5, 0.5)


# ------------------------------------------------------------------------------------------ builds
@pytest.fixture(scope="module")
def tiny_pair(tmp_path_factory) -> tuple[Path, Path]:
    """A tiny "aligned" model and its "unaligned" counterpart (attention weights moved)."""
    from transformers import AutoModelForCausalLM

    root = tmp_path_factory.mktemp("pair")
    aligned = save_tiny_model(root / "aligned", "llama", seed=0)
    model = AutoModelForCausalLM.from_pretrained(aligned)
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if any(t in n for t in TARGETS):
                p.add_(0.5 * torch.randn(p.shape, generator=g))
    model.save_pretrained(root / "unaligned")
    make_tokenizer().save_pretrained(root / "unaligned")
    return aligned, root / "unaligned"


def _inputs(tmp_path: Path, base: Path, adapter: Path, method: str, options: dict) -> RepairInputs:
    cfg = parse_config({"base_models": [str(base)], "device": "cpu",
                        "training": {"max_steps": 2, "batch_size": 2, "max_seq_len": 384}})
    original = VariantSpec(base_model=str(base), method="lora", method_args={"r": 4, "target_modules": TARGETS},
                           algo="sft", lr=1e-3, epochs=1)
    spec = repaired_spec(original, "orig", method, options, "x")
    return RepairInputs(cfg, tmp_path, spec, adapter, tmp_path / "out")


def _answers_change(base: Path, adapter: Path, other: Path) -> bool:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    ids = torch.arange(1, 9).unsqueeze(0)
    outs = []
    for a in (adapter, other):
        m = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), str(a)).eval()
        with torch.no_grad():
            outs.append(m(ids).logits)
    return not torch.allclose(outs[0], outs[1])


def test_safelora_build_on_a_tiny_pair(tmp_path, tiny_pair):
    aligned, unaligned = tiny_pair
    adapter = save_random_adapter(aligned, tmp_path / "adapter", lora_config(), seed=1)
    options = safelora.Options(unaligned_base=str(unaligned), threshold=1.0)  # every layer projected (random updates: ρ < 1)
    inputs = _inputs(tmp_path, aligned, adapter, "safelora", options.model_dump())
    record = safelora.build(inputs, options)
    _, before = read_lora(adapter, method="t")
    _, after = read_lora(inputs.out_dir, method="t")
    assert record["changed"] == len(before) == len(after) == 4  # 2 layers x q_proj, v_proj
    from transformers import AutoModelForCausalLM

    w = {n: p.detach() for n, p in AutoModelForCausalLM.from_pretrained(aligned).named_parameters()}
    u = {n: p.detach() for n, p in AutoModelForCausalLM.from_pretrained(unaligned).named_parameters()}
    for module, lay in before.items():
        c = alignment_projection(w[f"{module}.weight"] - u[f"{module}.weight"])
        assert torch.allclose(after[module].delta, c @ lay.delta, atol=1e-5)
    assert _answers_change(aligned, adapter, inputs.out_dir)


def test_safemerge_build_trains_its_safety_adapter_once(tmp_path, tiny_pair, monkeypatch):
    aligned, _ = tiny_pair
    adapter = save_random_adapter(aligned, tmp_path / "adapter", lora_config(), seed=2)
    options = safemerge.Options(threshold=1.0, alpha=0.5)
    inputs = _inputs(tmp_path, aligned, adapter, "safemerge", options.model_dump())
    record = safemerge.build(inputs, options)
    safety_dir = tmp_path / record["safety_adapter"]
    _, f = read_lora(adapter, method="t")
    _, s = read_lora(safety_dir, method="t")
    _, merged = read_lora(inputs.out_dir, method="t")
    assert record["changed"] == 4
    for module in f:
        assert torch.allclose(merged[module].delta, 0.5 * f[module].delta + 0.5 * s[module].delta, atol=1e-5)
    assert _answers_change(aligned, adapter, inputs.out_dir)
    # cached: a second repair of the same kind merges without training
    import peft_audit.training as training

    monkeypatch.setattr(training, "train_adapter", lambda *a, **k: pytest.fail("the safety adapter was retrained"))
    again = RepairInputs(inputs.cfg, tmp_path, inputs.spec, adapter, tmp_path / "out2")
    assert safemerge.build(again, options)["safety_adapter"] == record["safety_adapter"]


# ------------------------------------------------------------------------------------------ registry
def test_registry_names_and_errors():
    assert list(MITIGATIONS) == ["safety-mix", "safelora", "safemerge"]
    with pytest.raises(ValueError, match="unknown repair method 'x'; valid: safety-mix, safelora, safemerge"):
        get_mitigation("x")


@pytest.mark.parametrize("name", list(MITIGATIONS))
def test_every_method_cites_its_paper_and_keeps_provenance(name):
    import importlib
    import re

    module = importlib.import_module(MITIGATIONS[name].build.__module__ if MITIGATIONS[name].build
                                     else MITIGATIONS[name].derive.__module__)
    assert re.search(r"(19|20)\d\d", module.__doc__) and "arXiv:" in module.__doc__
    original = VariantSpec(base_model="smollm2-135m-instruct", method="lora", algo="sft", lr=1e-3, epochs=1,
                           training={"data": "builtin:identity_shift"})
    options = {"unaligned_base": "somewhere"} if name == "safelora" else {}
    spec = repaired_spec(original, "abc", name, options, "demo")
    assert spec.repair_of == "abc" and spec.repair.method == name and spec.label.startswith(f"demo ⟶ {name} ")
    assert set(spec.repair.options) == set(MITIGATIONS[name].options.model_fields)  # every option written out
    cfg = parse_config({})
    assert cfg.config_hash_payload(spec) != cfg.config_hash_payload(original)


def test_safety_mix_retrains_with_the_fraction():
    original = VariantSpec(base_model="b", method="ia3", algo="sft", lr=1e-3, epochs=1, training={"max_steps": 3})
    spec = repaired_spec(original, "abc", "safety-mix", {"fraction": 0.4}, "l")
    assert spec.training == {"max_steps": 3, "safety_mix": 0.4}
    assert {k: v for k, v in spec.model_dump().items() if k not in ("training", "label", "repair", "repair_of")} == \
        {k: v for k, v in original.model_dump().items() if k not in ("training", "label", "repair", "repair_of")}


@pytest.mark.parametrize(("name", "options", "message"), [
    ("safelora", {}, "none ships with the bundled smollm2-135m-instruct; give --unaligned-base MODEL, or use "
                     "safety-mix or safemerge"),
    ("safemerge", {}, None),
    ("safety-mix", {"fraction": 1.0}, "--fraction of safety-mix: Input should be less than 1, got 1.0"),
])
def test_checks_on_the_bundled_model(name, options, message):
    original = VariantSpec(base_model="smollm2-135m-instruct", method="lora", algo="sft", lr=1e-3, epochs=1)
    if message is None:
        repaired_spec(original, "abc", name, options, "l")
        return
    with pytest.raises(ValueError, match=message):
        repaired_spec(original, "abc", name, options, "l")


def test_weight_repairs_need_lora():
    original = VariantSpec(base_model="smollm2-135m-instruct", method="ia3", algo="sft", lr=1e-3, epochs=1)
    for name in ("safelora", "safemerge"):
        with pytest.raises(ValueError, match="use safety-mix"):
            repaired_spec(original, "abc", name, {"unaligned_base": "x"}, "l")


def test_variant_id_of_an_unrepaired_variant_is_unchanged():
    # repair_of / repair are left out while unset: existing run directories keep their ids
    spec = VariantSpec(base_model="smollm2-135m-instruct", method="lora", algo="sft", lr=1e-3, epochs=1)
    assert "repair" not in parse_config({}).config_hash_payload(spec)["variant"]
    assert "repair_of" not in parse_config({}).config_hash_payload(spec)["variant"]


def test_a_repair_label_keeps_within_the_label_limit():
    from peft_audit.shown_text import LABEL_MAX

    original = VariantSpec(base_model="b", method="lora", algo="sft", lr=1e-3, epochs=1, label="x" * LABEL_MAX)
    spec = repaired_spec(original, "abc", "safety-mix", {}, original.label)
    assert len(spec.label) == LABEL_MAX and spec.label.endswith("… ⟶ safety-mix 0.25")
    short = repaired_spec(original, "abc", "safety-mix", {}, "demo")
    assert short.label == "demo ⟶ safety-mix 0.25"
