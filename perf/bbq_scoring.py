"""Shared-prefix vs naive log-likelihood scoring of BBQ items: speed ratio and FLOP/s.

Scores the same N BBQ items (default 300; the built-in sample is cycled when it has fewer)
with the bundled SmolLM2-135M-Instruct twice:

* shared-prefix (peft_audit.models.scoring.score_continuations): each prompt once, its KV cache
  reused for the 3 options, vocabulary logits only at scored positions;
* naive (score_continuations_naive): every prompt+option as its own row, full logits -- what
  general-purpose harnesses do -- with the same batch size.

It checks that both pick the same option for every item, and prints items/s for both, the
ratio (target >= 3.0 on a 2-core CPU), tokens/s, the model FLOP/s this implies
(2 * parameters * tokens, Kaplan et al., 2020, "Scaling Laws for Neural Language Models",
sec. 2.1; attention-score FLOPs left out) and, for scale, the FLOP/s of a plain large fp32
matmul measured in the same run. Not a test: timings depend on the machine and its load.

    .venv/bin/python perf/bbq_scoring.py --n 300 --batch-size 16
"""

from __future__ import annotations

import argparse
import itertools
import time
import warnings


def matmul_flops(n: int = 2048, reps: int = 5, dtype=None) -> float:
    """FLOP/s of an n x n matmul (2 n^3 per product) in ``dtype`` (default fp32), best of ``reps``."""
    import torch

    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    torch.matmul(a, b)  # warm-up
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        torch.matmul(a, b)
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=300, help="items to score (built-in sample cycled)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from peft_audit.benchmarks.fairness import load_bbq
    from peft_audit.benchmarks.fairness.score import plain_prompt
    from peft_audit.models import load_base
    from peft_audit.models.scoring import encode_pairs, score_continuations, score_continuations_naive

    lm = load_base(args.model, device=args.device, dtype=torch.float32)
    model, tok = lm.model, lm.tokenizer
    items = list(itertools.islice(itertools.cycle(load_bbq("builtin").items), args.n))
    prompts = [plain_prompt(it) for it in items]
    conts = [[f" {a}" for a in it.answers] for it in items]
    n_params = sum(p.numel() for p in model.parameters())

    enc = encode_pairs(tok, prompts, conts)
    tokens_shared = sum(len(p) + sum(map(len, cs)) for p, cs in enc)
    tokens_naive = sum(len(p) * len(cs) + sum(map(len, cs)) for p, cs in enc)

    # Warm-up both paths (allocator, kernels) on a few items.
    score_continuations(model, tok, prompts[:4], conts[:4], batch_size=args.batch_size)
    score_continuations_naive(model, tok, prompts[:4], conts[:4], batch_size=args.batch_size)

    t, c = time.perf_counter(), time.process_time()
    shared = score_continuations(model, tok, prompts, conts, batch_size=args.batch_size)
    t_shared, c_shared = time.perf_counter() - t, time.process_time() - c
    t, c = time.perf_counter(), time.process_time()
    naive = score_continuations_naive(model, tok, prompts, conts, batch_size=args.batch_size)
    t_naive, c_naive = time.perf_counter() - t, time.process_time() - c
    mm = matmul_flops()

    pred_s = [max(range(3), key=lambda i: (r[i], -i)) for r in shared]
    pred_n = [max(range(3), key=lambda i: (r[i], -i)) for r in naive]
    same = sum(a == b for a, b in zip(pred_s, pred_n))
    max_diff = max(abs(a - b) for rs, rn in zip(shared, naive) for a, b in zip(rs, rn))

    print(f"model {args.model}: {n_params / 1e6:.1f}M parameters, fp32, device {args.device}, "
          f"torch threads {torch.get_num_threads()}, batch size {args.batch_size}, {len(items)} items")
    print(f"identical predictions: {same}/{len(items)}; max |logprob difference| {max_diff:.2e}")
    for name, secs, toks in (("shared-prefix", t_shared, tokens_shared), ("naive", t_naive, tokens_naive)):
        print(f"{name:>14}: {secs:7.1f} s  {len(items) / secs:7.2f} items/s  {toks / secs:8.0f} tokens/s  "
              f"{2 * n_params * toks / secs / 1e9:6.1f} GFLOP/s implied ({toks} tokens)")
    print(f"ratio (shared-prefix items/s / naive items/s): {t_naive / t_shared:.2f}  (target >= 3.0)")
    # On a shared machine wall time depends on other load; process CPU time is steadier.
    print(f"CPU-time ratio (naive CPU s / shared-prefix CPU s): {c_naive / c_shared:.2f}  "
          f"({c_naive:.1f} s / {c_shared:.1f} s)")
    print(f"plain 2048x2048 fp32 matmul: {mm / 1e9:.1f} GFLOP/s  "
          f"(shared-prefix reaches {2 * n_params * tokens_shared / t_shared / mm:.0%} of it, "
          f"naive {2 * n_params * tokens_naive / t_naive / mm:.0%})")
    if same != len(items):
        raise SystemExit("predictions differ between shared-prefix and naive scoring")


if __name__ == "__main__":
    main()
