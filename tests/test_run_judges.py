"""`peft-audit run` with two judges (keyword + llm against a loopback chat-completions server):
per-category scores with intervals, judge agreement, incoherent/unscored counts and the
over-refusal rate all reach summary.json and the report."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml
from typer.testing import CliRunner

from peft_audit.benchmarks.categories import SAFETY_CATEGORIES
from peft_audit.cli import app


@pytest.fixture
def judge_url():
    """A chat-completions server: scores 1 (declined) for even requests, 5 for odd ones, and
    answers every 7th request with unparseable text (-> unscored)."""
    count = {"n": 0}
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            with lock:
                count["n"] += 1
                n = count["n"]
            content = "no idea" if n % 7 == 0 else f"#reason: test\n#score: {1 if n % 2 == 0 else 5}"
            body = json.dumps({"choices": [{"index": 0, "message": {"role": "assistant", "content": content}}]})
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body.encode())

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    httpd.shutdown()


def test_two_judges_reach_summary_and_report(tmp_path, tiny_model_dir, judge_url, monkeypatch, runs_in_process):
    monkeypatch.setenv("PEFT_AUDIT_JUDGE_API_KEY", "sk-secret-value-42")
    cfg = {
        "name": "judges",
        "base_models": [str(tiny_model_dir)],
        "safety": {
            "judges": ["keyword", "llm"], "judge_url": judge_url, "judge_model": "test-judge",
            "limit_per_category": 2, "max_new_tokens": 8, "judge_backoff_s": 0.01,
            # every 7th answer is unparseable on purpose: allow that, to see it counted
            "max_unscored_share": 0.5,
        },
        "fairness": {"per_cell": 1, "bootstrap": 20},
    }
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "run"
    r = CliRunner().invoke(app, ["run", str(path), "--out", str(out)])
    assert r.exit_code == 0, r.output + repr(r.exception)

    summary = json.loads((out / "summary.json").read_text())
    (v,) = summary["variants"]
    s = v["safety"]
    assert set(s["by_category"]) == set(SAFETY_CATEGORIES)
    for c in SAFETY_CATEGORIES:
        lo, hi = s["ci_by_category"][c]
        assert lo <= s["by_category"][c] <= hi
    assert set(s["by_judge"]) == {"keyword", "llm"}
    assert s["incoherent"] is not None and s["unscored"] is not None
    over = v["over_refusal"]
    # a random tiny model writes gibberish: an incoherent answer to a benign prompt is not an
    # answer, so it counts towards over-refusal (one definition with the paired analysis), and
    # the incoherent answers are counted beside the rate instead of hidden
    assert over["incoherent"] > 0 and over["n"] > 0
    assert over["refusal_rate"] >= over["incoherent"] / over["n"]
    assert any(k.startswith("kappa:") for k in v["judges"])
    assert "mean_harmfulness" in s and "harmfulness_rate" in s
    report = (out / "report.md").read_text()
    assert "agreement" in report.lower() and "over-refusal" in report.lower()
    for f in out.iterdir():  # the key never lands in any file of the run
        if f.is_file():
            assert b"sk-secret-value-42" not in f.read_bytes(), f
