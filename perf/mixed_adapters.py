"""Generation for several LoRA or IA3 variants of one base: one variant after another against
mixed batches on one loaded base (:mod:`peft_audit.models.shared_base`), measured in one run.

On the bundled SmolLM2-135M-Instruct (fp32) with the built-in safety prompts, it attaches
``--variants`` adapters of ``--method`` (LoRA: rank 8 on q/k/v/o; IA3: keys, values and the
MLP's down projection; random weights large enough to change the answers) and generates every
prompt for the base model and each adapter:

* ``alone``: one call per variant (its adapter active), at ``--batch-size`` rows;
* ``mixed``: one call for all of them, each row under its own adapter (LoRA: PEFT's
  ``adapter_names``; IA3: each row scaled by its own vectors), at ``--batch-size`` rows per
  variant (what a sweep's group uses).

The two alternate per repeat so machine drift hits both. It prints new tokens/s of each, their
ratio, and how many responses differ between them (a different batch shape may change float
summation; at most 1% may differ). Defaults are ``configs/sweep12.yaml``'s safety settings (one
prompt per category, 24 new tokens, batch 16); ``--prompts 135 --max-new-tokens 32
--batch-size 128`` gives the quickstart's. Not a test: timings depend on the machine.

    .venv/bin/python perf/mixed_adapters.py [--method lora|ia3] [--variants 4] [--prompts 11] [--repeats 3]
"""

from __future__ import annotations

import argparse
import time
import warnings

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--method", choices=["lora", "ia3"], default="lora")
    ap.add_argument("--variants", type=int, default=4, help="adapters besides the base model")
    ap.add_argument("--prompts", type=int, default=11, help="first N safety prompts, one per category by default")
    ap.add_argument("--max-new-tokens", type=int, default=24)
    ap.add_argument("--batch-size", type=int, default=16, help="rows per batch of one variant")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    from peft import IA3Config, LoraConfig, get_peft_model

    from peft_audit.benchmarks.safety import builtin_prompts
    from peft_audit.benchmarks.safety.config import SafetyConfig
    from peft_audit.models import load_base
    from peft_audit.models.generate import BASE_ROWS, generate

    loaded = load_base("smollm2-135m-instruct", device="cpu", dtype=torch.float32)
    tok = loaded.tokenizer
    by_category: dict[str, str] = {}
    for p in builtin_prompts():
        by_category.setdefault(p.category, p.prompt)
    prompts = list(by_category.values()) + [p.prompt for p in builtin_prompts() if p.prompt not in by_category.values()]
    prompts = prompts[: args.prompts]
    system = SafetyConfig().system_prompt
    if args.method == "lora":
        config = LoraConfig(task_type="CAUSAL_LM", r=8, lora_alpha=16,
                            target_modules=["q_proj", "k_proj", "v_proj", "o_proj"], init_lora_weights=False)
    else:
        config = IA3Config(task_type="CAUSAL_LM", target_modules=["k_proj", "v_proj", "down_proj"],
                           feedforward_modules=["down_proj"])
    model = None
    names = [f"v{k}" for k in range(args.variants)]
    for k, name in enumerate(names):
        torch.manual_seed(k)
        if model is None:
            model = get_peft_model(loaded.model, config, adapter_name=name)
        else:
            model.add_adapter(name, config)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.mul_(0.05)
            elif "ia3_l" in n:  # initialised to ones: draw each vector around them
                p.add_(0.1 * torch.randn_like(p))
    model.eval()
    members = [BASE_ROWS] + names
    kw = dict(system_prompt=system, max_new_tokens=args.max_new_tokens)
    print(f"{len(members)} variants (base + {args.variants} {args.method}) x {len(prompts)} prompts, max_new_tokens "
          f"{args.max_new_tokens}, batch {args.batch_size} per variant; torch threads {torch.get_num_threads()}",
          flush=True)

    def alone() -> list:
        out = []
        for name in members:
            if name == BASE_ROWS:
                with model.disable_adapter():
                    out += generate(model, tok, prompts, batch_size=args.batch_size, **kw)
            else:
                model.set_adapter(name)
                out += generate(model, tok, prompts, batch_size=args.batch_size, **kw)
        return out

    def mixed() -> list:
        return generate(model, tok, prompts * len(members), batch_size=args.batch_size * len(members),
                        adapter_names=[m for m in members for _ in prompts], **kw)

    mixed()  # warm-up
    rates: dict[str, list[float]] = {"alone": [], "mixed": []}
    outs = {}
    for rep in range(args.repeats):
        for name, fn in (("alone", alone), ("mixed", mixed)) if rep % 2 == 0 else (("mixed", mixed), ("alone", alone)):
            t0 = time.perf_counter()
            outs[name] = fn()
            secs = time.perf_counter() - t0
            tokens = sum(g.n_new_tokens for g in outs[name])
            rates[name].append(tokens / secs)
            print(f"repeat {rep}: {name}: {tokens} new tokens in {secs:5.1f} s = {tokens / secs:6.1f} tokens/s", flush=True)
    per_variant = [tuple(g.text for g in outs["alone"][k * len(prompts):(k + 1) * len(prompts)]) for k in range(len(members))]
    changed = sum(a != b for a, b in zip(per_variant[0], per_variant[1])) if len(members) > 1 else 0
    differ = sum(a.text != b.text for a, b in zip(outs["alone"], outs["mixed"]))
    med = {k: sorted(v)[len(v) // 2] for k, v in rates.items()}
    print(f"median: alone {med['alone']:.1f} tokens/s, mixed {med['mixed']:.1f} tokens/s: x{med['mixed'] / med['alone']:.2f}; "
          f"{differ}/{len(outs['alone'])} responses differ between them; the first adapter changes {changed}/{len(prompts)} "
          "of the base model's answers")


if __name__ == "__main__":
    main()
