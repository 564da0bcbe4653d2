"""The local executor: variants one after another on this machine, with live progress."""

from __future__ import annotations

import time
from pathlib import Path

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from ...pipeline import RunOptions, run_one


def make_progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        TextColumn("ETA"), TimeRemainingColumn(), transient=False,
    )


class LocalExecutor:
    def __init__(self, opts: RunOptions):
        self.opts = opts

    def run(self, cfg, run_dir: Path, todo, store) -> dict[str, float]:
        totals: dict[str, float] = {}
        deadline = time.time() + self.opts.max_hours * 3600 if self.opts.max_hours else None
        with make_progress() as bar:
            variants_task = bar.add_task("variants", total=len(todo))

            def progress(description: str, total: int):
                task = bar.add_task(f"  {description}", total=total)

                def advance(n: int) -> None:
                    bar.advance(task, n)
                    if bar.tasks[task].completed >= total:
                        bar.remove_task(task)

                return advance

            for pv in todo:
                if deadline and time.time() > deadline:
                    bar.console.print("[yellow]--max-hours budget reached: not scheduling more variants[/]")
                    break
                bar.update(variants_task, description=f"variants ({pv.display})")
                if self.opts.retry_failed and store.variant(pv.id)["status"] == "failed":
                    store.clear_variant_results(pv.id)
                status, timings = run_one(cfg, run_dir, pv, store, set(store.stages_done(pv.id)), progress)
                for k, v in timings.items():
                    totals[k] = totals.get(k, 0.0) + v
                bar.advance(variants_task)
        return totals
