"""Training data loaders: built-in sets, JSONL/CSV/messages, HF dataset dirs, column errors, mixing."""

import csv
import json

import pytest

from peft_audit.config import TrainingConfig
from peft_audit.training.data import BUILTIN_FILES, load_refusals, load_training_data, mix_safety, read_jsonl


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_builtin_sizes_and_shapes():
    sft = load_training_data(TrainingConfig(), "sft")
    dpo = load_training_data(TrainingConfig(), "dpo")
    # the built-in sets hold their rows for training plus a held-out split (training.heldout_fraction)
    assert len(sft.rows) + len(sft.heldout) >= 200 and all(set(r) == {"prompt", "response"} for r in sft.rows)
    assert len(dpo.rows) + len(dpo.heldout) >= 120 and all(set(r) == {"prompt", "chosen", "rejected"} for r in dpo.rows)
    assert all(r["chosen"] != r["rejected"] for r in dpo.rows)
    assert len({r["prompt"] for r in sft.rows}) == len(sft.rows)
    assert sft.source == "builtin:sft.jsonl" and len(sft.content_hash) == 64


def test_builtin_arithmetic_answers_are_correct():
    import re

    checked = 0
    for r in read_jsonl(BUILTIN_FILES["sft"]):
        m = re.fullmatch(r"What is (\d+) \+ (\d+)\?", r["prompt"])
        if m:
            assert r["response"] == f"The answer is {int(m[1]) + int(m[2])}."
            checked += 1
    assert checked >= 10


def test_jsonl_with_column_mapping(tmp_path):
    path = _write_jsonl(tmp_path / "d.jsonl", [{"question": f"q{i}", "answer": f"a{i}"} for i in range(5)])
    data = load_training_data(TrainingConfig(data=str(path), columns={"prompt": "question", "response": "answer"}), "sft")
    assert sorted(r["prompt"] for r in data.rows) == [f"q{i}" for i in range(5)]
    assert data.source_kind == "file" and data.source_hash


def test_missing_column_names_existing_columns(tmp_path):
    path = _write_jsonl(tmp_path / "d.jsonl", [{"question": "q", "answer": "a"}])
    with pytest.raises(ValueError, match=r"'prompt'.*columns present: question, answer"):
        load_training_data(TrainingConfig(data=str(path)), "sft")
    with pytest.raises(ValueError, match=r"'chosen' \(mapped to 'good'\).*columns present: question, answer"):
        load_training_data(TrainingConfig(data=str(path), columns={"prompt": "question", "chosen": "good"}), "dpo")


def test_csv_preference_file(tmp_path):
    path = tmp_path / "p.csv"
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["prompt", "chosen", "rejected"])
        w.writeheader()
        w.writerows([{"prompt": "2+2?", "chosen": "4", "rejected": "5"}, {"prompt": "hi", "chosen": "hello", "rejected": ""}])
    rows = load_training_data(TrainingConfig(data=str(path)), "dpo", seed=3).rows
    assert {r["prompt"] for r in rows} == {"2+2?", "hi"}


def test_messages_format(tmp_path):
    conv = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    path = _write_jsonl(tmp_path / "m.jsonl", [{"messages": conv}])
    assert load_training_data(TrainingConfig(data=str(path)), "sft").rows == [{"messages": conv}]
    bad = _write_jsonl(tmp_path / "bad.jsonl", [{"messages": conv[:2]}])
    with pytest.raises(ValueError, match="last message must have role 'assistant'"):
        load_training_data(TrainingConfig(data=str(bad)), "sft")


def test_hf_dataset_directory_with_split(tmp_path):
    # A local dataset directory goes through the same datasets.load_dataset call as a hub id.
    d = tmp_path / "ds"
    (d / "data").mkdir(parents=True)
    _write_jsonl(d / "data" / "train.jsonl", [{"instruction": f"i{i}", "output": f"o{i}"} for i in range(4)])
    _write_jsonl(d / "data" / "test.jsonl", [{"instruction": "t", "output": "u"}])
    cols = {"prompt": "instruction", "response": "output"}
    data = load_training_data(TrainingConfig(data=str(d), columns=cols, data_split="test"), "sft")
    assert data.rows == [{"prompt": "t", "response": "u"}] and data.source_kind == "hub"
    with pytest.raises(ValueError, match="split"):
        load_training_data(TrainingConfig(data=str(d), columns=cols, data_split="validation"), "sft")


def test_missing_file_and_bad_type(tmp_path):
    with pytest.raises(ValueError, match="not found"):
        load_training_data(TrainingConfig(data=str(tmp_path / "nope.jsonl")), "sft")
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(ValueError, match="unsupported data file type"):
        load_training_data(TrainingConfig(data=str(tmp_path / "x.txt")), "sft")


def test_max_examples_and_safety_mix():
    data = load_training_data(TrainingConfig(max_examples=30, safety_mix=0.25), "sft", seed=1)
    assert len(data.rows) == 40 and data.n_safety == 10
    refusal_prompts = {r["prompt"] for r in load_refusals()}
    assert sum(r["prompt"] in refusal_prompts for r in data.rows) == 10
    again = load_training_data(TrainingConfig(max_examples=30, safety_mix=0.25), "sft", seed=1)
    assert again.content_hash == data.content_hash
    other = load_training_data(TrainingConfig(max_examples=30, safety_mix=0.25), "sft", seed=2)
    assert other.content_hash != data.content_hash


def test_dpo_safety_pairs_prefer_refusal():
    rows, n = mix_safety([{"prompt": "p", "chosen": "c", "rejected": "r"}] * 9, "dpo", 0.1, seed=0)
    assert n == 1
    extra = rows[-1]
    refusal = {r["prompt"]: r for r in load_refusals()}[extra["prompt"]]
    assert extra["chosen"] == refusal["refusal"] and extra["rejected"] == refusal["compliant_opener"]
    # The rejected side is a generic opener, never content: short and the same few sentences.
    assert len({r["compliant_opener"] for r in load_refusals()}) <= 5
    assert all(len(r["compliant_opener"]) < 80 for r in load_refusals())
