"""Generation throughput of peft_audit.models.generate: batch 1 vs batched, on the bundled
SmolLM2-135M-Instruct. Prints new tokens per second for each and their ratio, per repeat
(batch 1 and batched alternate, so slow drift in machine load hits both), then the range.

    .venv/bin/python perf/generation_throughput.py [--prompts 16] [--batch-size 8] \
        [--max-new-tokens 64] [--repeats 3] [--threads N]
"""

from __future__ import annotations

import argparse
import time

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--prompts", type=int, default=16)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from peft_audit.benchmarks.safety import builtin_prompts
    from peft_audit.models import load_base
    from peft_audit.models.generate import generate

    t0 = time.perf_counter()
    loaded = load_base("smollm2-135m-instruct", device=args.device)
    print(f"load: {time.perf_counter() - t0:.1f} s on {loaded.device}, torch threads {torch.get_num_threads()}")
    prompts = [p.prompt for p in builtin_prompts()[: args.prompts]]
    generate(loaded.model, loaded.tokenizer, prompts[:2], max_new_tokens=4)  # warm-up
    ratios = []
    for rep in range(args.repeats):
        rates = {}
        for bs in (1, args.batch_size):
            t0 = time.perf_counter()
            out = generate(loaded.model, loaded.tokenizer, prompts, max_new_tokens=args.max_new_tokens, batch_size=bs)
            dt = time.perf_counter() - t0
            tokens = sum(g.n_new_tokens for g in out)
            rates[bs] = tokens / dt
            print(f"repeat {rep}: batch {bs:>2}: {tokens} new tokens in {dt:.1f} s = {rates[bs]:.1f} tokens/s")
        ratios.append(rates[args.batch_size] / rates[1])
        print(f"repeat {rep}: ratio batched/batch-1 = {ratios[-1]:.2f}x", flush=True)
    print(f"ratio batched/batch-1: median {sorted(ratios)[len(ratios) // 2]:.2f}x, "
          f"range {min(ratios):.2f}x-{max(ratios):.2f}x over {len(ratios)} repeats")

if __name__ == "__main__":
    main()
