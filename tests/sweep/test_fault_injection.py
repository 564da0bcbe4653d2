"""Fault injection: kill -9 a real sweep at its fault points (:mod:`peft_audit.faults`), resume it,
and compare the final store with an uninterrupted run's, row by row, exactly.

The sweep (tiny random Llama, base + LoRA trained for two steps, safety with over-refusal,
BBQ on two categories) first runs uninterrupted, logging every fault point it reaches; that
trace says which points exist, to which variant and stage each belongs, and in which order.
A second run directory is then killed over and over, each attempt resuming the last: a seeded
RNG picks a point of the work that is still missing (the run directory's stages, statuses and
adapters say what is), and the attempt is armed to ``kill -9`` itself there. Three kinds of kill:

* in-process executor: driver and worker are one process, both die;
* local executor, a driver-side point: the driver dies, its orphaned worker must stop by itself;
* local executor, a worker-side point: the worker dies, the driver records the variant failed,
  finishes the sweep and exits 0; the next attempt retries it (every attempt has ``retry_failed``).

Each in-process attempt must reach exactly the points predicted from the missing work (a resumed
run redoes every missing stage and nothing else) and die at the armed one. Every point is
killed at least once. The last attempt runs unarmed; then variants (ids, statuses, metadata
without timings), stage markers, samples, verdicts, metrics, meta, summary.json, report.md, the
adapter files and the run directory's file list must equal the uninterrupted run's, with no
``.partial-*`` adapter directory left behind.

Attempts are forked from one server process that imported torch once (``fork_server.py``):
a fresh interpreter per attempt would spend most of the test importing.
"""

from __future__ import annotations

import json
import os
import queue
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from peft_audit.config import load_config
from peft_audit.sweep.plan import expand
from peft_audit.training.provenance import PROVENANCE_FILE

SEED = 15  # issue #15
ATTEMPTS = 30  # each killed somewhere; then one more runs to the end
#: Attempts with the local executor (a fresh worker process per variant, ~15 s to start here);
#: the others run in-process. Each is due at a random attempt of the first half, later if it
#: finds no point of its kind left before the last chance of a point not yet killed.
SUBPROCESS_ATTEMPTS = ("worker", "worker", "driver")
STAGES = ("trained", "generated", "judged", "scored", "metrics")
POINTS = {"driver.variant_running", "train.step", "train.saved", "generate.batch", "judge.chunk", "score.batch",
          "report.markdown_written", *(f"store.{s}.{w}" for s in STAGES for w in ("begin", "commit", "committed"))}
DRIVER_SIDE = ("driver.", "store.", "report.")  # reached in the driver; the rest in the worker
SERVER = Path(__file__).with_name("fork_server.py")
ORPHAN_LIMIT_S = 10.0  # a worker's watchdog polls its driver every second
SERVER_START_TIMEOUT_S = 300  # importing torch, transformers, peft and trl on a busy machine
ATTEMPT_TIMEOUT_S = 240  # a whole sweep takes seconds; a hang fails the test


def sweep_config(model_dir: Path) -> dict:
    return {
        "name": "faults",
        "base_models": [str(model_dir)],
        "methods": ["lora"],
        "algos": ["sft"],
        "lr": [1e-3],
        "device": "cpu",
        # The trace model below is one variant's stages in order; a group sharing one base
        # (tests/sweep/test_shared_base.py, and the kill -9 resume of test_real_sweeps.py)
        # trains every member before evaluating any.
        "share_base": False,
        "training": {"max_steps": 2, "batch_size": 2, "max_seq_len": 48, "max_examples": 4},
        "safety": {"limit_per_category": 1, "max_new_tokens": 4, "batch_size": 12},
        "fairness": {"per_cell": 1, "bootstrap": 20, "categories": ["age", "gender_identity"], "batch_size": 3},
        # Task utility commits one more stage through the same store path as the two above; left
        # off so the kill -9 at every fault point stays within the suite's time
        "utility": {"enabled": False},
    }


# ---------------------------------------------------------------------------------------------
# Attempts, forked by the server
# ---------------------------------------------------------------------------------------------
@dataclass
class Attempt:
    pid: int
    exit: int | None
    signal: int | None
    orphans: int
    orphans_s: float | None
    trace: list[tuple[int, str]]  # (pid, point) in the order reached, every process of the attempt
    log: Path
    seconds: float

    def points(self, pid: int | None = None) -> list[str]:
        return [name for p, name in self.trace if pid is None or p == pid]

    def describe(self) -> str:
        tail = self.log.read_text(errors="replace")[-3000:] if self.log.is_file() else ""
        return f"exit={self.exit} signal={self.signal}; log tail:\n{tail}"


class ForkServer:
    """The test's end of ``fork_server.py``: one attempt at a time, each ended after
    ``ATTEMPT_TIMEOUT_S`` (its process group killed) so that a hang fails the test, not the suite."""

    def __init__(self, work: Path):
        self.work = work
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}  # the same threads in every process
        self.proc = subprocess.Popen([sys.executable, str(SERVER)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, env=env)
        self.replies: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        assert self._reply(SERVER_START_TIMEOUT_S) == {"ready": True}
        self.n = 0

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.replies.put(json.loads(line))
        self.replies.put(None)

    def _reply(self, timeout: float) -> dict | None:
        reply = self.replies.get(timeout=timeout)
        assert reply is not None, f"the fork server exited with {self.proc.wait()}"
        return reply

    def run(self, config: Path, run_dir: Path, *, fault: str | None = None, in_process: bool = True) -> Attempt:
        self.n += 1
        trace, log = self.work / f"attempt{self.n}.trace", self.work / f"attempt{self.n}.log"
        req = {"config": str(config), "run_dir": str(run_dir), "in_process": in_process, "fault": fault,
               "trace": str(trace), "log": str(log)}
        t0 = time.monotonic()
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        pid = self._reply(60)["started"]
        try:
            reply = self._reply(ATTEMPT_TIMEOUT_S)
        except queue.Empty:
            os.killpg(pid, signal.SIGKILL)
            self._reply(60)
            pytest.fail(f"attempt {self.n} (fault {fault}) still running after {ATTEMPT_TIMEOUT_S} s; log: {log}")
        lines = trace.read_text().splitlines() if trace.is_file() else []
        return Attempt(trace=[(int(p), name) for p, name in (ln.split(" ", 1) for ln in lines)], log=log,
                       seconds=time.monotonic() - t0, **reply)

    def close(self) -> None:
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# ---------------------------------------------------------------------------------------------
# What a resumed run must do: the reference trace, cut to the work still missing
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Event:
    variant: str | None  # None: the report, after every variant
    stage: str  # a stage, or 'driver' / 'report'
    point: str

    @property
    def driver_side(self) -> bool:
        return self.point.startswith(DRIVER_SIDE)


def reference_segments(points: list[str], plan: list[str]) -> tuple[dict[str, list[tuple[str, list[str]]]], list[str]]:
    """The uninterrupted (in-process) trace split by variant (each starts at
    ``driver.variant_running``, in plan order) and by stage (a stage's points end with its
    ``store.<stage>.committed``), and the points after the last variant (the report)."""
    starts = [i for i, p in enumerate(points) if p == "driver.variant_running"]
    assert len(starts) == len(plan), points
    segments: dict[str, list[tuple[str, list[str]]]] = {}
    tail: list[str] = []
    for n, (vid, start) in enumerate(zip(plan, starts)):
        end = starts[n + 1] if n + 1 < len(starts) else len(points)
        stages, current = [], []
        for p in points[start + 1:end]:
            current.append(p)
            if p.startswith("store.") and p.endswith(".committed"):
                stages.append((p.split(".")[1], current))
                current = []
        assert not current or n == len(plan) - 1, f"points after the last stage of {vid}: {current}"
        segments[vid], tail = stages, current
    return segments, tail


@dataclass
class RunState:
    status: dict[str, str]
    stages: dict[str, set[str]]
    adapter_saved: dict[str, bool]


def query(run_dir: Path, sql: str) -> list[tuple]:
    """Rows of ``sql`` on the run's store, the connection closed at once (an open reader would
    keep the WAL file, which the run itself deletes when it closes the store last)."""
    con = sqlite3.connect(run_dir / "results.sqlite")
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def run_state(run_dir: Path, plan: list[str]) -> RunState:
    status = {v: "pending" for v in plan}
    stages: dict[str, set[str]] = {v: set() for v in plan}
    if (run_dir / "results.sqlite").is_file():
        status.update(query(run_dir, "SELECT id, status FROM variants"))
        for vid, stage in query(run_dir, "SELECT variant_id, stage FROM stages"):
            stages[vid].add(stage)
    saved = {v: (run_dir / "adapters" / v / PROVENANCE_FILE).is_file() for v in plan}
    return RunState(status, stages, saved)


def expected_events(segments, tail: list[str], state: RunState, plan: list[str]) -> list[Event]:
    """The points a resumed run reaches, in order: for each unfinished variant its missing
    stages (a trained adapter already on disk is committed, not trained again), then the report."""
    events = []
    for vid in plan:
        if state.status[vid] == "done":
            continue
        events.append(Event(vid, "driver", "driver.variant_running"))
        for stage, points in segments[vid]:
            if stage in state.stages[vid]:
                continue
            if stage == "trained" and state.adapter_saved[vid]:
                points = [p for p in points if p.startswith("store.")]
            events += [Event(vid, stage, p) for p in points]
    return events + [Event(None, "report", p) for p in tail]


# ---------------------------------------------------------------------------------------------
# Choosing where to kill
# ---------------------------------------------------------------------------------------------
def reached_by(kind: str, e: Event) -> bool:
    """Whether the process a ``kind`` attempt arms (see module docstring) reaches ``e``."""
    return kind == "in_process" or e.driver_side == (kind == "driver")


def occurrence(events: list[Event], i: int, same_process) -> int:
    """How many times the process that reaches ``events[i]`` has reached its point by then."""
    return sum(1 for e in events[:i + 1] if e.point == events[i].point and same_process(e, events[i]))


def fault_for(kind: str, events: list[Event], i: int) -> tuple[str, list[int]]:
    """(``PEFT_AUDIT_FAULT`` value, indices of the events where a process dies) for a kill at
    ``events[i]``. A worker-side point counts per worker, i.e. per variant, so the same value
    kills every worker that reaches the point that often."""
    e = events[i]
    if kind != "worker":
        return f"{e.point}#{occurrence(events, i, lambda a, b: reached_by(kind, a))}", [i]
    k = occurrence(events, i, lambda a, b: a.variant == b.variant)
    deaths = []
    for v in dict.fromkeys(x.variant for x in events):
        hits = [j for j, x in enumerate(events) if x.variant == v and x.point == e.point]
        if len(hits) >= k:
            deaths.append(hits[k - 1])
    return f"{e.point}#{k}", deaths


def choose(kind: str, events: list[Event], uncovered: set[str], attempts_left: int, rng: random.Random):
    """A kill for this attempt, or None when ``kind`` has nowhere left to kill.

    Never later than the last chance of a point not yet killed (so that every point is killed
    once); a point not yet killed is preferred half of the time, and required once the attempts
    left would not suffice for the points left."""
    last_chance = {}
    for j, e in enumerate(events):
        last_chance[e.point] = j
    missing = uncovered - set(last_chance)
    assert not missing, f"points no longer reachable before being killed: {missing}"
    limit = min((last_chance[p] for p in uncovered), default=len(events) - 1)
    options = [(i, fault_for(kind, events, i)) for i, e in enumerate(events) if reached_by(kind, e)]
    options = [(i, f) for i, f in options if max(f[1]) <= limit]
    fresh = [(i, f) for i, f in options if events[i].point in uncovered]
    if attempts_left <= len(uncovered) or (fresh and rng.random() < 0.5):
        options = fresh
    return rng.choice(options) if options else None


# ---------------------------------------------------------------------------------------------
# Comparing two run directories
# ---------------------------------------------------------------------------------------------
VOLATILE_META = {"driver", "variant_wall_seconds"}  # pid, host, heartbeat, wall seconds


def _without_timings(provenance: dict) -> dict:
    p = {k: v for k, v in provenance.items() if k != "wall_seconds"}
    p["log_history"] = [{k: v for k, v in h.items() if k != "elapsed_s"} for h in p.get("log_history", [])]
    return p


RESULT_TABLES = ("samples", "verdicts", "metrics")
#: Where each stage's rows land: (table, samples.benchmark or None). The fairness data-quality
#: metric rows come with 'scored' and the others with 'metrics': metrics are checked at the end.
STAGE_ROWS = {"generated": ("samples", "safety"), "judged": ("verdicts", None), "scored": ("samples", "fairness")}


def result_rows(run_dir: Path) -> dict[str, set[tuple]]:
    """Every row of the result tables, as tuples (``variant_id`` first; ``benchmark`` second in samples)."""
    return {t: set(query(run_dir, f"SELECT * FROM {t}")) for t in RESULT_TABLES}


def check_stages_atomic(run_dir: Path, reference: dict[str, set[tuple]], state: RunState) -> list[str]:
    """What is wrong with a killed run's rows: a row the uninterrupted run does not have, or a
    stage whose rows are there without its marker, or partly there, or missing with it."""
    rows = result_rows(run_dir)
    problems = [f"{t}: {r} differs from every row of the uninterrupted run" for t in RESULT_TABLES
                for r in sorted(rows[t] - reference[t], key=repr)]
    for vid, done in state.stages.items():
        for stage, (table, bench) in STAGE_ROWS.items():
            def mine(r):
                return r[0] == vid and (bench is None or r[1] == bench)
            have, full = {r for r in rows[table] if mine(r)}, {r for r in reference[table] if mine(r)}
            if have != (full if stage in done else set()):
                problems.append(f"{vid}: {len(have)} of {len(full)} rows of stage {stage} with its marker "
                                f"{'present' if stage in done else 'absent'}")
    return problems


def snapshot(run_dir: Path) -> dict:
    """Everything a run left, exactly, without wall times, timestamps and the run directory's name."""
    out: dict = {}
    con = sqlite3.connect(run_dir / "results.sqlite")
    con.row_factory = sqlite3.Row
    try:
        out["meta"] = sorted((k, v) for k, v in con.execute("SELECT key, value FROM meta") if k not in VOLATILE_META)
        variants = []
        for r in con.execute("SELECT * FROM variants ORDER BY id"):
            v = {k: r[k] for k in r.keys() if k not in ("created_at", "updated_at", "timings_json", "metadata_json")}
            if v["adapter_path"]:
                v["adapter_path"] = str(Path(v["adapter_path"]).relative_to(run_dir))
            meta = json.loads(r["metadata_json"])
            if "provenance" in meta:
                meta["provenance"] = _without_timings(meta["provenance"])
            variants.append({**v, "metadata": meta})
        out["variants"] = variants
        out["stages"] = sorted(tuple(r) for r in con.execute("SELECT variant_id, stage FROM stages"))
    finally:
        con.close()
    out.update({t: sorted(rows, key=repr) for t, rows in result_rows(run_dir).items()})
    out["summary"] = json.loads((run_dir / "summary.json").read_text())
    out["report.md"] = (run_dir / "report.md").read_text().replace(run_dir.name, "RUN")
    # logs/ holds other libraries' output of worker processes (the uninterrupted run is in-process)
    files = sorted(str(p.relative_to(run_dir)) for p in run_dir.rglob("*")
                   if p.is_file() and p.relative_to(run_dir).parts[0] != "logs")
    out["files"] = files
    for f in files:
        if f.startswith("adapters/"):
            data = (run_dir / f).read_bytes()
            out[f] = _without_timings(json.loads(data)) if f.endswith(PROVENANCE_FILE) else data
    return out


def differences(a, b, path: str = "") -> list[str]:
    """Where ``a`` and ``b`` differ: dict keys and list items followed down to the leaves."""
    if a == b:
        return []
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(set(a) | set(b), key=str) for d in differences(a.get(k), b.get(k), f"{path}.{k}")]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for n, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, f"{path}[{n}]")]
    return [f"{path}: uninterrupted {repr(a)[:400]} != killed and resumed {repr(b)[:400]}"]


# ---------------------------------------------------------------------------------------------
# The test
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = ForkServer(tmp_path_factory.mktemp("attempts"))
    yield s
    s.close()


def check_attempt(kind: str, a: Attempt, events: list[Event], i: int, deaths: list[int], where: str,
                  state: RunState, reference_rows: dict[str, set[tuple]], run_dir: Path) -> None:
    """An attempt armed at ``events[i]`` died there (or, for a worker kill, its driver recorded
    the killed variants failed and finished the others), after reaching exactly the points
    before it, and left each stage whole or absent, as its marker says."""
    if kind == "worker":
        assert a.exit == 0, f"{where}: the driver must survive its workers: {a.describe()}"
        statuses = dict(query(run_dir, "SELECT id, status || ': ' || coalesce(error, '') FROM variants"))
        killed = {events[j].variant for j in deaths}
        for vid in dict.fromkeys(e.variant for e in events if e.variant):
            want = "failed: worker process exited with code -9" if vid in killed else "done: "
            assert statuses[vid].startswith(want), f"{where}: variant {vid} is {statuses[vid]!r}, expected {want!r}"
    else:
        assert a.signal == signal.SIGKILL, f"{where}: not killed: {a.describe()}"
        want = [e.point for e in events[:i + 1] if kind == "in_process" or e.driver_side]
        assert a.points(a.pid) == want, f"{where}: the resumed run did not redo exactly the missing work"
        assert a.orphans_s is not None and a.orphans_s < ORPHAN_LIMIT_S, (
            f"{where}: {a.orphans} worker(s) outlived the killed driver by {a.orphans_s} s")
        e = events[i]
        if e.point.startswith("store."):  # killed before, inside or after the stage's transaction
            committed = e.stage in state.stages[e.variant]
            assert committed == e.point.endswith(".committed"), (
                f"{where}: stage {e.stage} of {e.variant} is {'' if committed else 'not '}committed")
    problems = check_stages_atomic(run_dir, reference_rows, state)
    assert not problems, f"{where}: " + "\n".join(problems)


def test_kill_9_at_every_fault_point_then_resume_matches_uninterrupted(server, tiny_model_dir, tmp_path):
    config = tmp_path / "faults.yaml"
    config.write_text(yaml.safe_dump(sweep_config(tiny_model_dir)))
    plan = [pv.id for pv in expand(load_config(config))]

    ref_dir = tmp_path / "run-uninterrupted"
    ref = server.run(config, ref_dir)
    assert ref.exit == 0, ref.describe()
    assert set(ref.points()) == POINTS, "the uninterrupted run must reach every fault point of peft_audit.faults"
    segments, tail = reference_segments(ref.points(), plan)
    reference_rows = result_rows(ref_dir)

    run_dir = tmp_path / "run-killed"
    rng = random.Random(SEED)
    due = sorted(rng.sample(range(ATTEMPTS // 2), len(SUBPROCESS_ATTEMPTS)))
    subprocess_attempts = list(zip(due, rng.sample(SUBPROCESS_ATTEMPTS, len(SUBPROCESS_ATTEMPTS))))
    uncovered = set(POINTS)
    kills: Counter = Counter()  # (stage, kind) -> processes killed
    for n in range(ATTEMPTS):
        events = expected_events(segments, tail, run_state(run_dir, plan), plan)
        chosen = None
        if subprocess_attempts and subprocess_attempts[0][0] <= n:
            kind = subprocess_attempts[0][1]
            chosen = choose(kind, events, uncovered, ATTEMPTS - n, rng)
            if chosen:
                subprocess_attempts.pop(0)
        if chosen is None:
            kind = "in_process"
            chosen = choose(kind, events, uncovered, ATTEMPTS - n, rng)
        i, (fault, deaths) = chosen
        a = server.run(config, run_dir, fault=fault, in_process=kind == "in_process")
        where = f"attempt {n + 1} ({kind}, {fault} = {events[i]})"
        print(f"{where}: {a.seconds:.1f} s, {len(deaths)} killed")  # shown when the test fails
        check_attempt(kind, a, events, i, deaths, where, run_state(run_dir, plan), reference_rows, run_dir)
        kills.update((events[j].stage, kind) for j in deaths)
        uncovered.discard(events[i].point)
    assert not uncovered, f"points never killed: {sorted(uncovered)}"
    assert not subprocess_attempts, f"no point left for these local-executor attempts: {subprocess_attempts}"

    events = expected_events(segments, tail, run_state(run_dir, plan), plan)
    final = server.run(config, run_dir)
    assert final.exit == 0, final.describe()
    assert final.points() == [e.point for e in events], "the last resume did not redo exactly the missing work"
    assert not list((run_dir / "adapters").glob(".*partial-*")), "a partial adapter was left behind"
    reference, resumed = snapshot(ref_dir), snapshot(run_dir)
    assert resumed == reference, "\n".join(differences(reference, resumed))
    print(f"{sum(kills.values())} processes killed in {ATTEMPTS} attempts; by (stage, kind):",
          dict(sorted(kills.items())))
