"""Where a sweep stands, read from its store (``peft-audit status RUN_DIR``), safe to run from
another terminal while the sweep writes (the store is in WAL mode; this only reads).

ETA = (pending + running variants) x mean wall time of the variants finished so far / jobs
(the local executor's ``--jobs``; Ray's parallelism is not known here, so 1 is assumed and the
ETA is an upper bound). Mean wall time is per variant, driver-measured, spawn included.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..store import open_existing
from .driver import HEARTBEAT_S
from .logs import describe_seconds
from ..shown_text import markup_safe
from .plan import variant_display

STAGE_ORDER = ("trained", "generated", "judged", "scored", "metrics")
STATUSES = ("pending", "running", "interrupted", "done", "failed", "skipped")


@dataclass
class RunningVariant:
    id: str
    name: str
    stages_done: list[str]
    current: str  # the stage being worked on (first one not done), as far as the store knows


@dataclass
class SweepStatus:
    run_dir: Path
    counts: dict[str, int]
    running: list[RunningVariant] = field(default_factory=list)
    failed: list[tuple[str, str, str]] = field(default_factory=list)  # (id, name, error)
    mean_variant_s: float | None = None
    eta_s: float | None = None
    jobs: int = 1
    driver_alive: bool | None = None  # None: no driver ever recorded
    driver_finished: bool = False

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def _name(v: dict) -> str:
    return variant_display({**v.get("spec", {}), **v})


def read_status(run_dir: str | Path, now: float | None = None) -> SweepStatus:
    """Read the status of the sweep in ``run_dir``. FileNotFoundError if it has no store."""
    run_dir = Path(run_dir)
    now = time.time() if now is None else now
    with open_existing(run_dir) as store:
        counts = {s: 0 for s in STATUSES}
        counts.update(store.status_counts())
        st = SweepStatus(run_dir, counts)
        for v in store.variants("running"):
            done = list(store.stages_done(v["id"]))
            trains = v["method"] != "base" and not v["spec"].get("adapter")
            needed = [s for s in STAGE_ORDER if s != "trained" or trains]
            current = next((s for s in needed if s not in done), "finishing")
            st.running.append(RunningVariant(v["id"], _name(v), done, current))
        st.failed = [(v["id"], _name(v), (v["error"] or "")) for v in store.variants("failed")]
        walls = list((store.get_meta("variant_wall_seconds") or {}).values())
        executor = store.get_meta("executor") or {}
        st.jobs = max(1, int(executor.get("jobs") or 1))
        driver = store.get_meta("driver")
    if walls:
        st.mean_variant_s = statistics.fmean(walls)
        remaining = counts["pending"] + counts["running"] + counts["interrupted"]
        st.eta_s = remaining * st.mean_variant_s / st.jobs
    if driver is not None:
        st.driver_finished = "finished_at" in driver
        st.driver_alive = not st.driver_finished and now - driver["heartbeat"] < 3 * HEARTBEAT_S + 30
    return st


def render_status(st: SweepStatus, console) -> None:
    """Print ``st`` with rich: counts, running variants and their stage, failures, ETA."""
    from rich.table import Table

    c = st.counts
    console.print(f"[bold]{markup_safe(st.run_dir)}[/]: {st.total} variants: done {c['done']} · failed {c['failed']} · "
                  f"running {c['running']} · pending {c['pending']}" + (f" · skipped {c['skipped']}" if c["skipped"] else "")
                  + (f" · interrupted {c['interrupted']} (the next `peft-audit run` resumes them)" if c["interrupted"] else ""))
    if st.driver_alive is False and not st.driver_finished and c["running"]:
        console.print("[yellow]no sweep is writing to this run (no heartbeat): 'running' variants were "
                      "interrupted; `peft-audit run` with the same config resumes them[/]")
    if st.running:
        t = Table(title="running")
        for col in ("id", "variant", "stages done", "current stage"):
            t.add_column(col)
        for r in st.running:
            t.add_row(r.id, markup_safe(r.name), ", ".join(r.stages_done) or "–", markup_safe(r.current))
        console.print(t)
    for vid, name, err in st.failed:
        console.print(f"[red]failed[/] {vid} {markup_safe(name)}: {markup_safe(err, limit=200)}")
    console.print(f"mean variant time {describe_seconds(st.mean_variant_s)}; ETA {describe_seconds(st.eta_s)}"
                  + (f" at {st.jobs} jobs" if st.jobs > 1 else ""))
