"""Greedy generation throughput at the quickstart's settings: today's loop vs the implementation
before it, and both against the machine's compute bound, measured in one run.

On the bundled SmolLM2-135M-Instruct (fp32) with the built-in safety and over-refusal prompts
(``configs/quickstart.yaml``: max_new_tokens 32, batch size ``auto``; it was 128), it runs

* ``before``: ``peft_audit.models.generate`` as of commit ``74c42f0`` (``--baseline``;
  ``model.generate`` per batch) at ``--baseline-batch-size`` (128), read from git, so the
  comparison needs no copy of the old code;
* ``after``: the current ``peft_audit.models.generate`` at ``--batch-size`` (``auto``: all 135
  prompts in one batch on this CPU), then at each ``--extra-batch-sizes`` (128: the
  quickstart's old setting, two batches of 128 and 7 rows);
* ``other kernels``: ``after`` at ``--batch-size`` with the CPU kernels this machine did not
  choose (``models/kernels.py``: oneDNN's packed weights and the bfloat16-screened head, or MKL's
  plain matmul; measured on first use, the choice and its measurement printed), which shows
  that the choice is the faster one (the ratio chosen/other is printed);

alternating before/after per repeat so drift in machine load hits both. It prints new tokens/s
and process CPU seconds for each, the compute bound (the FLOP/s of a plain fp32 matmul measured
in the same run / 2 * parameters FLOP per token, Kaplan et al. 2020 sec. 2.1), each rate's
ratio to the bound and to ``before``, where the matmul rate is the best one measured (before and
after every run and at the end: the machine's peak) and, as a second figure, the median of those
measured around the runs (on a shared machine, nearer the conditions the runs met), and how
many responses differ from ``before`` (a different batch shape may change float summation; at
most 1% may differ). The bound counts new
tokens only; the next line also counts the prompt tokens each row must encode (the shared
system turn once), which is how close the loop runs to the matmul rate.

Reported separately (off by default in the pipeline): the same generation with the model in
``--dtype`` (bfloat16; ``eval_dtype`` in a sweep), its rate against the fp32 run and against
the bfloat16 matmul rate's bound, and how many responses differ from fp32's (bfloat16 rounds
differently, so answers may change). ``--dtype none`` skips it. Not a test: timings depend on the
machine and its load (wall time on a shared machine; CPU time is steadier).

    .venv/bin/python perf/generation_throughput.py [--prompts N] [--extra-batch-sizes 64 128] [--threads N] [--dtype bfloat16]
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompts", type=int, default=None, help="first N prompts only (default: all 135)")
    ap.add_argument("--batch-size", type=lambda v: v if v == "auto" else int(v), default="auto",
                    help="the quickstart's safety.batch_size")
    ap.add_argument("--baseline-batch-size", type=int, default=128, help="batch size of 'before'")
    ap.add_argument("--max-new-tokens", type=int, default=32, help="the quickstart's safety.max_new_tokens")
    ap.add_argument("--extra-batch-sizes", type=int, nargs="*", default=[128], help="also run 'after' at these")
    ap.add_argument("--repeats", type=int, default=3, help="runs of each; medians are reported")
    ap.add_argument("--baseline", default="74c42f0", help="git commit of the 'before' implementation")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "none"],
                    help="also run 'after' with the model in this dtype, reported separately")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    if args.threads:
        torch.set_num_threads(args.threads)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bbq_scoring import kernel_choice, kernels_as, matmul_flops, median, module_at  # one definition each

    from peft_audit.benchmarks.safety import builtin_prompts, over_refusal_prompts
    from peft_audit.models import load_base
    from peft_audit.models.generate import chat_input_ids, generate

    before = module_at(args.baseline, "generate").generate
    t0 = time.perf_counter()
    loaded = load_base("smollm2-135m-instruct", device="cpu", dtype=torch.float32)
    model, tok = loaded.model, loaded.tokenizer
    prompts = [p.prompt for p in builtin_prompts() + over_refusal_prompts()][: args.prompts]
    n_params = sum(p.numel() for p in model.parameters())
    print(f"load {time.perf_counter() - t0:.1f} s; {n_params / 1e6:.1f}M parameters, fp32 cpu, torch threads "
          f"{torch.get_num_threads()}; {len(prompts)} prompts, max_new_tokens {args.max_new_tokens}", flush=True)
    chosen_kernels, other_kernels, why = kernel_choice()
    print(f"kernels chosen here: {why}; other kernels: {other_kernels}", flush=True)
    for fn in (before, generate):  # warm-up (allocator, kernels)
        fn(model, tok, prompts[:2], max_new_tokens=4)
    with kernels_as(other_kernels):
        generate(model, tok, prompts[:2], max_new_tokens=4)

    rates: list[float] = []  # the matmul rate right before and after each run

    def timed(fn, bs):
        rates.append(matmul_flops(reps=3))
        t, c = time.perf_counter(), time.process_time()
        out = fn(model, tok, prompts, max_new_tokens=args.max_new_tokens, batch_size=bs)
        secs, cpu = time.perf_counter() - t, time.process_time() - c
        rates.append(matmul_flops(reps=3))
        return out, secs, cpu

    runs: dict[str, list] = {}
    reference = None
    for rep in range(args.repeats):
        for name, fn, bs in [("before", before, args.baseline_batch_size), ("after", generate, args.batch_size),
                             ("other kernels", generate, args.batch_size)] + [
                ("after", generate, b) for b in args.extra_batch_sizes]:
            with kernels_as(other_kernels if name == "other kernels" else None):
                out, secs, cpu = timed(fn, bs)
            if name == "before":
                reference = reference or out
            tokens = sum(g.n_new_tokens for g in out)
            differ = sum(a.text != b.text for a, b in zip(out, reference))
            key = f"{name} batch {bs}"
            runs.setdefault(key, []).append((tokens / secs, tokens / cpu, differ))
            print(f"repeat {rep}: {key:>16}: {tokens} new tokens in {secs:6.1f} s ({cpu:6.1f} CPU s) = "
                  f"{tokens / secs:6.1f} tokens/s; {differ}/{len(out)} responses differ from before", flush=True)
    mm = max(matmul_flops(), *rates)
    bound = mm / (2 * n_params)
    around = median(rates)
    print(f"fp32 2048x2048 matmul {mm / 1e9:.1f} GFLOP/s at best; {2 * n_params / 1e9:.2f} GFLOP per token -> "
          f"compute bound {bound:.0f} tokens/s")
    print(f"(around the runs the matmul ran at {around / 1e9:.1f} GFLOP/s, median of {len(rates)}, "
          f"{min(rates) / 1e9:.1f}-{max(rates) / 1e9:.1f}: a bound of {around / (2 * n_params):.0f} tokens/s)")
    base_rate = sorted(r[0] for r in runs[f"before batch {args.baseline_batch_size}"])[args.repeats // 2]
    base_cpu = sorted(r[1] for r in runs[f"before batch {args.baseline_batch_size}"])[args.repeats // 2]
    for key, rs in runs.items():
        rate = sorted(r[0] for r in rs)[len(rs) // 2]
        cpu_rate = sorted(r[1] for r in rs)[len(rs) // 2]
        print(f"{key:>16}: {rate:6.1f} tokens/s = {rate / bound:5.1%} of the bound ({rate * 2 * n_params / around:5.1%} "
              f"of the median one); x{rate / base_rate:.2f} vs before (CPU-time ratio x{cpu_rate / base_cpu:.2f}); "
              f"differing responses {max(r[2] for r in rs)}/{len(prompts)}")
    from peft_audit.models.kernels import decisions

    for key, choice in decisions().items():  # decoding streams choose at their own thread count
        print(f"choice made: {key}: {choice.describe('candidate', 'reference')}")
    chosen_rate = median([r[0] for r in runs[f"after batch {args.batch_size}"]])
    other_rate = median([r[0] for r in runs[f"other kernels batch {args.batch_size}"]])
    print(f"kernels chosen/other ({chosen_kernels}/{other_kernels}, batch {args.batch_size}, medians of "
          f"{args.repeats}): {chosen_rate / other_rate:.2f} (tokens/s)")
    # The prompt tokens every row must encode: its own, after the chat template's system turn
    # (the tokens all prompts share, encoded once per batch); 2 * (parameters - vocabulary
    # embedding) FLOP each, as the prefill keeps vocabulary logits for the last position only.
    rows = [chat_input_ids(tok, p) for p in prompts]
    shared = 0
    while all(len(r) > shared + 1 and r[shared] == rows[0][shared] for r in rows):
        shared += 1
    prefill = sum(len(r) - shared for r in rows) + shared
    body = n_params - model.get_input_embeddings().weight.numel()
    tokens = sum(g.n_new_tokens for g in reference)
    flop = 2 * body * prefill + 2 * n_params * tokens
    key = f"after batch {args.batch_size}"
    secs = tokens / sorted(r[0] for r in runs[key])[len(runs[key]) // 2]
    print(f"counting the prompts' {prefill} tokens too ({2 * body * prefill / flop:.0%} of the FLOPs): {key} "
          f"runs at {flop / secs / 1e9:.1f} GFLOP/s = {flop / secs / mm:.0%} of the matmul rate")
    if args.dtype != "none":
        low_precision(args, model, tok, prompts, reference, n_params, rate=tokens / secs)


def low_precision(args, model, tok, prompts, reference, n_params: int, rate: float) -> None:
    """The 'after' run with the model cast to ``args.dtype`` (what ``eval_dtype`` loads), against
    the fp32 'after' rate and the matmul rate in that dtype; responses compared with fp32's."""
    from bbq_scoring import matmul_flops

    from peft_audit.models.generate import generate

    dtype = getattr(torch, args.dtype)
    model = model.to(dtype)
    generate(model, tok, prompts[:2], max_new_tokens=4)  # warm-up
    t, c = time.perf_counter(), time.process_time()
    out = generate(model, tok, prompts, max_new_tokens=args.max_new_tokens, batch_size=args.batch_size)
    secs, cpu = time.perf_counter() - t, time.process_time() - c
    tokens = sum(g.n_new_tokens for g in out)
    differ = sum(a.text != b.text for a, b in zip(out, reference))
    mm = matmul_flops(dtype=dtype)
    bound = mm / (2 * n_params)
    print(f"{args.dtype} (reported separately; eval_dtype: {args.dtype}): {tokens} new tokens in {secs:.1f} s "
          f"({cpu:.1f} CPU s) = {tokens / secs:.1f} tokens/s = x{tokens / secs / rate:.2f} vs fp32 after batch "
          f"{args.batch_size}; {args.dtype} 2048x2048 matmul {mm / 1e9:.1f} GFLOP/s -> bound {bound:.0f} tokens/s "
          f"({tokens / secs / bound:.0%} of it); {differ}/{len(prompts)} responses differ from fp32")


if __name__ == "__main__":
    main()
