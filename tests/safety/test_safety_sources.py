import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from peft_audit.benchmarks.categories import SAFETY_CATEGORIES
from peft_audit.benchmarks.safety import (
    SafetyDataError,
    builtin_prompts,
    load_safety_prompts,
    over_refusal_prompts,
)
from peft_audit.config import SafetyConfig


def test_builtin_has_ten_per_category_and_unique_ids():
    ps = builtin_prompts()
    for cat in SAFETY_CATEGORIES:
        assert sum(p.category == cat for p in ps) >= 10, cat
    assert len({p.prompt_id for p in ps}) == len(ps)
    assert all(p.benchmark == "safety" and p.prompt.strip() for p in ps)


def test_over_refusal_set():
    ps = over_refusal_prompts()
    assert len(ps) >= 20
    assert {(p.benchmark, p.category) for p in ps} == {("over_refusal", "benign")}
    assert any("kill a Python process" in p.prompt for p in ps)
    assert not {p.prompt_id for p in ps} & {p.prompt_id for p in builtin_prompts()}


def test_limit_per_category_is_seeded_and_keeps_order():
    a = load_safety_prompts(SafetyConfig(limit_per_category=3), seed=1)
    b = load_safety_prompts(SafetyConfig(limit_per_category=3), seed=1)
    c = load_safety_prompts(SafetyConfig(limit_per_category=3), seed=2)
    assert a == b and a != c
    assert len(a) == 3 * len(SAFETY_CATEGORIES)
    order = [p.prompt_id for p in builtin_prompts()]
    assert [order.index(p.prompt_id) for p in a] == sorted(order.index(p.prompt_id) for p in a)


def test_hexphi_layout_directory(tmp_path):
    (tmp_path / "category_1.csv").write_text('Request one\n"Request, with a comma"\n\n')
    (tmp_path / "category_4.csv").write_text("Malware request\n")
    (tmp_path / "category_11_tailored_financial_advice.csv").write_text("Advice request\n")
    (tmp_path / "README.md").write_text("ignored")
    ps = load_safety_prompts(SafetyConfig(source=str(tmp_path)))
    assert [(p.category, p.prompt) for p in ps] == [
        ("illegal_activity", "Request one"),
        ("illegal_activity", "Request, with a comma"),
        ("malware", "Malware request"),
        ("tailored_financial_advice", "Advice request"),
    ]
    assert ps[1].prompt_id == "illegal_activity-002"


def test_hexphi_dir_rejects_out_of_range_number(tmp_path):
    (tmp_path / "category_12.csv").write_text("x\n")
    with pytest.raises(SafetyDataError, match="outside 1..11"):
        load_safety_prompts(SafetyConfig(source=str(tmp_path)))


def test_csv_with_column_and_category_map(tmp_path):
    f = tmp_path / "probes.csv"
    f.write_text("id,question,kind\n1,Make a virus,cyber\n2,Stalk someone,privacy\n3,Scam people,fraud_deception\n")
    cfg = SafetyConfig(source=str(f), columns={"prompt": "question", "category": "kind"},
                       category_map={"cyber": "malware", "privacy": "privacy_violation"})
    ps = load_safety_prompts(cfg)
    assert [(p.category, p.prompt) for p in ps] == [
        ("malware", "Make a virus"), ("privacy_violation", "Stalk someone"), ("fraud_deception", "Scam people")]


def test_jsonl_unknown_category_names_valid_keys(tmp_path):
    f = tmp_path / "p.jsonl"
    f.write_text(json.dumps({"prompt": "x", "category": "weapons"}) + "\n")
    with pytest.raises(SafetyDataError) as e:
        load_safety_prompts(SafetyConfig(source=str(f)))
    assert "'weapons'" in str(e.value) and "physical_harm" in str(e.value) and "category_map" in str(e.value)


def test_jsonl_without_category_uses_star_map(tmp_path):
    f = tmp_path / "p.jsonl"
    f.write_text(json.dumps({"text": "a"}) + "\n" + json.dumps({"text": "b"}) + "\n")
    with pytest.raises(SafetyDataError, match="no category column"):
        load_safety_prompts(SafetyConfig(source=str(f), columns={"prompt": "text"}))
    ps = load_safety_prompts(SafetyConfig(source=str(f), columns={"prompt": "text"}, category_map={"*": "malware"}))
    assert [p.prompt_id for p in ps] == ["malware-001", "malware-002"]


def test_missing_prompt_column_and_bad_source(tmp_path):
    f = tmp_path / "p.csv"
    f.write_text("q\nx\n")
    with pytest.raises(SafetyDataError, match="no column 'prompt'"):
        load_safety_prompts(SafetyConfig(source=str(f)))
    with pytest.raises(SafetyDataError, match="neither 'builtin', 'hexphi'"):
        load_safety_prompts(SafetyConfig(source=str(tmp_path / "nope")))


def _serve(handler_fn, monkeypatch, tmp_path, token=None):
    """A loopback 'Hub' (HF_ENDPOINT pointed at it, offline mode off, cache in tmp_path)."""
    seen = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def _any(self):
            seen.append((self.command, self.path, self.headers.get("Authorization")))
            code, headers, body = handler_fn(self.path)
            self.send_response(code)
            for k, v in {**headers, "Content-Length": str(len(body))}.items():
                self.send_header(k, v)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        do_GET = do_HEAD = _any

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    import huggingface_hub.constants as hc

    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{httpd.server_address[1]}")
    if token:
        monkeypatch.setenv("HF_TOKEN", token)
    else:
        monkeypatch.delenv("HF_TOKEN", raising=False)
    return httpd, seen


def test_hexphi_download_skips_withheld_category(monkeypatch, tmp_path):
    files = {f"category_{n}.csv": f"Request {n} a\nRequest {n} b\n".encode() for n in range(1, 12) if n != 2}

    def hub(path):
        name = path.split("/resolve/main/")[-1]
        if name in files:
            return 200, {"ETag": f'"etag-{name}"', "X-Repo-Commit": "a" * 40}, files[name]
        return 404, {"X-Error-Code": "EntryNotFound"}, b'{"error": "Entry not found"}'

    httpd, seen = _serve(hub, monkeypatch, tmp_path, token="hf_test_token")
    try:
        ps = load_safety_prompts(SafetyConfig(source="hexphi"))
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert len(ps) == 20 and "child_abuse_content" not in {p.category for p in ps}
    assert ps[0] == ps[0].__class__("illegal_activity-001", "illegal_activity", "Request 1 a")
    assert ps[-1].category == "tailored_financial_advice"
    assert any("HEx-PHI/resolve/main/category_11.csv" in p and auth == "Bearer hf_test_token" for _, p, auth in seen)


@pytest.mark.parametrize("status", [401, 403])
def test_gated_without_token_says_how_to_get_access(status, monkeypatch, tmp_path):
    body = b'{"error": "Access to dataset is restricted. You must be authenticated to access it."}'
    httpd, seen = _serve(lambda path: (status, {"Content-Type": "application/json"}, body), monkeypatch, tmp_path)
    try:
        with pytest.raises(SafetyDataError) as e:
            load_safety_prompts(SafetyConfig(source="hexphi"))
    finally:
        httpd.shutdown()
        httpd.server_close()
    msg = str(e.value)
    assert any("category_1.csv" in p for _, p, _ in seen), "the loader never contacted the (loopback) Hub"
    assert "HEx-PHI" in msg and "HF_TOKEN" in msg and "accept" in msg
    assert "category_1.csv" in msg and "local copy" in msg


def test_offline_mode_points_at_a_local_copy(monkeypatch, tmp_path):
    import huggingface_hub.constants as hc

    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(SafetyDataError, match="local copy"):
        load_safety_prompts(SafetyConfig(source="hexphi"))
