"""Time `write_reports` on a synthetic 200-variant store.

Builds RUN_DIR/results.sqlite with 200 fine-tuned variants over 4 base models (11 safety
categories x 10 prompts, 3 verdicts each, 10 over-refusal prompts, 9 BBQ categories x 24
items per variant), then times, in the same run:

* baseline: reading the store into frames (`load_frames`);
* analysis only (`analyze`);
* `write_reports` with md, html, json, csv, parquet;

and prints each time and its ratio to the baseline.

    .venv/bin/python perf/report_scale.py [--variants 200] [--out DIR] [--reuse]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

from peft_audit.analysis import analyze, load_frames, open_store
from peft_audit.report import write_reports

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the synthetic store is test-data code
from synthetic_store import build_synthetic_store  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", type=int, default=200)
    ap.add_argument("--out", type=Path, default=Path("/tmp/peft-audit-report-scale"))
    ap.add_argument("--formats", default="md,html,json,csv,parquet")
    ap.add_argument("--reuse", action="store_true", help="Reuse a store already built at --out.")
    args = ap.parse_args()
    if not (args.reuse and (args.out / "results.sqlite").is_file()):
        if args.out.exists():
            shutil.rmtree(args.out)
        t0 = time.perf_counter()
        build_synthetic_store(args.out, n_variants=args.variants, n_failed=2, seed=0)
        print(f"built synthetic store with {args.variants} variants in {time.perf_counter() - t0:.1f} s")

    def timed(fn):
        # wall and CPU seconds: on a shared machine the CPU time is the stable figure
        w, c = time.perf_counter(), time.process_time()
        out = fn()
        return out, time.perf_counter() - w, time.process_time() - c

    def read():
        with open_store(args.out) as store:
            return load_frames(store)

    frames, w_read, c_read = timed(read)
    n_rows = len(frames.safety) + len(frames.verdicts) + len(frames.fairness)
    _, w_an, c_an = timed(lambda: analyze(args.out))
    paths, w_rep, c_rep = timed(lambda: write_reports(args.out, formats=args.formats.split(",")))
    size = sum(p.stat().st_size for p in paths) / 1e6
    print(f"{'step':34s} {'wall s':>8s} {'cpu s':>8s} {'cpu ratio':>10s}")
    print(f"{f'read store ({n_rows} rows)':34s} {w_read:8.2f} {c_read:8.2f} {1.0:9.1f}x  (baseline)")
    print(f"{'analyze':34s} {w_an:8.2f} {c_an:8.2f} {c_an / c_read:9.1f}x")
    print(f"{f'write_reports ({args.formats})':34s} {w_rep:8.2f} {c_rep:8.2f} {c_rep / c_read:9.1f}x"
          f"  {len(paths)} files, {size:.1f} MB")
    print(f"report.html: {(args.out / 'report.html').stat().st_size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
