"""The SQLite store: stage transactions are all-or-nothing and re-commits never duplicate."""

import pytest

from peft_audit.store import Store, StoreError


def make(tmp_path):
    s = Store(tmp_path / "results.sqlite")
    s.register_variant("v1", spec={"base_model": "m", "method": "lora", "algo": "sft", "lr": 1e-4, "epochs": 1},
                       config={"x": 1}, base_id="b0")
    return s


def sample(i):
    return {"prompt_id": f"p{i}", "benchmark": "safety", "category": "malware", "prompt": "q", "response": "r"}


def test_register_is_idempotent_and_status_updates(tmp_path):
    s = make(tmp_path)
    s.update_variant("v1", status="failed", error="E", traceback="T")
    s.register_variant("v1", spec={"base_model": "m"}, config={}, base_id=None)
    v = s.variant("v1")
    assert v["status"] == "failed" and v["error"] == "E" and v["spec"]["method"] == "lora"
    assert s.status_counts() == {"failed": 1}
    with pytest.raises(StoreError, match="unknown variant"):
        s.update_variant("nope", status="done")


def test_stage_commit_is_atomic_and_recommit_does_not_duplicate(tmp_path):
    s = make(tmp_path)
    s.commit_stage("v1", "generated", 1.0, safety=[sample(i) for i in range(3)])
    s.commit_stage("v1", "generated", 1.0, safety=[sample(i) for i in range(3)])
    assert len(s.rows("safety_samples", "v1")) == 3
    bad = [sample(3), {"prompt_id": "p4"}]  # missing required columns -> whole stage rolls back
    with pytest.raises(StoreError, match="'p4': missing required column.*category, prompt, response"):
        s.commit_stage("v1", "judged", 1.0, safety=bad)
    assert len(s.rows("safety_samples", "v1")) == 3
    assert set(s.stages_done("v1")) == {"generated"}
    s.clear_variant_results("v1")
    assert s.rows("safety_samples", "v1") == [] and s.stages_done("v1") == {}


def test_corrupt_file_gives_clear_error(tmp_path):
    p = tmp_path / "results.sqlite"
    p.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="not a usable peft-audit results store"):
        Store(p)
