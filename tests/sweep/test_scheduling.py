"""Executor scheduling with the real driver, subprocesses and store; only evaluation is faked
(see sweep_fakes.py), so these run in seconds."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import sweep_fakes

import peft_audit.report
from peft_audit.config import parse_config
from peft_audit.pipeline import run_sweep
from peft_audit.sweep.options import RunOptions
from peft_audit.store import Store
from peft_audit.sweep.executors import local as local_mod
from peft_audit.sweep.status import read_status

V = {"base_model": "test-org/m1", "method": "lora", "algo": "sft", "lr": 1e-3, "epochs": 1}
CFG = {
    "name": "fake",
    "base_models": ["test-org/m1"],
    "methods": ["lora"],
    "lr": [1e-4, 2e-4],
    "variants": [{**V, "label": "boom"}, {**V, "seed": 1, "label": "crash"}],
    "safety": {"enabled": False},
    "fairness": {"enabled": False},
    # one variant per job: these tests count workers and crashes per variant (groups sharing
    # one base: tests/sweep/test_shared_base.py and the kill -9 resume in test_real_sweeps.py)
    "share_base": False,
}


@pytest.fixture(autouse=True)
def _fake_worker(monkeypatch):
    # Reports are another module's job; the fake worker replaces evaluation in each subprocess.
    monkeypatch.setattr(peft_audit.report, "finish_run", lambda *a, **k: [], raising=False)
    monkeypatch.setattr(local_mod, "run_group", sweep_fakes.fake_worker)
    monkeypatch.setattr(local_mod.LocalExecutor.__init__, "__defaults__", (sweep_fakes.fake_worker,))


def calls(run_dir: Path) -> list[str]:
    p = run_dir / "calls.txt"
    return [line.split()[0] for line in p.read_text().splitlines()] if p.exists() else []


def statuses(run_dir: Path) -> dict[str, str]:
    with Store(run_dir / "results.sqlite") as s:
        return {(v["label"] or v["method"] + str(v["lr"])): v["status"] for v in s.variants()}


def test_subprocesses_isolate_failures_and_crashes(tmp_path):
    cfg = parse_config(CFG)
    result = run_sweep(cfg, tmp_path, RunOptions(jobs=2))
    assert statuses(tmp_path) == {"base" + "None": "done", "lora0.0001": "done", "lora0.0002": "done",
                                  "boom": "failed", "crash": "failed"}
    assert (result.done, result.failed) == (3, 2)
    with Store(tmp_path / "results.sqlite") as s:
        by_label = {v["label"]: v for v in s.variants("failed")}
        assert "deliberate failure" in by_label["boom"]["error"]
        assert "Traceback" in by_label["boom"]["traceback"] and "fake_evaluate" in by_label["boom"]["traceback"]
        assert "exited with code 3" in by_label["crash"]["error"]
        for v in s.variants("done"):
            metrics = s.rows("metrics", v["id"])
            assert [m["value"] for m in metrics] == [pytest.approx(sweep_fakes.fake_value(v["id"]))]
            assert len(s.rows("safety_samples", v["id"])) == 3
        # two workers serve the five variants, one after another; the crash took down only its
        # own worker, and a fresh one took that slot's next variant if there was one
        lines = [line.split() for line in (tmp_path / "calls.txt").read_text().splitlines()]
        pids = [pid for _, pid in lines]
        assert len(pids) == 5 and len(set(pids)) < 5 and len(set(pids)) <= 2 + 1
        crash_id = by_label["crash"]["id"]
        crash_pid = next(pid for vid, pid in lines if vid == crash_id)
        after_crash = lines[[vid for vid, _ in lines].index(crash_id) + 1:]
        assert all(pid != crash_pid for _, pid in after_crash)
    st = read_status(tmp_path)
    assert (st.counts["done"], st.counts["failed"], st.counts["running"]) == (3, 2, 0)
    assert st.mean_variant_s is not None and st.eta_s == 0 and st.driver_finished


def test_a_crash_in_a_group_fails_its_unfinished_members_only(tmp_path):
    """A base and its LoRA variants are one job (share_base): a member that kills the worker
    takes the group's members still to come with it, recorded as failed with the worker's exit;
    those before it are done, and --retry-failed finishes the rest. Each member's wall time is
    its own stages' (not the time since its group was handed out)."""
    cfg = parse_config({**CFG, "share_base": True, "lr": [1e-4],
                        "variants": [{**V, "seed": 1, "label": "crash"}, {**V, "seed": 2, "label": "after"}]})
    run_sweep(cfg, tmp_path, RunOptions(jobs=1))
    assert statuses(tmp_path) == {"base" + "None": "done", "lora0.0001": "done", "crash": "failed", "after": "failed"}
    with Store(tmp_path / "results.sqlite") as s:
        errors = {v["label"]: v["error"] for v in s.variants("failed")}
        walls = s.get_meta("variant_wall_seconds")
        assert all(walls[v["id"]] < 5 for v in s.variants("done"))
    assert "exited with code 3" in errors["crash"] and "exited with code 3" in errors["after"]
    lines = [line.split() for line in (tmp_path / "calls.txt").read_text().splitlines()]
    assert len({pid for _, pid in lines}) == 1  # one worker served the group, until the crash
    run_sweep(cfg, tmp_path, RunOptions(jobs=1, retry_failed=True))
    assert statuses(tmp_path) == {"base" + "None": "done", "lora0.0001": "done", "crash": "failed", "after": "done"}


def test_resume_skips_finished_and_retry_failed_reruns_only_failed(tmp_path):
    cfg = parse_config(CFG)
    run_sweep(cfg, tmp_path, RunOptions(jobs=2))
    first = calls(tmp_path)
    run_sweep(cfg, tmp_path, RunOptions(jobs=2))
    assert calls(tmp_path) == first  # nothing re-ran
    run_sweep(cfg, tmp_path, RunOptions(jobs=2, retry_failed=True))
    with Store(tmp_path / "results.sqlite") as s:
        failed = {v["id"] for v in s.variants("failed")}
    assert len(failed) == 2
    assert sorted(calls(tmp_path)[len(first):]) == sorted(failed)


def test_a_worker_killed_mid_message_fails_alone_and_blocks_no_one(tmp_path):
    # With one queue shared by all workers, a worker killed while writing held the queue's
    # lock forever and every other worker hung on its last message (the sweep never ended).
    cfg = parse_config({**CFG, "lr": [1e-4], "variants": [{**V, "label": "killed-mid-send"}, {**V, "seed": 1, "label": "crash"},
                                                         {**V, "seed": 2, "label": "ok"}]})
    result = run_sweep(cfg, tmp_path, RunOptions(jobs=3))
    assert statuses(tmp_path) == {"baseNone": "done", "lora0.0001": "done", "killed-mid-send": "failed",
                                  "crash": "failed", "ok": "done"}
    assert (result.done, result.failed) == (3, 2)
    with Store(tmp_path / "results.sqlite") as s:
        killed = next(v for v in s.variants("failed") if v["label"] == "killed-mid-send")
        assert killed["error"].startswith("worker process exited with code 9")


def test_max_hours_stops_scheduling_cleanly(tmp_path):
    result = run_sweep(parse_config(CFG), tmp_path, RunOptions(max_hours=1e-12))
    assert calls(tmp_path) == []
    assert set(statuses(tmp_path).values()) == {"pending"}
    assert result.done == result.failed == 0


def test_in_process_mode_uses_the_same_driver(tmp_path, monkeypatch):
    import peft_audit.pipeline as pipeline

    monkeypatch.setattr(pipeline, "evaluate_variant", sweep_fakes.fake_evaluate)
    cfg = parse_config({**CFG, "variants": [{**V, "label": "boom"}]})
    run_sweep(cfg, tmp_path, RunOptions(in_process=True))
    assert statuses(tmp_path) == {"baseNone": "done", "lora0.0001": "done", "lora0.0002": "done", "boom": "failed"}


def test_status_flags_interrupted_runs(tmp_path):
    from peft_audit.pipeline import prepare_run

    store, plan = prepare_run(parse_config(CFG), tmp_path)
    store.update_variant(plan[1].id, status="running")
    store.commit_stage(plan[1].id, "trained", 1.0)
    store.set_meta("driver", {"pid": 1, "host": "h", "heartbeat": 0.0})
    store.close()
    st = read_status(tmp_path)
    assert st.driver_alive is False
    assert [(r.id, r.current) for r in st.running] == [(plan[1].id, "generated")]
    assert st.counts["pending"] == len(plan) - 1


def test_mlflow_logs_each_finished_variant_once(tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    from peft_audit.tracking import MlflowTracker

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cfg = parse_config(CFG)
    for _ in range(2):  # the second run resumes: nothing new, nothing logged twice
        run_sweep(cfg, tmp_path, RunOptions(jobs=2, mlflow=True))
    tracker = MlflowTracker(tmp_path, experiment=cfg.name)
    runs = tracker.client.search_runs([tracker.experiment_id])
    with Store(tmp_path / "results.sqlite") as s:
        done = {v["id"]: v for v in s.variants("done")}
    logged = {r.data.tags["peft_audit.variant_id"]: r for r in runs}
    assert set(logged) == set(done)
    for vid, r in logged.items():
        assert r.data.metrics == {"safety.overall.safety_score": pytest.approx(sweep_fakes.fake_value(vid))}
        assert r.data.params["variant.method"] == done[vid]["method"]


@pytest.mark.parametrize("opts, module, hint", [
    (RunOptions(executor="ray"), "ray", "pip install 'peft-audit[ray]'"),
    (RunOptions(mlflow=True), "mlflow", "pip install 'peft-audit[mlflow]'"),
])
def test_missing_optional_extra_says_how_to_install_before_any_work(tmp_path, monkeypatch, opts, module, hint):
    from peft_audit.sweep import MissingDependencyError

    monkeypatch.setitem(sys.modules, module, None)  # makes `import <module>` raise ImportError
    with pytest.raises(MissingDependencyError, match=re.escape(hint)):
        run_sweep(parse_config(CFG), tmp_path / "run", opts)
    assert not (tmp_path / "run").exists()


def test_unknown_executor_names_the_valid_ones(tmp_path):
    with pytest.raises(ValueError, match="valid: local, ray"):
        run_sweep(parse_config(CFG), tmp_path, RunOptions(executor="slurm"))


def test_jobs_spread_over_visible_gpus(monkeypatch):
    from peft_audit.sweep.executors.local import gpu_for_slot, visible_gpus

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,5")
    assert visible_gpus("auto") == visible_gpus("cuda") == ["2", "5"]
    assert visible_gpus("cpu") == visible_gpus("cuda:1") == []
    assert [gpu_for_slot(k, ["2", "5"]) for k in range(4)] == ["2", "5", "2", "5"]
    assert gpu_for_slot(0, []) is None


DRIVER_SCRIPT = """
import sys
sys.path[:0] = {paths!r}
import sweep_fakes
import peft_audit.report
from peft_audit.config import parse_config
from peft_audit.pipeline import run_sweep
from peft_audit.sweep.options import RunOptions
from peft_audit.sweep.executors import local
local.LocalExecutor.__init__.__defaults__ = (sweep_fakes.fake_worker,)
peft_audit.report.finish_run = lambda *a, **k: []
run_sweep(parse_config({cfg!r}), {run_dir!r}, RunOptions())
"""


def test_workers_exit_when_their_driver_is_killed(tmp_path):
    import os
    import signal
    import subprocess
    import time

    cfg = {**CFG, "methods": [], "variants": [{**V, "label": "slow"}]}
    script = DRIVER_SCRIPT.format(paths=[str(Path(__file__).parent)], cfg=cfg, run_dir=str(tmp_path))
    driver = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while len(calls(tmp_path)) < 2:  # the base finished, the slow variant is sleeping in its worker
            assert driver.poll() is None and time.monotonic() < deadline
            time.sleep(0.2)
        worker_pid = int((tmp_path / "calls.txt").read_text().splitlines()[-1].split()[1])
    finally:
        driver.send_signal(signal.SIGKILL)  # the driver only: its worker is orphaned
        driver.wait()
    deadline = time.monotonic() + 60
    while _alive(worker_pid):
        assert time.monotonic() < deadline, "orphaned worker kept running after its driver died"
        time.sleep(0.2)
    assert statuses(tmp_path)["slow"] == "running"  # left for the next run to resume


def _alive(pid: int) -> bool:
    import os

    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (exited, not yet reaped by init) counts as ended
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


def test_library_output_goes_to_stage_logs_and_a_notice_is_shown_once(tmp_path, capfd):
    cfg = parse_config({**CFG, "variants": []})
    run_sweep(cfg, tmp_path, RunOptions(jobs=1))
    out, err = capfd.readouterr()
    terminal = out + err
    assert "chatter" not in terminal
    logs = sorted((tmp_path / "logs").glob("*/generate.log"))
    assert len(logs) == 3  # base and two learning rates, a folder each, named by label then id
    with Store(tmp_path / "results.sqlite") as s:
        ids = [v["id"] for v in s.variants()]
    assert sorted(p.parent.name.rsplit("-", 1)[1] for p in logs) == sorted(ids)
    assert any(p.parent.name.startswith("lora-sft-lr-1e-4-1-ep") for p in logs)
    for p in logs:
        text = p.read_text()
        vid = p.parent.name.rsplit("-", 1)[1]
        for line in ("library chatter on stdout", "library chatter on stderr", "C-level chatter"):
            assert f"{line} from {vid}" in text
    assert terminal.count("were longer than max_seq_len") == 1
    assert terminal.count("done ") >= 3  # a line per finished variant


def test_verbose_leaves_library_output_on_the_terminal(tmp_path, capfd):
    cfg = parse_config({**CFG, "variants": []})
    run_sweep(cfg, tmp_path, RunOptions(jobs=1, verbose=True))
    out, err = capfd.readouterr()
    assert (out + err).count("C-level chatter") == 3
    assert not (tmp_path / "logs").exists()


def test_library_warnings_of_the_report_go_to_its_log(tmp_path, capfd, monkeypatch):
    import warnings

    from peft_audit.sweep.logs import notice

    def noisy_report(run_dir):
        warnings.warn("invalid value encountered in divide", RuntimeWarning)
        notice("a category had no prompts left")
        return ["Report: here"]

    monkeypatch.setattr(peft_audit.report, "finish_run", noisy_report)
    run_sweep(parse_config({**CFG, "variants": []}), tmp_path, RunOptions(jobs=1))
    out, err = capfd.readouterr()
    assert "invalid value encountered" not in out + err
    assert "invalid value encountered" in (tmp_path / "logs" / "report.log").read_text()
    assert (out + err).count("a category had no prompts left") == 1 and "Report: here" in out + err


def test_workers_start_before_the_checks_and_none_outlives_a_run(tmp_path, monkeypatch):
    """The workers import their libraries while the driver checks and prepares the run; a
    worker no job needed (nothing left to run, a failed check) is stopped, not left behind."""
    import multiprocessing as mp

    import peft_audit.pipeline as pipeline

    during_checks = []
    checks = pipeline.preflight

    def preflight(cfg):
        during_checks.append(sorted(p.name for p in mp.active_children()))
        checks(cfg)

    monkeypatch.setattr(pipeline, "preflight", preflight)
    cfg = parse_config(CFG)
    run_sweep(cfg, tmp_path, RunOptions(jobs=2))
    assert during_checks == [["peft-audit-worker-0", "peft-audit-worker-1"]]
    assert "lora0.0001" in [k for k, v in statuses(tmp_path).items() if v == "done"]
    assert not mp.active_children()
    first = calls(tmp_path)
    run_sweep(cfg, tmp_path, RunOptions(jobs=2))  # resumed: nothing to run
    assert calls(tmp_path) == first and not mp.active_children()
    bad = parse_config({**CFG, "training": {"data": str(tmp_path / "missing.jsonl")}})
    with pytest.raises((ValueError, FileNotFoundError), match="missing.jsonl"):
        run_sweep(bad, tmp_path / "bad", RunOptions(jobs=2))
    assert not mp.active_children() and not (tmp_path / "bad").exists()
