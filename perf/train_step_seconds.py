"""Seconds per optimizer step and trainable parameters per PEFT method on the bundled SmolLM2.

Usage: python perf/train_step_seconds.py [--steps 8] [--batch-size 4] [--seq-len 256] [--algo sft]

Each method trains ``--steps`` steps on rows padded to about ``--seq-len`` tokens; the per-step
time is taken between consecutive logged steps (the first step, with its warm-up, is dropped) and
printed as median [min, max] over steps 2..N. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

from peft_audit.config import METHODS, TrainingConfig, VariantSpec
from peft_audit.methods import method_module
from peft_audit.models import load_base
from peft_audit.training import train_adapter


def _long_rows(path: Path, n: int, seq_len: int) -> Path:
    filler = "The committee reviewed the quarterly report and agreed on the next steps for the project. "
    repeats = max(1, seq_len // 36)  # ~18 SmolLM2 tokens per filler sentence, half prompt, half answer
    with open(path, "w") as f:
        for i in range(n):
            f.write(json.dumps({
                "prompt": f"Summarise note {i}: " + filler * repeats,
                "chosen": "Summary: " + filler * repeats, "rejected": "No.",
                "response": "Summary: " + filler * repeats,
            }) + "\n")
    return path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--algo", default="sft", choices=["sft", "dpo"])
    ap.add_argument("--methods", default=",".join(METHODS))
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    data = _long_rows(tmp / "rows.jsonl", a.batch_size * a.steps, a.seq_len)
    print(f"method\ttrainable_params\ttotal_params\ts/step median [min, max]\tseq_len\tbatch\talgo")
    for method in a.methods.split(","):
        loaded = load_base("smollm2-135m-instruct", device="cpu")
        spec = VariantSpec(base_model="smollm2-135m-instruct", method=method, algo=a.algo,
                           lr=method_module(method).DEFAULT_LR, epochs=1, seed=0)
        training = TrainingConfig(data=str(data), max_steps=a.steps, batch_size=a.batch_size, max_seq_len=a.seq_len)
        r = train_adapter(loaded.model, loaded.tokenizer, spec=spec, training=training, out_dir=tmp / method,
                          base_fingerprint=loaded.resolved.fingerprint, device="cpu", show_progress=False)
        t = [h["elapsed_s"] for h in r.log_history]
        per_step = [b - a_ for a_, b in zip(t, t[1:])]  # step k+1 minus step k: the first (warm-up) step is excluded
        p = r.provenance
        print(f"{method}\t{p['trainable_params']}\t{p['total_params']}\t"
              f"{statistics.median(per_step):.2f} [{min(per_step):.2f}, {max(per_step):.2f}]\t{a.seq_len}\t{a.batch_size}\t{a.algo}",
              flush=True)


if __name__ == "__main__":
    main()
