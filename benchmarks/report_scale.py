"""Time `write_reports` on a synthetic 200-variant store.

Builds RUN_DIR/results.sqlite with 200 fine-tuned variants over 4 base models (11 safety
categories x 10 prompts, 3 verdicts each, 10 over-refusal prompts, 9 BBQ categories x 24
items per variant), then times, in the same run:

* baseline: reading the store into frames (`load_frames`);
* analysis only (`analyze`);
* `write_reports` with md, html, json, csv, parquet;

and prints each time and its ratio to the baseline.

    .venv/bin/python benchmarks/report_scale.py [--variants 200] [--out /tmp/report-scale]
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

from peft_audit.analysis import analyze, load_frames, open_store
from peft_audit.analysis.synthetic import build_synthetic_store
from peft_audit.report import write_reports


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", type=int, default=200)
    ap.add_argument("--out", type=Path, default=Path("/tmp/peft-audit-report-scale"))
    ap.add_argument("--formats", default="md,html,json,csv,parquet")
    args = ap.parse_args()
    if args.out.exists():
        shutil.rmtree(args.out)
    t0 = time.perf_counter()
    build_synthetic_store(args.out, n_variants=args.variants, n_failed=2, seed=0)
    print(f"built synthetic store with {args.variants} variants in {time.perf_counter() - t0:.1f} s")

    t0 = time.perf_counter()
    with open_store(args.out) as store:
        frames = load_frames(store)
    t_read = time.perf_counter() - t0
    n_rows = len(frames.safety) + len(frames.verdicts) + len(frames.fairness)
    t0 = time.perf_counter()
    analyze(args.out)
    t_analyze = time.perf_counter() - t0
    t0 = time.perf_counter()
    paths = write_reports(args.out, formats=args.formats.split(","))
    t_report = time.perf_counter() - t0
    size = sum(p.stat().st_size for p in paths) / 1e6
    print(f"read store ({n_rows} sample rows):   {t_read:6.2f} s  (baseline, 1.0x)")
    print(f"analyze:                            {t_analyze:6.2f} s  ({t_analyze / t_read:.1f}x)")
    print(f"write_reports ({args.formats}): {t_report:6.2f} s  ({t_report / t_read:.1f}x); {len(paths)} files, {size:.1f} MB")
    print(f"report.html: {(args.out / 'report.html').stat().st_size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
