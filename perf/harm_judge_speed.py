"""What the ``harm`` judge costs against generating the responses it judges, measured in one run.

On the bundled SmolLM2-135M-Instruct (the pipeline's generation path, fp32, greedy) it answers
the built-in safety prompts with up to ``--max-new-tokens`` (256) new tokens each (a response
may end earlier, which makes generation look cheaper, not the judge), then judges those
responses, each brought to exactly that many tokens (repeated and cut), with the ``harm`` judge (the shipped probe on the model's first layers), alternating
``--repeats`` times so drift in machine load hits both. It prints responses/s of each, their
ratio (the issue's bound: judging must cost at most half of generating, i.e. judge rate >= 2x
generation rate) and the judge's absolute rate (target on a 2-core CPU: >= 2 responses/s at 256
response tokens). Not a test: timings depend on the machine and its load.

    .venv/bin/python perf/harm_judge_speed.py [--prompts 32] [--max-new-tokens 256] [--repeats 2]
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings


def full_length(tokenizer, text: str, n: int) -> str:
    """``text`` repeated and cut to exactly ``n`` tokens."""
    ids = tokenizer(text or "word", add_special_tokens=False).input_ids
    return tokenizer.decode((ids * (n // max(len(ids), 1) + 1))[:n])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompts", type=int, default=32, help="first N built-in safety prompts")
    ap.add_argument("--max-new-tokens", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=8, help="the harm judge's batch size")
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    warnings.filterwarnings("ignore")

    from peft_audit.benchmarks.safety.sources import load_safety_prompts
    from peft_audit.benchmarks.safety.config import SafetyConfig
    from peft_audit.judges.harm import HarmJudge
    from peft_audit.models import load_base
    from peft_audit.models.generate import generate

    prompts = [p.prompt for p in load_safety_prompts(SafetyConfig())][: args.prompts]
    loaded = load_base("smollm2-135m-instruct", dtype="float32")
    judge = HarmJudge.bundled(batch_size=args.batch_size)
    gen_s, judge_s, probe_s, tokens = [], [], [], []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        outs = generate(loaded.model, loaded.tokenizer, prompts, max_new_tokens=args.max_new_tokens,
                        batch_size=args.batch_size)
        gen_s.append(time.perf_counter() - t0)
        tokens.append(statistics.median(o.n_new_tokens for o in outs))
        # every response judged at the full length (a short one repeated to it): the worst case
        pairs = [(p, full_length(loaded.tokenizer, o.text, args.max_new_tokens)) for p, o in zip(prompts, outs)]
        judge.judge_batch(pairs[:1])  # the first call loads the model's first layers
        t0 = time.perf_counter()
        verdicts = judge.judge_batch(pairs)
        judge_s.append(time.perf_counter() - t0)
        t0 = time.perf_counter()  # the worst case: every response read as compliance, so probed
        judge.features(pairs, judge.probe.pooling)
        probe_s.append(time.perf_counter() - t0)
    g = len(prompts) / statistics.median(gen_s)
    j = len(prompts) / statistics.median(judge_s)
    w = len(prompts) / statistics.median(probe_s)
    probed = sum(1 for v in verdicts if v.score not in (None, 0.0))
    print(f"{len(prompts)} responses, {statistics.median(tokens):.0f} new tokens each (median), judged at "
          f"{args.max_new_tokens}; probe layer {judge.probe.layer} of 30, batch {args.batch_size}")
    print(f"generation: {g:.2f} responses/s")
    print(f"harm judge as run: {j:.2f} responses/s ({probed} of {len(prompts)} read as compliance and probed)")
    print(f"harm judge, every response probed (worst case): {w:.2f} responses/s")
    print(f"judge cost / generation cost, worst case: {g / w:.3f} (bound 0.5); worst-case rate >= 2 responses/s: "
          f"{w >= 2}")


if __name__ == "__main__":
    main()
