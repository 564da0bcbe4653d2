"""BBQ log-likelihood scoring: prefix-tree scoring vs the two-pass scorer before it vs naive
scoring, speed ratios and FLOP/s, measured in one run.

Scores the same N distinct BBQ items (default: all 144 of the built-in sample; ``--source`` a
directory of the official JSONL files or a hub id for more) with the bundled
SmolLM2-135M-Instruct four times:

* tree (``peft_audit.models.scoring.score_continuations``): items grouped by shared prompt
  prefix, each group's token trie fed once with a tree attention mask, vocabulary logits only at
  scored nodes;
* before: the same function as of commit ``--baseline`` (``e1ba8f8``: each prompt once, its KV
  cache reused for its options), read from git, so the comparison needs no copy of the old code;
* naive (``score_continuations_naive``): every prompt+option as its own row, full logits -- what
  general-purpose harnesses do -- with the same batch size;
* other kernels: tree with the CPU kernels this machine did not choose (``models/kernels.py``:
  oneDNN's packed weights or MKL's plain matmul, measured on first use), which shows that the
  choice is the faster one; tree and other kernels alternate ``--kernel-repeats`` times and their
  medians are compared. The choice, and the measurement behind it, is printed.

Items are never repeated: a repeated prompt would be fed once by the tree scorer and flatter it.
It checks that all four pick the same option for every item, and prints items/s for each, the
ratios tree/before and tree/naive, the tokens each feeds, the model FLOP/s this implies
(2 * parameters * tokens fed, Kaplan et al., 2020, "Scaling Laws for Neural Language Models",
sec. 2.1; attention-score FLOPs left out) and, for scale, the FLOP/s of a plain large fp32
matmul measured in the same run. Not a test: timings depend on the machine and its load.

    .venv/bin/python perf/bbq_scoring.py [--n 144] [--batch-size 16] [--source builtin] [--kernel-repeats 3]
"""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
import time
import types
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def module_at(commit: str, name: str) -> types.ModuleType:
    """``peft_audit.models.<name>`` as it was at ``commit``, read from git (its relative imports
    still work), so a perf script compares against old code without a copy of it."""
    src = subprocess.run(["git", "-C", str(ROOT), "show", f"{commit}:src/peft_audit/models/{name}.py"],
                         check=True, capture_output=True, text=True).stdout
    mod = types.ModuleType(f"peft_audit.models._{name}_baseline")
    mod.__package__ = "peft_audit.models"
    sys.modules[mod.__name__] = mod  # dataclasses look their module up there
    exec(compile(src, f"{commit}:{name}.py", "exec"), mod.__dict__)
    return mod


@contextlib.contextmanager
def kernels_as(choice: str | None):
    """Within the block, evaluation uses ``choice`` (``packed`` or ``plain``, set as a sweep
    config's ``kernels`` would be; None: as chosen on this machine)."""
    from peft_audit.models.kernels import configure

    configure(choice or "auto")
    try:
        yield
    finally:
        configure("auto")


def kernel_choice() -> tuple[str, str, str]:
    """The kernels chosen for float32 here (``packed`` or ``plain``; measured on first use,
    ``peft_audit.models.kernels``), the other choice, and a line saying what was chosen and why."""
    import torch

    from peft_audit.models.kernels import packed
    from peft_audit.models.screened_head import screen_choice

    weights, screen = packed(torch.float32), screen_choice()
    why = f"{weights.describe('packed', 'plain')} weights; {screen.describe('screened', 'plain')} head"
    return ("packed", "plain", why) if weights.use else ("plain", "packed", why)


def median(values):
    return sorted(values)[len(values) // 2]


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
    ap.add_argument("--n", type=int, default=None, help="score the first N distinct items (default: all)")
    ap.add_argument("--source", default="builtin", help="BBQ source: builtin, a directory of JSONL files, a hub id")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--baseline", default="e1ba8f8", help="git commit of the 'before' scorer")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--kernel-repeats", type=int, default=3, help="alternating runs of tree with each kernel choice")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from peft_audit.benchmarks.fairness import load_bbq
    from peft_audit.benchmarks.fairness.score import plain_prompt
    from peft_audit.models import load_base
    from peft_audit.models.scoring import (_Tree, encode_pairs, prefix_groups, score_continuations,
                                           score_continuations_naive)

    before_mod = module_at(args.baseline, "scoring")
    lm = load_base(args.model, device=args.device, dtype=torch.float32)
    model, tok = lm.model, lm.tokenizer
    items = load_bbq(args.source).items[:args.n]
    prompts = [plain_prompt(it) for it in items]
    conts = [[f" {a}" for a in it.answers] for it in items]
    n_params = sum(p.numel() for p in model.parameters())

    enc = encode_pairs(tok, prompts, conts)
    tokens_tree = sum(len(_Tree([(0, enc[i]) for i in g]).tokens) for g in prefix_groups(enc))
    tokens_before = sum(len(p) + sum(len(c) - 1 for c in cs) for p, cs in enc)
    tokens_naive = sum(len(p) * len(cs) + sum(map(len, cs)) for p, cs in enc)

    chosen_kernels, other_kernels, why = kernel_choice()
    runs = {"tree": score_continuations, "before": before_mod.score_continuations, "naive": score_continuations_naive,
            "other": score_continuations}
    for name, fn in runs.items():  # warm-up (allocator, kernels, packed copies) on a few items
        with kernels_as(other_kernels if name == "other" else None):
            fn(model, tok, prompts[:4], conts[:4], batch_size=args.batch_size)
    scores, walls, cpus = {}, {}, {}
    # tree and other kernels alternate (their medians compared); before and naive run once, in between
    order = [name for _ in range(args.kernel_repeats) for name in ("tree", "other")]
    order[1:1] = ["before", "naive"]
    for name in order:
        with kernels_as(other_kernels if name == "other" else None):
            t, c = time.perf_counter(), time.process_time()
            scores[name] = runs[name](model, tok, prompts, conts, batch_size=args.batch_size)
            walls.setdefault(name, []).append(time.perf_counter() - t)
            cpus.setdefault(name, []).append(time.process_time() - c)
    wall = {name: median(ts) for name, ts in walls.items()}
    cpu = {name: median(ts) for name, ts in cpus.items()}
    mm = matmul_flops()

    pick = lambda row: max(range(len(row)), key=lambda i: (row[i], -i))  # noqa: E731
    print(f"model {args.model}: {n_params / 1e6:.1f}M parameters, fp32, device {args.device}, "
          f"torch threads {torch.get_num_threads()}, batch size {args.batch_size}, {len(items)} distinct items")
    print(f"kernels chosen here: {why}; other kernels: {other_kernels}")
    for other in ("before", "naive", "other"):
        same = sum(pick(a) == pick(b) for a, b in zip(scores["tree"], scores[other]))
        diff = max(abs(x - y) for ra, rb in zip(scores["tree"], scores[other]) for x, y in zip(ra, rb))
        print(f"tree vs {other}: identical predictions {same}/{len(items)}; max |logprob difference| {diff:.2e}")
    for name, toks in (("tree", tokens_tree), ("before", tokens_before), ("naive", tokens_naive),
                       ("other", tokens_tree)):
        print(f"{name:>7}: {wall[name]:7.1f} s  {len(items) / wall[name]:7.2f} items/s  {toks:6d} tokens fed  "
              f"{2 * n_params * toks / wall[name] / 1e9:6.1f} GFLOP/s implied  ({2 * n_params * toks / wall[name] / mm:.0%}"
              f" of the matmul rate)")
    for other in ("before", "naive", "other"):
        print(f"ratio tree/{other} (items/s): {wall[other] / wall['tree']:.2f}; CPU-time ratio "
              f"{cpu[other] / cpu['tree']:.2f} ({cpu[other]:.1f} s / {cpu['tree']:.1f} s)")
    print(f"kernels chosen/other ({chosen_kernels}/{other_kernels}, tree, medians of {args.kernel_repeats}): "
          f"{wall['other'] / wall['tree']:.2f} (items/s; runs {', '.join(f'{w:.1f}' for w in walls['tree'])} s vs "
          f"{', '.join(f'{w:.1f}' for w in walls['other'])} s)")
    print(f"plain 2048x2048 fp32 matmul: {mm / 1e9:.1f} GFLOP/s")
    if any(pick(a) != pick(b) for other in ("before", "naive", "other") for a, b in zip(scores["tree"], scores[other])):
        raise SystemExit("predictions differ between scorers")


if __name__ == "__main__":
    main()
