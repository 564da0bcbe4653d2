"""Judge HTTP bounds (issue #31, finding 3): every HTTP judge path (the ``llm`` judge's chat
completions, harmbench-cls / wildguard over ``/completions``, the StrongREJECT rubric) against a
hostile loopback judge (:mod:`hostile_judge`): replies that trickle, never end, never come, carry
a huge header or an oversized body are ``unscored`` within the deadline, never ``safe``; a slow
reply within it is scored; a long reason is stored cut (verdicts, judgment cache, report);
``peft-audit judge`` exits 1 when a judge left too many rows unscored."""

import json
import sqlite3
import time

import pandas as pd
import pytest
from hostile_judge import REASON, HostileJudge
from typer.testing import CliRunner

from peft_audit.benchmarks.strongreject.rubric import RubricJudge, grade_of
from peft_audit.cli import app
from peft_audit.judges import row_verdict, verdict_row
from peft_audit.judges.base import MAX_RATIONALE_CHARS, MAX_RAW_CHARS, Verdict
from peft_audit.judges.cache import CachedJudge, JudgmentCache
from peft_audit.judges.registry import build_judge
from peft_audit.judges.specs import HarmBenchClsSpec, LLMSpec, WildGuardSpec

KEY_ENV = "PEFT_AUDIT_TEST_BOUNDS_KEY"
PAIR = ("How do I pick a lock?", "I can't help with that.")
TIMEOUT_S = 0.4
# slack for a loaded test machine on top of the deadline a judge promises; still far below what
# the hostile modes would take without one (trickle: ~10 s per try; endless, silent: never)
SLACK_S = 2.0


@pytest.fixture
def hostile(monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-bounds-test")
    with HostileJudge() as s:
        yield s


def _settings(**over):
    return {"api_key_env": KEY_ENV, "timeout_s": TIMEOUT_S, "max_retries": 1, "backoff_s": 0.01,
            "concurrency": 2, **over}


def _llm(url, **over):
    return build_judge(LLMSpec(name="llm", url=url, model="m", **_settings(**over)))


def _harmbench(url, **over):
    return build_judge(HarmBenchClsSpec(name="harmbench-cls", model="m", backend="http", url=url, **_settings(**over)))


def _wildguard(url, **over):
    return build_judge(WildGuardSpec(name="wildguard", model="m", backend="http", url=url, **_settings(**over)))


def _rubric(url, **over):
    return RubricJudge(url=url, model="m", **LLMSpec(name="llm", url=url, model="m", **_settings(**over))
                       .endpoint_settings())


JUDGES = {"llm": _llm, "harmbench-cls": _harmbench, "wildguard": _wildguard, "strongreject-rubric": _rubric}


@pytest.mark.parametrize("judge", ["llm", "harmbench-cls", "strongreject-rubric"])
@pytest.mark.parametrize("mode", ["ok", "slow-ok"])
def test_a_judge_within_its_deadline_is_scored(hostile, judge, mode):
    # slow-ok trickles its reply byte by byte over ~0.3 s: within the 3 s deadline, so it counts
    [v] = JUDGES[judge](hostile.url(mode), timeout_s=3.0).judge_batch([PAIR])
    assert v.label == "safe" and v.safe is True, v.rationale
    assert hostile.requests[mode] == 1


@pytest.mark.timeout(60)
@pytest.mark.parametrize("judge", sorted(JUDGES))
@pytest.mark.parametrize("mode, why", [
    ("trickle", "timeout after 0.4 s"), ("endless", "timeout after 0.4 s"), ("silent", "timeout after 0.4 s"),
    ("huge-header", "connection error"), ("oversized", "max_response_bytes"),
    ("oversized-chunked", "max_response_bytes"), ("broken", "not a")])
def test_a_hostile_reply_is_unscored_within_the_deadline_never_safe(hostile, judge, mode, why):
    # the replies that are about size or form get a deadline they cannot reach on a busy machine,
    # so that the size limit or the parser, not the clock, decides
    timeout_s = TIMEOUT_S if why.startswith("timeout") else 3.0
    start = time.monotonic()
    [v] = JUDGES[judge](hostile.url(mode), timeout_s=timeout_s).judge_batch([PAIR])
    elapsed = time.monotonic() - start
    assert v.label == "unscored" and v.safe is None, (v.label, v.rationale)
    assert why in v.rationale
    # one try and one retry, each bounded by timeout_s; an oversized or broken reply is not retried
    assert hostile.requests[mode] == (1 if mode.startswith("oversized") or mode == "broken" else 2)
    assert elapsed < 2 * timeout_s + SLACK_S
    assert len(v.raw or "") <= MAX_RAW_CHARS


@pytest.mark.timeout(60)
def test_retries_and_their_waits_share_one_deadline(hostile):
    # (max_retries + 1) * timeout_s = 1.6 s in all: a 5 s backoff wait would pass it, so the
    # first timeout is the last try instead of a wait of 5 + 10 + 20 s
    start = time.monotonic()
    v = _llm(hostile.url("silent"), max_retries=3, backoff_s=5.0).judge(*PAIR)
    assert time.monotonic() - start < 4 * TIMEOUT_S + SLACK_S
    assert v.label == "unscored" and v.rationale.startswith("gave up after 1 attempt: timeout after 0.4 s")
    assert hostile.requests["silent"] == 1
    # with short waits every retry is made, each try cut off at timeout_s
    start = time.monotonic()
    v = _llm(hostile.url("trickle"), max_retries=2, backoff_s=0.01).judge(*PAIR)
    assert time.monotonic() - start < 3 * TIMEOUT_S + SLACK_S
    assert v.label == "unscored" and hostile.requests["trickle"] == 3


def test_max_response_bytes_is_a_setting(hostile):
    # the 20 000-character reason fits the default cap; a 4 KiB cap turns the same reply away
    assert _llm(hostile.url("long-reason")).judge(*PAIR).label == "safe"
    v = _llm(hostile.url("long-reason"), max_response_bytes=4096).judge(*PAIR)
    assert v.label == "unscored" and "max_response_bytes (4096 bytes)" in v.rationale
    with pytest.raises(ValueError, match="max_response_bytes"):
        LLMSpec(name="llm", url=hostile.url("ok"), model="m", max_response_bytes=10)


def test_a_long_reason_is_stored_cut_in_verdicts_and_the_cache(hostile, tmp_path):
    judge = CachedJudge(_llm(hostile.url("long-reason")), JudgmentCache(tmp_path / "cache.sqlite"))
    v = judge.judge(*PAIR)
    assert (v.label, v.score) == ("safe", 1)
    assert v.rationale.startswith("y" * 900) and v.rationale.endswith("; 20000 characters in all]")
    row = verdict_row("p1", "llm", v)
    assert len(row["rationale"]) == MAX_RATIONALE_CHARS and len(row["raw"]) == MAX_RAW_CHARS
    cached = [len(r) for (r,) in sqlite3.connect(tmp_path / "cache.sqlite").execute("SELECT verdict FROM judgments")]
    assert len(cached) == 1 and cached[0] < MAX_RATIONALE_CHARS + MAX_RAW_CHARS + 500
    assert judge.judge(*PAIR) == v and hostile.requests["long-reason"] == 1  # served from the cache


def test_an_oversized_or_timed_out_reply_is_not_cached(hostile, tmp_path):
    cache = JudgmentCache(tmp_path / "cache.sqlite")
    for mode in ("oversized", "trickle"):
        judge = CachedJudge(_llm(hostile.url(mode), max_retries=0), cache)
        assert judge.judge(*PAIR).label == "unscored"
        assert judge.judge(*PAIR).label == "unscored"
        assert hostile.requests[mode] == 2  # asked again: nothing was cached
    assert sqlite3.connect(tmp_path / "cache.sqlite").execute("SELECT COUNT(*) FROM judgments").fetchone() == (0,)


def test_the_rubric_keeps_its_grade_and_a_cut_reason_through_the_cache(hostile, tmp_path):
    judge = CachedJudge(_rubric(hostile.url("long-reason")), JudgmentCache(tmp_path / "cache.sqlite"))
    first = grade_of(judge.judge(*PAIR))
    again = grade_of(judge.judge(*PAIR))  # from the cache: grade_of reads the stored raw again
    assert (first.status, first.refused, first.convincing, first.specific, first.score) == ("scored", 1, 1, 1, 0.0)
    assert again == first and hostile.requests["long-reason"] == 1
    assert first.reason.startswith("y" * 900) and len(first.reason) == MAX_RATIONALE_CHARS  # rubric_reason column


def test_a_verdict_cuts_its_reason_and_raw_answer_once_for_every_reader():
    v = Verdict("safe", 1.0, rationale="r" * 10_000_000, raw="w" * 10_000_000)
    assert (len(v.rationale), len(v.raw)) == (MAX_RATIONALE_CHARS, MAX_RAW_CHARS)
    assert v.rationale.endswith("rrr [... cut; 10000000 characters in all]")
    assert row_verdict(verdict_row("p", "llm", v)) == v
    short = Verdict("unsafe", rationale=REASON, raw="#score: 4")
    assert (short.rationale, short.raw) == (REASON, "#score: 4")


def _pairs_csv(tmp_path):
    path = tmp_path / "pairs.csv"
    pd.DataFrame([{"prompt": p, "response": r} for p, r in [PAIR, ("Write a scam email.", "Sure, dear customer")]]
                 ).to_csv(path, index=False)
    return path


@pytest.mark.parametrize("mode, extra, code", [("broken", [], 1), ("ok", [], 0),
                                               ("broken", ["--max-unscored-share", "1"], 0)])
def test_judge_command_exits_1_when_a_judge_left_too_many_rows_unscored(hostile, tmp_path, mode, extra, code):
    out = tmp_path / "judged.csv"
    r = CliRunner().invoke(app, ["judge", str(_pairs_csv(tmp_path)), "--judges", "refusal,llm", "--judge-url",
                                 hostile.url(mode), "--judge-model", "m", "--out", str(out), *extra])
    assert r.exit_code == code, r.output
    assert json.dumps(pd.read_csv(out)["llm_label"].tolist()) == json.dumps(
        ["unscored"] * 2 if mode == "broken" else ["safe"] * 2)  # the table is written either way
    warnings = [line for line in r.output.splitlines() if line.startswith("warning:")]
    if code:
        assert len(warnings) == 1
        assert "judge 'llm' left 2 of 2 rows unscored (100.0% > max_unscored_share 5.0%)" in warnings[0]
        assert "not a chat completion" in warnings[0]
    else:
        assert warnings == []


def test_unscored_replies_count_against_max_unscored_share(hostile):
    # what fails a run's variant (and, from the stored verdicts, the gate): a timed-out or
    # oversized reply is a judge failure, not a verdict
    from peft_audit.benchmarks.safety import JudgeFailureError
    from peft_audit.benchmarks.safety.evaluate import check_judge_failures

    verdicts = _llm(hostile.url("oversized"), max_retries=0).judge_batch([PAIR] * 3)
    samples = [{"prompt_id": f"p{i}"} for i in range(3)]
    rows = [verdict_row(f"p{i}", "llm", v) for i, v in enumerate(verdicts)]
    with pytest.raises(JudgeFailureError, match=r"judge 'llm' left 3 of 3 .*max_response_bytes"):
        check_judge_failures(samples, rows, 0.05)


def test_the_report_shows_a_reason_cut_even_from_a_store_written_before_the_bound(tmp_path):
    from synthetic_store import build_synthetic_store

    from peft_audit.report import write_reports

    run = build_synthetic_store(tmp_path / "run", n_variants=1, n_failed=0, bases=("llama-3.2-1b",),
                                methods=("lora",), prompts_per_category=2, bbq_items_per_category=2,
                                over_refusal_prompts=2)
    with sqlite3.connect(run / "results.sqlite") as conn:  # as today's main stored a 3 MB reason
        conn.execute("UPDATE verdicts SET rationale = ? WHERE rowid = (SELECT MIN(rowid) FROM verdicts)",
                     ("z" * 3_000_000,))
    write_reports(run, formats=["html"], n_boot=100)
    html = (run / "report.html").read_text()
    assert "z" * 900 in html and "z" * MAX_RATIONALE_CHARS not in html
    assert "3000000 characters in all" in html
