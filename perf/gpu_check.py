"""Study-scale check on one accelerator: an 8B-shaped model with random weights, no download.

Builds a Llama-3-8B-shaped model (hidden 4096, 32 layers, 32 heads / 8 key-value heads, MLP
14336; 7.0 B parameters with the bundled model's 49,152-token vocabulary, which it uses for
text) with random bf16 weights, and runs the project's own code paths on it:

1. BBQ log-likelihood scoring, shared-prefix vs naive (the built-in BBQ sample, cycled, each copy numbered): items/s,
   identical predictions and the largest log-prob difference between the two;
2. greedy generation of the built-in safety prompts (chat template) with the transformers
   backend at several batch sizes and at ``batch_size: auto`` (sized from free memory), with
   compiled decoding (static KV cache + ``torch.compile``, the sweep's ``compile: true``) on
   CUDA, and with vLLM where it is installed: new tokens/s of the base model, of one LoRA adapter
   and of 16 LoRA adapters served at once by one engine (multi-LoRA calls);
3. a LoRA (r 8) and a prompt-tuning (20 virtual tokens) variant: BBQ items/s and generation;
4. one LoRA training step (AdamW) on 8 x 512 tokens: seconds and peak memory;

and prints each rate against the hardware's limits: the bf16 matmul rate measured in the same
run, plus the datasheet peak and memory bandwidth when given (``--peak-tflops``,
``--bandwidth-tbs``; defaults are an H200's 989 TFLOP/s dense bf16 and 4.8 TB/s when the device
is named H200). A decode step reads every weight once, so its floor is
``parameter bytes / bandwidth``; a batch's tokens/s is bounded by
``batch / that floor`` and by ``peak / (2 * parameters)``.

Without a GPU, ``--small`` builds the same architecture at small dimensions (fp32 on the CPU) so
the script and every path it calls are exercised; its rates say nothing about a GPU.

    python perf/gpu_check.py                      # on a CUDA machine (a few minutes)
    python perf/gpu_check.py --small --device cpu # anywhere
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
import warnings

import torch

EIGHT_B = dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
               num_key_value_heads=8, max_position_embeddings=8192, rope_theta=500000.0)
SMALL = dict(hidden_size=256, intermediate_size=896, num_hidden_layers=4, num_attention_heads=8,
             num_key_value_heads=2, max_position_embeddings=2048, rope_theta=500000.0)
DATASHEETS = {"H200": (989.0, 4.8), "H100": (989.0, 3.35), "A100": (312.0, 2.0), "L40S": (362.0, 0.864)}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(device, fn):
    sync(device)
    t = time.perf_counter()
    out = fn()
    sync(device)
    return out, time.perf_counter() - t


def matmul_rate(device, dtype, n: int) -> float:
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    best = float("inf")
    for _ in range(5):
        _, s = timed(device, lambda: a @ b)
        best = min(best, s)
    return 2 * n**3 / best


def build_model(tokenizer, dims: dict, device, dtype):
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=len(tokenizer), tie_word_embeddings=False, **dims,
                      pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                      bos_token_id=tokenizer.bos_token_id)
    torch.manual_seed(0)
    with torch.device(device):
        model = LlamaForCausalLM(cfg).to(dtype)
    model.eval()  # random weights never pick EOS: every row decodes max_new_tokens, as a throughput check wants
    return model


def bbq_rates(model, tok, n_items: int, batch_size, device, naive: bool):
    from peft_audit.benchmarks.fairness import load_bbq
    from peft_audit.benchmarks.fairness.score import plain_prompt
    from peft_audit.models.scoring import score_continuations, score_continuations_naive

    from peft_audit.models.batching import scoring_batch_size
    from peft_audit.models.scoring import encode_pairs, prefix_groups, tree_extent

    sample = load_bbq("builtin").items
    items = list(itertools.islice(itertools.cycle(sample), n_items))
    # the sample is cycled: each copy is numbered, or the prefix-tree scorer would feed a
    # repeated prompt once and look faster than on real data
    prompts = [f"({k // len(sample)}) {plain_prompt(it)}" for k, it in enumerate(items)]
    conts = [[f" {a}" for a in it.answers] for it in items]
    encoded = encode_pairs(tok, prompts, conts)
    groups = prefix_groups(encoded)
    rows = scoring_batch_size(model, batch_size, rows=len(groups), **tree_extent(model, encoded, groups))
    # the scorer's batch_size counts prompts: the rows that fit, at the average prompts per row
    batch_size = rows if batch_size != "auto" else max(1, round(rows * n_items / len(groups)))
    score_continuations(model, tok, prompts[:batch_size], conts[:batch_size], batch_size=batch_size)  # warm-up
    shared, s_shared = timed(device, lambda: score_continuations(model, tok, prompts, conts, batch_size=batch_size))
    out = {"items": n_items, "batch_size": batch_size, "shared_items_per_s": n_items / s_shared}
    if naive:
        ref, s_naive = timed(device, lambda: score_continuations_naive(model, tok, prompts, conts,
                                                                        batch_size=batch_size * 3))
        pick = lambda row: max(range(len(row)), key=lambda i: (row[i], -i))  # noqa: E731
        out.update(naive_items_per_s=n_items / s_naive,
                   same_predictions=sum(pick(a) == pick(b) for a, b in zip(shared, ref)),
                   max_logprob_diff=max(abs(x - y) for a, b in zip(shared, ref) for x, y in zip(a, b)))
    return out


def generation_rate(model, tok, prompts, batch_size, max_new_tokens: int, device, compiled: bool = False):
    """New tokens/s of one timed run after a warm-up; with ``compiled``, the warm-up is a full
    batch of the same shape (it compiles the graphs the timed run replays) and its time is
    reported as ``warmup_s``."""
    from peft_audit.models.batching import generation_batch_size
    from peft_audit.models.generate import chat_input_ids, generate

    size = generation_batch_size(model, batch_size, prompt_tokens=max(len(chat_input_ids(tok, p)) for p in prompts),
                                 max_new_tokens=max_new_tokens, rows=len(prompts))
    warm = prompts[:size] if compiled else prompts[:2]
    _, warmup = timed(device, lambda: generate(model, tok, warm, max_new_tokens=max_new_tokens if compiled else 2,
                                                batch_size=size, compiled=compiled))
    out, secs = timed(device, lambda: generate(model, tok, prompts, max_new_tokens=max_new_tokens,
                                               batch_size=size, compiled=compiled))
    tokens = sum(g.n_new_tokens for g in out)
    return {"batch_size": size, "requested": batch_size, "compiled": compiled, "prompts": len(prompts),
            "new_tokens": tokens, "tokens_per_s": tokens / secs, "warmup_s": warmup}


def vllm_rate(model, tok, prompts, max_new_tokens: int, device, adapters: int = 16):
    """New tokens/s of the vLLM backend on the same random model (saved to a temporary folder,
    since vLLM loads from disk), through the project's own vLLM path: the base model, one LoRA
    adapter (r 8, random), and ``adapters`` of them served at once by one engine (multi-LoRA:
    :class:`~peft_audit.models.backends.vllm.VllmGroupEngine`, every adapter's rows in one call)."""
    import tempfile
    from pathlib import Path

    from peft import LoraConfig, get_peft_model

    from peft_audit.models.backends.vllm import VllmEngine, VllmGroupEngine, vllm_available
    from peft_audit.models.generate import _stop_ids

    if not vllm_available():
        return {"skipped": "vllm is not installed (pip install 'peft-audit[vllm]')"}
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as folder:
        base_dir = Path(folder) / "base"
        model.save_pretrained(base_dir)
        tok.save_pretrained(base_dir)
        dirs = []
        for k in range(adapters):
            torch.manual_seed(k)
            lora = get_peft_model(model, LoraConfig(task_type="CAUSAL_LM", r=8, init_lora_weights=False,
                                                    target_modules=["q_proj", "v_proj"]))
            lora.save_pretrained(Path(folder) / f"lora{k}")
            dirs.append(str(Path(folder) / f"lora{k}"))
            model = lora.unload()  # the base model again, its layers as before
        dtype = str(next(model.parameters()).dtype).removeprefix("torch.")
        context = min(4096, int(getattr(model.config, "max_position_embeddings", 4096) or 4096))
        engine = VllmEngine(base_dir, device=str(device), dtype=dtype, max_loras=adapters + 1, max_model_len=context)
        group = VllmGroupEngine(engine, tok, _stop_ids(model, tok))

        def rate(members: list) -> dict:
            t = time.perf_counter()
            out = group.generate_group(members, prompts, system_prompt=None, max_new_tokens=max_new_tokens,
                                       progress=lambda n: None)
            tokens = sum(g.n_new_tokens for g in out)
            return {"rows": len(out), "new_tokens": tokens, "tokens_per_s": tokens / (time.perf_counter() - t)}

        try:
            group.generate_group(dirs, prompts[:2], system_prompt=None, max_new_tokens=2,
                                 progress=lambda n: None)  # warm-up: every adapter loaded
            out = {"prompts": len(prompts), "base": rate([None]), "lora_1": rate(dirs[:1]),
                   f"lora_{adapters}": rate(dirs)}
        finally:
            engine.shutdown()
    return {**out, "tokens_per_s": out["base"]["tokens_per_s"], "new_tokens": out["base"]["new_tokens"]}


def lora_train_step(model, tok, device, rows: int, seq_len: int):
    from peft import LoraConfig, get_peft_model

    peft_model = get_peft_model(model, LoraConfig(task_type="CAUSAL_LM", r=8, target_modules=["q_proj", "v_proj"]))
    peft_model.train()
    opt = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=1e-4)
    ids = torch.randint(0, len(tok), (rows, seq_len), device=device)

    def step():
        loss = peft_model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    step()  # warm-up (optimizer state)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    _, secs = timed(device, step)
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None
    peft_model.eval()
    base = peft_model.unload()
    return base, {"rows": rows, "seq_len": seq_len, "seconds": secs, "peak_gib": peak}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--small", action="store_true", help="small dimensions (CPU smoke run)")
    ap.add_argument("--bbq-items", type=int, default=None)
    ap.add_argument("--bbq-batch", default="auto", help="a number, or auto (from free memory)")
    ap.add_argument("--gen-batches", nargs="*", default=None, help="numbers, or auto (from free memory)")
    ap.add_argument("--max-new-tokens", type=int, default=None)
    ap.add_argument("--peak-tflops", type=float, default=None, help="datasheet dense bf16 TFLOP/s")
    ap.add_argument("--bandwidth-tbs", type=float, default=None, help="datasheet memory TB/s")
    ap.add_argument("--json", default=None, help="also write the results here")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")

    from peft import PromptTuningConfig, get_peft_model

    from peft_audit.benchmarks.safety import builtin_prompts, over_refusal_prompts
    from peft_audit.models import load_tokenizer, resolve_model

    device = torch.device(args.device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    small = args.small or device.type != "cuda"
    dims = SMALL if small else EIGHT_B
    n_items = args.bbq_items or (60 if small else 2000)
    as_batch = lambda v: v if v == "auto" else int(v)  # noqa: E731
    bbq_batch = as_batch(args.bbq_batch)
    gen_batches = [as_batch(b) for b in args.gen_batches or ([16, 64, "auto"] if small else [16, 128, "auto"])]
    max_new = args.max_new_tokens or (16 if small else 256)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    sheet = next((v for k, v in DATASHEETS.items() if k in name), None)
    peak = args.peak_tflops or (sheet[0] if sheet else None)
    bandwidth = args.bandwidth_tbs or (sheet[1] if sheet else None)

    tok = load_tokenizer(resolve_model("smollm2-135m-instruct").path)
    t0 = time.perf_counter()
    model = build_model(tok, dims, device, dtype)
    n_params = sum(p.numel() for p in model.parameters())
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    mm = matmul_rate(device, dtype, 8192 if device.type == "cuda" else 1024)
    results: dict = {"device": name, "dtype": str(dtype).removeprefix("torch."), "small": small,
                     "parameters": n_params, "build_s": time.perf_counter() - t0, "matmul_flops": mm,
                     "versions": {m.__name__: m.__version__ for m in map(__import__, ("torch", "transformers", "peft"))}}
    print(f"{name}: {n_params / 1e9:.2f} B parameters ({results['dtype']}, {'small dimensions' if small else '8B-shaped'}), "
          f"built in {results['build_s']:.0f} s; measured {results['dtype']} matmul {mm / 1e12:.1f} TFLOP/s"
          + (f"; datasheet {peak:.0f} TFLOP/s, {bandwidth:.2f} TB/s" if peak else ""), flush=True)

    def against_limits(tokens_per_s: float, batch: int | None = None) -> str:
        flop_bound = mm / (2 * n_params)
        text = f"{tokens_per_s / flop_bound:.0%} of the measured-matmul bound ({flop_bound:,.0f} tokens/s)"
        if bandwidth and batch:
            mem_bound = batch / (weight_bytes / (bandwidth * 1e12))
            text += f"; memory bound at batch {batch}: {mem_bound:,.0f} tokens/s"
        return text

    results["bbq_base"] = bbq_rates(model, tok, n_items, bbq_batch, device, naive=True)
    b = results["bbq_base"]
    print(f"BBQ {n_items} items, batch {b['batch_size']} ({bbq_batch}): shared-prefix {b['shared_items_per_s']:.1f} items/s, naive "
          f"{b['naive_items_per_s']:.1f} items/s; same prediction {b['same_predictions']}/{n_items}, max |dlogp| "
          f"{b['max_logprob_diff']:.2e}; full BBQ (58,492 items) ~{58492 / b['shared_items_per_s'] / 60:.1f} min", flush=True)

    prompts = [p.prompt for p in builtin_prompts() + over_refusal_prompts()]
    results["generation_base"] = []
    n_gen = max(512 if device.type == "cuda" else 128, *[b for b in gen_batches if b != "auto"])
    gen_prompts = list(itertools.islice(itertools.cycle(prompts), n_gen))
    modes = [(bs, False) for bs in gen_batches] + ([("auto", True)] if device.type == "cuda" else [])
    for bs, compiled in modes:
        batch_prompts = gen_prompts if bs == "auto" else list(itertools.islice(itertools.cycle(prompts), max(bs, len(prompts))))
        r = generation_rate(model, tok, batch_prompts, bs, max_new, device, compiled=compiled)
        if compiled:
            results["generation_compiled"] = r
        else:
            results["generation_base"].append(r)
        how = f"batch {r['batch_size']}" + (" (auto)" if bs == "auto" else "") + (
            f", compiled (warm-up and compilation {r['warmup_s']:.0f} s)" if compiled else "")
        print(f"generation (transformers) {how}: {r['tokens_per_s']:,.0f} new tokens/s "
              f"({r['new_tokens']} tokens); {against_limits(r['tokens_per_s'], r['batch_size'])}", flush=True)
    vllm_prompts = gen_prompts
    results["generation_vllm"] = r = vllm_rate(model, tok, vllm_prompts, max_new, device)
    if "tokens_per_s" in r:
        print(f"generation (vllm) {r['prompts']} prompts: {r['tokens_per_s']:,.0f} new tokens/s "
              f"({r['new_tokens']} tokens); {against_limits(r['tokens_per_s'], r['prompts'])}", flush=True)
        for key in [k for k in r if k.startswith("lora_")]:
            m = r[key]
            print(f"generation (vllm, {key.removeprefix('lora_')} LoRA adapter(s) in one engine, {m['rows']} rows): "
                  f"{m['tokens_per_s']:,.0f} new tokens/s; {against_limits(m['tokens_per_s'], m['rows'])}", flush=True)
    else:
        print(f"generation (vllm): {r['skipped']}", flush=True)

    model, results["lora_train_step"] = lora_train_step(model, tok, device, 8, 512 if not small else 128)
    r = results["lora_train_step"]
    print(f"LoRA r8 training step, {r['rows']} x {r['seq_len']} tokens: {r['seconds']:.2f} s"
          + (f", peak {r['peak_gib']:.1f} GiB" if r["peak_gib"] is not None else ""), flush=True)

    from peft import LoraConfig

    for label, cfg in (("lora", LoraConfig(task_type="CAUSAL_LM", r=8, init_lora_weights=False)),
                       ("prompt-tuning", PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=20))):
        variant = get_peft_model(model, cfg).eval()
        bbq = bbq_rates(variant, tok, n_items // 2, bbq_batch, device, naive=False)
        gen = generation_rate(variant, tok, gen_prompts, "auto", max_new, device)
        results[f"variant_{label}"] = {"bbq": bbq, "generation": gen}
        print(f"{label} variant: BBQ {bbq['shared_items_per_s']:.1f} items/s; generation batch {gen['batch_size']}: "
              f"{gen['tokens_per_s']:,.0f} new tokens/s", flush=True)
        model = variant.unload() if label == "lora" else variant.get_base_model()
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=1, default=str)


if __name__ == "__main__":
    main()
