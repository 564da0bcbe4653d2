"""A judge outage fails the audit instead of passing it silently.

`peft-audit run` with judges [refusal, llm] and the llm judge's endpoint down (connection
refused), or accepting connections but never answering: the variant fails with the judge's
error; once the judge is back, `--retry-failed` re-judges the stored responses without
generating them again. `peft-audit gate` fails a variant (or its base) on which a judge left
more than --max-unscored-share of the responses unscored; summary.json and `show` give each
judge's unscored share.
"""

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml
from typer.testing import CliRunner

from peft_audit.benchmarks.categories import SAFETY_CATEGORIES
from peft_audit.benchmarks.safety import safety_metrics
from peft_audit.cli import app
from peft_audit.judges.base import SAFE_BY_LABEL
from peft_audit.store import Store


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Healthy(BaseHTTPRequestHandler):
    """A chat-completions judge that rates every response 1 (declined)."""

    requests = 0

    def log_message(self, *a):
        pass

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        type(self).requests += 1
        body = json.dumps({"choices": [{"index": 0, "message": {"role": "assistant",
                                                               "content": "#reason: declines\n#score: 1"}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def _config(tmp_path, model_dir, port: int) -> str:
    cfg = {
        "name": "judge-outage",
        "base_models": [str(model_dir)],
        "safety": {
            "judges": ["refusal", "llm"], "judge_url": f"http://127.0.0.1:{port}/v1", "judge_model": "test-judge",
            "limit_per_category": 1, "max_new_tokens": 4, "over_refusal": False,
            "judge_timeout_s": 0.3, "judge_max_retries": 0, "judge_backoff_s": 0.01,
        },
        "fairness": {"enabled": False},
    }
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def _variant(out):
    with Store(out / "results.sqlite") as s:
        (v,) = s.variants()
        return v, s.stages_done(v["id"]), s.rows("stages", v["id"]), s.rows("safety_samples", v["id"])


@pytest.mark.parametrize("outage", ["closed-port", "never-answers"])
def test_judge_outage_fails_variant_and_retry_rejudges_stored_responses(tmp_path, tiny_model_dir, outage,
                                                                        runs_in_process):
    port = _free_port()
    silent = None
    if outage == "never-answers":  # the kernel accepts connections; nobody ever reads or answers
        silent = socket.socket()
        silent.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        silent.bind(("127.0.0.1", port))
        silent.listen(64)
    cfg = _config(tmp_path, tiny_model_dir, port)
    out = tmp_path / "run"
    t0 = time.perf_counter()
    r = CliRunner().invoke(app, ["run", cfg, "--out", str(out)])
    elapsed = time.perf_counter() - t0
    if silent is not None:
        silent.close()
    assert r.exit_code == 1, r.output + repr(r.exception)
    assert elapsed < 60  # timeout 0.3 s, no retries: the judge does not hang on a silent server
    v, done, _, samples = _variant(out)
    assert v["status"] == "failed"
    err = v["error"]
    assert "JudgeFailureError" in err and "'llm'" in err and "100.0%" in err and "5.0%" in err
    assert f"127.0.0.1:{port}" in err
    assert ("connection refused" in err) if outage == "closed-port" else ("timeout after 0.3 s" in err)
    assert "generated" in done and "judged" not in done  # responses kept, judging not committed
    n = len(samples)
    assert n == len(SAFETY_CATEGORIES)
    with Store(out / "results.sqlite") as s:
        assert s.rows("verdicts", v["id"]) == []  # a failed judging stage leaves no verdicts behind
    generated_at = {row["stage"]: row["finished_at"] for row in _variant(out)[2]}["generated"]

    # The judge is back (same URL: the judge is part of the run's protocol).
    _Healthy.requests = 0
    httpd = ThreadingHTTPServer(("127.0.0.1", port), _Healthy)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        r = CliRunner().invoke(app, ["run", cfg, "--out", str(out), "--retry-failed"])
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert r.exit_code == 0, r.output + repr(r.exception)
    v, done, stages, samples_after = _variant(out)
    assert v["status"] == "done" and v["error"] is None
    assert {"generated", "judged", "metrics"} <= set(done)
    by_stage = {row["stage"]: row["finished_at"] for row in stages}
    assert by_stage["generated"] == generated_at  # not generated again ...
    assert samples_after == samples  # ... the stored responses were judged
    assert "generate" not in v["timings"] and "judge" in v["timings"]
    assert _Healthy.requests == n
    summary = json.loads((out / "summary.json").read_text())
    (sv,) = summary["variants"]
    assert sv["safety"]["failed_share_by_judge"] == {"llm": 0.0, "refusal": 0.0}


# ---------------------------------------------------------------------------------------------
# gate, summary.json and show on a store where the llm judge left responses unscored
# ---------------------------------------------------------------------------------------------
def _judged_variant(store, vid, method, base_id, llm_failed: int, n_per_cat: int = 2):
    """A finished variant: refusal and llm verdicts on every response, ``llm_failed`` of the llm
    verdicts unscored (a failed request), metrics from the real metric code."""
    spec = {"base_model": "m", "method": method, "algo": None if method == "base" else "sft",
            "lr": None if method == "base" else 1e-4, "epochs": None if method == "base" else 1}
    store.register_variant(vid, spec=spec, config=spec, base_id=base_id)
    samples = [{"prompt_id": f"{c}-{i}", "benchmark": "safety", "category": c, "prompt": "p", "response": "No.",
                "n_new_tokens": 2} for c in SAFETY_CATEGORIES for i in range(n_per_cat)]
    verdicts = []
    for k, smp in enumerate(samples):
        llm = ("unscored", "gave up after 1 attempts: connection error to http://judge/v1: connection refused") \
            if k < llm_failed else ("safe", "declines")
        for judge, (label, why) in {"refusal": ("refusal", None), "llm": llm, "combined": ("safe", None)}.items():
            safe = SAFE_BY_LABEL[label]
            verdicts.append({"prompt_id": smp["prompt_id"], "judge": judge, "label": label,
                             "safe": None if safe is None else int(safe), "score": 1.0 if label == "safe" else None,
                             "hazard": None, "rationale": why, "raw": None})
    store.commit_stage(vid, "generated", 0.0, safety=samples)
    store.commit_stage(vid, "judged", 0.0, verdicts=verdicts)
    store.commit_stage(vid, "metrics", 0.0, metrics=safety_metrics(samples, verdicts))
    store.update_variant(vid, status="done")


@pytest.mark.parametrize("where", ["variant", "base"])
def test_gate_fails_when_a_judge_left_responses_unscored(tmp_path, where):
    n = 2 * len(SAFETY_CATEGORIES)  # 22 responses; 3 unscored = 13.6%
    with Store(tmp_path / "results.sqlite") as s:
        _judged_variant(s, "b", "base", None, llm_failed=3 if where == "base" else 0)
        _judged_variant(s, "ft", "lora", "b", llm_failed=3 if where == "variant" else 0)
    r = CliRunner().invoke(app, ["gate", str(tmp_path)])  # default --max-unscored-share 0.05
    assert r.exit_code == 1, r.output
    assert "VIOLATION" in r.output and "unscored_share:llm" in r.output
    whose = "this variant" if where == "variant" else "its base model b"
    assert f"judge 'llm' left 3 of {n} safety responses of {whose} unscored (13.6%, allowed 5.0%)" in r.output
    assert "connection refused" in r.output
    # a looser threshold passes the same store: the check is the threshold, not the presence of failures
    r = CliRunner().invoke(app, ["gate", str(tmp_path), "--max-unscored-share", "0.2"])
    assert r.exit_code == 0, r.output

    # every place a run is shown gives each judge's unscored share, not only the combined one
    from peft_audit.summary import build_summary

    with Store(tmp_path / "results.sqlite") as s:
        by_id = {v["id"]: v["safety"] for v in build_summary(s)["variants"]}
    bad = "ft" if where == "variant" else "b"
    assert by_id[bad]["unscored"] == 0  # the combined verdict hides it ...
    assert by_id[bad]["unscored_share_by_judge"] == {"llm": pytest.approx(3 / n), "refusal": 0.0}  # ... these do not
    assert by_id[bad]["failed_share_by_judge"]["llm"] == pytest.approx(3 / n)
    r = CliRunner().invoke(app, ["show", str(tmp_path)], env={"COLUMNS": "250"})
    assert r.exit_code == 0, r.output
    assert "llm 14%" in r.output and "refusal 0%" in r.output
