"""Hostile input files (issue #31): every reader names the file and line of what is wrong, an
empty benchmark fails before any model loads and never passes the gate, and a prompt too long
for the byte limit or the model's context is refused. Each case is a real file under tmp_path."""

import csv
import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from peft_audit.benchmarks.fairness import load_bbq
from peft_audit.benchmarks.fairness.loader import BBQFormatError
from peft_audit.benchmarks.harmbench import HarmBenchDataError, load_behaviors
from peft_audit.benchmarks.harmbench.config import HarmBenchConfig
from peft_audit.benchmarks.safety.config import SafetyConfig
from peft_audit.benchmarks.safety.sources import SafetyDataError, load_safety_prompts
from peft_audit.benchmarks.strongreject.config import StrongRejectConfig
from peft_audit.benchmarks.strongreject.prompts import StrongRejectDataError, load_forbidden_prompts
from peft_audit.benchmarks.xstest import XSTestDataError, load_xstest_prompts
from peft_audit.benchmarks.xstest.config import XSTestConfig
from peft_audit.cli import app
from peft_audit.csvio import CSVFormatError, read_csv_records
from peft_audit.gate import GateThresholds, evaluate_gate
from peft_audit.jsonl import JSONLineError, read_records
from peft_audit.judges.judge_file import JudgeFileError, read_table
from peft_audit.textio import DEFAULT_MAX_PROMPT_BYTES
from peft_audit.training.data import load_training_data
from peft_audit.config import TrainingConfig

BIG = "word " * 200_000  # 1 MB, the prompt


def _bbq_rows(n=2):
    rows = [json.loads(line) for line in load_bbq.__globals__["BUILTIN_PATH"].read_text().splitlines() if line.strip()]
    return [r for r in rows if r["category"] == "Age"][:n]


def _jsonl(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


# -- the shared readers ------------------------------------------------------------------------

@pytest.mark.parametrize("line, kind", [("[1, 2]", "an array"), ('"text"', "a string"), ("3", "a number"),
                                        ("null", "null"), ("true", "true/false")])
def test_jsonl_line_that_is_not_an_object_names_its_line(tmp_path, line, kind):
    f = _jsonl(tmp_path / "a.jsonl", [{"prompt": "x"}, "", line])
    with pytest.raises(JSONLineError, match=rf"a\.jsonl:3: each line must be a JSON object, got {kind}"):
        read_records(f)


def test_jsonl_bad_json_names_line_not_offset_and_bom_blank_lines_and_u2028_are_fine(tmp_path):
    f = tmp_path / "a.jsonl"
    f.write_text('\ufeff{"p": "a\u2028b"}\n\n  \n{"p": 1}\r\n', encoding="utf-8")
    assert read_records(f) == [(f"{f}:1", {"p": "a\u2028b"}), (f"{f}:4", {"p": 1})]
    f.write_text('{"p": 1}\n{"p": 2,}\n', encoding="utf-8")
    with pytest.raises(JSONLineError, match=r"a\.jsonl:2: not valid JSON \(.* at column 9\)"):
        read_records(f)


@pytest.mark.parametrize("body, message", [
    ("a,b\n1,2,3\n", "a.csv:2: 3 fields, but the header names 2"),
    ("a,b\n1,2\n\n\n4\n", "a.csv:5: 1 fields, but the header names 2"),
    ("a,a\n1,2\n", "a.csv:1: column 'a' appears twice"),
    ("a,,c\n1,2,3\n", "a.csv:1: header field 2 is empty"),
    ('a,b\n"x\ny",1\n"' + "z" * 100 + '",2\n', "a.csv:4: a field is longer than 50 characters; raise k.max"),
])
def test_csv_reader_names_the_line(tmp_path, body, message):
    f = tmp_path / "a.csv"
    f.write_text(body, encoding="utf-8")
    with pytest.raises(CSVFormatError) as e:
        read_csv_records(f, field_limit=50, limit_key="k.max")
    assert str(e.value).startswith(str(f)) and message in str(e.value)
    assert csv.field_size_limit() == 131072  # the process-wide limit is put back


def test_csv_reader_takes_bom_blank_lines_and_multiline_fields(tmp_path):
    f = tmp_path / "a.csv"
    f.write_bytes('\ufeffa,b\r\n\r\n"x\r\ny",1\r\n'.encode())
    assert read_csv_records(f) == (["a", "b"], [(f"{f}:3", {"a": "x\r\ny", "b": "1"})])


# -- each benchmark's loader -------------------------------------------------------------------

def _safety(tmp_path, name, body, **kw):
    f = tmp_path / name
    f.write_text(body, encoding="utf-8")
    return lambda: load_safety_prompts(SafetyConfig(source=str(f), **kw))


@pytest.mark.parametrize("name, body, message", [
    ("p.jsonl", '{"prompt": "a", "category": "malware"}\n["b", "malware"]\n', "p.jsonl:2: each line must be a JSON object"),
    ("p.jsonl", '{"prompt": "a", "category": "malware"}\n{"prompt": "  ", "category": "malware"}\n',
     "p.jsonl:2: empty prompt"),
    ("p.jsonl", '{"prompt": "a", "category": null}\n', "p.jsonl:1: column 'category' is empty or not text"),
    ("p.jsonl", '{"prompt": "a", "category": NaN}\n', "p.jsonl:1: column 'category' is empty or not text"),
    ("p.jsonl", '{"prompt": 5, "category": "malware"}\n', "p.jsonl:1: column 'prompt' must be text"),
    ("p.jsonl", json.dumps({"prompt": BIG, "category": "malware"}) + "\n",
     "p.jsonl:1: prompt of 999999 bytes, over the limit of 32768 (safety.max_prompt_bytes)"),
    ("p.jsonl", "", "no prompts found"),
    ("p.csv", "prompt,category\na,malware,extra\n", "p.csv:2: 3 fields, but the header names 2"),
    ("p.csv", "prompt,category\na\n", "p.csv:2: 1 fields, but the header names 2"),
    ("p.csv", "prompt,category\na,\n", "p.csv:2: column 'category' is empty"),
    ("p.csv", "text,category\na,malware\n", "p.csv:2: no column 'prompt'"),
    ("p.csv", f'prompt,category\n"{BIG}",malware\n', "p.csv:2: a field is longer than 32768 characters; raise "
                                                      "safety.max_prompt_bytes"),
])
def test_safety_table_errors_name_file_and_line(tmp_path, name, body, message):
    with pytest.raises(SafetyDataError, match=message.replace("(", r"\(").replace(")", r"\)")):
        _safety(tmp_path, name, body)()


def test_safety_byte_limit_is_the_sections_setting(tmp_path):
    body = json.dumps({"prompt": "x" * 100, "category": "malware"}) + "\n"
    assert len(_safety(tmp_path, "p.jsonl", body)()) == 1
    with pytest.raises(SafetyDataError, match="p.jsonl:1: prompt of 100 bytes, over the limit of 50"):
        _safety(tmp_path, "p.jsonl", body, max_prompt_bytes=50)()


@pytest.mark.parametrize("body, message", [
    ('a\n""\nc\n', "category_1.csv:2: empty prompt"),  # was dropped silently, and a category could vanish
    ("a\nb, c\n", "category_1.csv:2: 2 fields, but a HEx-PHI file holds one prompt per row"),
    (f'"{BIG}"\n', "category_1.csv:1: a field is longer than 32768 characters"),
    ("\n\n", "category_1.csv: no prompts"),
])
def test_hexphi_directory_errors_name_file_and_line(tmp_path, body, message):
    (tmp_path / "category_1.csv").write_text(body, encoding="utf-8")
    with pytest.raises(SafetyDataError, match=message):
        load_safety_prompts(SafetyConfig(source=str(tmp_path)))


def test_hexphi_blank_lines_are_skipped_and_lines_kept(tmp_path):
    (tmp_path / "category_1.csv").write_text('\ufeffa\n\n"b, with a comma"\n', encoding="utf-8")
    got = load_safety_prompts(SafetyConfig(source=str(tmp_path)))
    assert [(p.prompt, p.where.rsplit(":", 1)[1]) for p in got] == [("a", "1"), ("b, with a comma", "3")]


@pytest.mark.parametrize("label", [True, 1.5, "1", None, 3, -1])
def test_bbq_label_must_be_an_integer_option(tmp_path, label):
    rows = _bbq_rows()
    rows[1]["label"] = label
    with pytest.raises(BBQFormatError, match=rf"Age\.jsonl:2: label must be 0, 1 or 2 \(an integer\), got {label!r}"):
        load_bbq(_jsonl(tmp_path / "Age.jsonl", rows))


@pytest.mark.parametrize("field, value, message", [
    ("question", "", "question is empty"), ("ans1", None, "ans1 must be text"), ("context", ["a"], "context must be text"),
    ("example_id", None, "example_id must be a number or text"),
    ("additional_metadata", "x", "additional_metadata must be an object"),
    ("additional_metadata", {"stereotyped_groups": 1}, "additional_metadata must be an object whose stereotyped_groups"),
])
def test_bbq_fields_are_checked(tmp_path, field, value, message):
    rows = _bbq_rows()
    rows[0][field] = value
    with pytest.raises(BBQFormatError, match=rf"Age\.jsonl:1: {message}"):
        load_bbq(_jsonl(tmp_path / "Age.jsonl", rows))


def test_bbq_file_given_twice_is_an_error_naming_both_lines(tmp_path):
    rows = _bbq_rows(3)
    f = _jsonl(tmp_path / "twice.jsonl", rows + rows)
    with pytest.raises(BBQFormatError, match=r"twice\.jsonl:4: example_id \S+ of category age was already read at "
                                             r".*twice\.jsonl:1; is a file given twice"):
        load_bbq(f)


def test_bbq_duplicate_ids_across_two_files_of_a_directory(tmp_path):
    rows = _bbq_rows(2)
    _jsonl(tmp_path / "Age.jsonl", rows)
    _jsonl(tmp_path / "Gender_identity.jsonl", [rows[1]])  # an Age row copied into another category's file
    with pytest.raises(BBQFormatError, match=r"Gender_identity\.jsonl:1: .*already read at .*Age\.jsonl:2"):
        load_bbq(tmp_path)


@pytest.mark.parametrize("body", ["", "\n\n", "\ufeff\n"])
def test_bbq_empty_source_is_an_error(tmp_path, body):
    f = tmp_path / "empty.jsonl"
    f.write_text(body, encoding="utf-8")
    with pytest.raises(BBQFormatError, match="empty.jsonl'?: no usable items: the source holds no rows"):
        load_bbq(f)


def test_bbq_all_rows_bad_with_skip_is_an_error(tmp_path):
    f = _jsonl(tmp_path / "Age.jsonl", ["[1]", "[2]"])
    with pytest.raises(BBQFormatError, match=r"no usable items: all 2 rows are bad .*Age\.jsonl:1"):
        load_bbq(f, skip_bad_items=True)


def test_bbq_overlong_context_names_line(tmp_path):
    rows = _bbq_rows()
    rows[1]["context"] = BIG
    with pytest.raises(BBQFormatError, match=r"Age\.jsonl:2: context and question of \d+ bytes, over the limit of "
                                             r"32768 \(fairness.max_prompt_bytes\)"):
        load_bbq(_jsonl(tmp_path / "Age.jsonl", rows))


XS_HEADER = "id,prompt,type,label,focus,note\n"


@pytest.mark.parametrize("name, body, message", [
    ("x.jsonl", '\ufeff{"prompt": "a", "type": "homonyms"}\n7\n', "x.jsonl:2: each line must be a JSON object"),
    ("x.csv", XS_HEADER + "1,a,homonyms,safe,,\n2,b,homonyms\n", "x.csv:3: 3 fields, but the header names 6"),
    ("x.jsonl", '{"prompt": "a", "type": NaN}\n', "x.jsonl:1: column 'type' must be text, got nan"),
    ("x.jsonl", '{"prompt": "a", "type": null}\n', "x.jsonl:1: column 'type' is empty"),
    ("x.jsonl", '{"id": 1, "prompt": "a", "type": "homonyms"}\n{"id": 1, "prompt": "b", "type": "homonyms"}\n',
     "x.jsonl:2: id '1' already used at"),
    ("x.csv", XS_HEADER + f'1,"{BIG}",homonyms,safe,,\n', "x.csv:2: a field is longer than 32768"),
    ("x.jsonl", json.dumps({"prompt": "é" * 20000, "type": "homonyms"}) + "\n",
     "x.jsonl:1: prompt of 40000 bytes, over the limit of 32768 (xstest.max_prompt_bytes)"),
])
def test_xstest_errors_name_file_and_line(tmp_path, name, body, message):
    f = tmp_path / name
    f.write_text(body, encoding="utf-8")
    with pytest.raises(XSTestDataError) as e:
        load_xstest_prompts(XSTestConfig(source=str(f)))
    assert str(f) in str(e.value) and message in str(e.value)


def test_xstest_jsonl_with_bom_reads(tmp_path):
    f = _jsonl(tmp_path / "x.jsonl", ['\ufeff{"prompt": "a", "type": "homonyms"}'])
    assert [p.where for p in load_xstest_prompts(XSTestConfig(source=str(f)))] == [f"{f}:1"]


HB_HEADER = "Behavior,FunctionalCategory,SemanticCategory,Tags,ContextString,BehaviorID\n"


def test_harmbench_overlong_test_case_names_line(tmp_path):
    f = tmp_path / "b.csv"
    # each field fits, the test case (context, separator, behaviour) does not
    f.write_text(HB_HEADER + "x,standard,illegal,,,a\n" + f"{'y' * 8000},contextual,illegal,,{'c' * 10000},b\n")
    with pytest.raises(HarmBenchDataError, match=r"b\.csv:3: prompt of 18007 bytes, over the limit of 16384"):
        load_behaviors(HarmBenchConfig(source=str(f), max_prompt_bytes=16384))


@pytest.mark.parametrize("body, message", [
    ("category,source,forbidden_prompt\nViolence,x,a, b\n", "s.csv:2: 4 fields, but the header names 3"),
    (f'category,source,forbidden_prompt\nViolence,x,"{BIG}"\n', "s.csv:2: a field is longer than 32768"),
])
def test_strongreject_errors_name_file_and_line(tmp_path, body, message):
    f = tmp_path / "s.csv"
    f.write_text(body, encoding="utf-8")
    with pytest.raises(StrongRejectDataError, match=message):
        load_forbidden_prompts(StrongRejectConfig(source=str(f)))


def test_strongreject_sample_prompts_are_whole():
    # an unquoted comma once cut the first prompt short and the rest went unread
    first = load_forbidden_prompts(StrongRejectConfig())[0]
    assert first.prompt.endswith("styled to look like real reporting.")


# -- the judge command's reader and training data ----------------------------------------------

@pytest.mark.parametrize("name, body, message", [
    ("r.csv", "prompt,response\nhi,hello,extra\nyo,hey\n", "r.csv:2: 3 fields, but the header names 2"),
    ("r.jsonl", '{"prompt": "hi", "response": "x"}\n["hi", "x"]\n', "r.jsonl:2: each line must be a JSON object"),
    ("r.jsonl", '{"prompt": "hi", "response": "x"}\n{"prompt": "hi" "response": "x"}\n', "r.jsonl:2: not valid JSON"),
    ("r.json", '[{"prompt": "hi",\n "response": }]', "r.json:2: not valid JSON"),
    ("r.json", '{"prompt": "hi"}', "r.json: a .json file of responses must hold a list of objects"),
    ("r.csv", "prompt,response\n", "r.csv: no rows to judge"),
])
def test_judge_file_reader_names_the_line(tmp_path, name, body, message):
    f = tmp_path / name
    f.write_text(body, encoding="utf-8")
    with pytest.raises(JudgeFileError) as e:
        read_table(f)
    assert str(e.value).startswith(str(f)) and message in str(e.value)


def test_judge_command_refuses_empty_prompt_and_ragged_row_in_one_line(tmp_path):
    f = tmp_path / "r.jsonl"
    _jsonl(f, [{"prompt": "hi", "response": "x"}, {"response": "no prompt"}])
    r = CliRunner().invoke(app, ["judge", str(f), "--judges", "keyword", "--out", str(tmp_path / "o.csv")])
    assert r.exit_code == 2 and f"{f}:2: column 'prompt' (the prompt) is empty" in r.output
    g = tmp_path / "r.csv"
    g.write_text("prompt,response\nhi,hello,extra\n")
    r = CliRunner().invoke(app, ["judge", str(g), "--judges", "keyword", "--out", str(tmp_path / "o.csv")])
    assert r.exit_code == 2 and f"{g}:2: 3 fields" in r.output and "This is a bug" not in r.output


@pytest.mark.parametrize("name, body, message", [
    ("t.csv", "prompt,response\na,b\nc,d,e\n", "t.csv:3: 3 fields, but the header names 2"),
    ("t.jsonl", '{"prompt": "a", "response": "b"}\n"c"\n', "t.jsonl:2: each line must be a JSON object, got a string"),
    ("t.jsonl", '{"prompt": "a", "response": "b"}\n\n{"prompt": " ", "response": "b"}\n', "t.jsonl:3: column 'prompt' "
                                                                                         "(the prompt) is empty"),
    ("t.jsonl", '{"prompt": "a", "response": null}\n', "t.jsonl:1: column 'response' is missing or null"),
    ("t.jsonl", '{"messages": [{"role": "user"}, {"role": "assistant", "content": "b"}]}\n',
     "t.jsonl:1: message 1 of 'messages' needs a 'role' and a 'content'"),
    ("t.jsonl", '{"messages": [{"role": "user", "content": ""}, {"role": "assistant", "content": "b"}]}\n',
     "t.jsonl:1: 'messages' has no user turn with text"),
])
def test_training_data_errors_name_file_and_line(tmp_path, name, body, message):
    f = tmp_path / name
    f.write_text(body, encoding="utf-8")
    with pytest.raises(ValueError) as e:
        load_training_data(TrainingConfig(data=str(f)), "sft")
    assert str(e.value).startswith(str(f)) and message in str(e.value)


def test_training_csv_has_no_prompt_field_limit(tmp_path):
    f = tmp_path / "t.csv"
    f.write_text(f'prompt,response\n"{BIG}",b\n')  # training truncates to max_seq_len tokens
    assert len(load_training_data(TrainingConfig(data=str(f)), "sft").rows[0]["prompt"]) == len(BIG)


# -- an empty benchmark never passes -----------------------------------------------------------

def test_empty_bbq_source_fails_the_runs_checks_before_any_model_loads(tmp_path, tiny_model_dir):
    import yaml

    (tmp_path / "empty.jsonl").write_text("")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"name": "e", "base_models": [str(tiny_model_dir)], "safety": {"enabled": False},
                                   "fairness": {"source": str(tmp_path / "empty.jsonl")}}))
    r = CliRunner().invoke(app, ["run", str(cfg), "--out", str(tmp_path / "run")])
    assert r.exit_code == 2 and "empty.jsonl': no usable items: the source holds no rows" in r.output, r.output
    assert not (tmp_path / "run").exists()  # refused before the run directory (or a model) was touched


def test_run_frames_know_the_benchmarks_the_config_enables(tmp_path):
    from peft_audit.analysis.data import enabled_benchmarks
    from peft_audit.config import parse_config
    from peft_audit.store import Store

    cfg = parse_config({"name": "e", "fairness": {"enabled": False}, "xstest": {"enabled": True}})
    with Store(tmp_path / "results.sqlite") as store:
        assert enabled_benchmarks(store) is None  # a store without a config: not known
        store.set_meta("config", cfg.model_dump(mode="json"))
        assert enabled_benchmarks(store) == {"safety", "xstest", "utility"}  # utility: on by default


def _one_lora_with_safety() -> tuple[pd.DataFrame, pd.DataFrame]:
    """A base and one LoRA variant, both done, with one unchanged overall safety row."""
    variants = pd.DataFrame([
        {"id": "b", "label": "base", "method": "base", "status": "done", "base_id": None, "error": None},
        {"id": "v", "label": "lora", "method": "lora", "status": "done", "base_id": "b", "error": None}])
    paired = pd.DataFrame([{"variant_id": "v", "base_id": "b", "benchmark": "safety", "metric": "safety_score",
                            "category": "overall", "value": 0.9, "base_value": 0.9, "delta": 0.0, "ci_low": 0.0,
                            "ci_high": 0.0, "n": 10, "p_value": 1.0, "p_adj": 1.0, "test": "x"}])
    return variants, paired


def test_gate_fails_an_enabled_benchmark_without_results():
    variants, paired = _one_lora_with_safety()
    has = {("v", "safety"): True, ("b", "safety"): True}
    # without the run's config: fairness is "not evaluated in this run", and the safety check passes
    loose = evaluate_gate(variants, paired, GateThresholds(), has_results=has)
    assert loose.passed and any("not checked: fairness" in n for n in loose.notes)
    strict = evaluate_gate(variants, paired, GateThresholds(), has_results=has, enabled=frozenset({"safety", "fairness"}))
    assert not strict.passed
    (v,) = strict.violations
    assert v.metric == "fairness" and "enabled in this run but has no results" in v.message
    assert not any("fairness" in n for n in strict.notes)
    base_only = evaluate_gate(variants, paired, GateThresholds(), enabled=frozenset({"safety", "fairness"}),
                              has_results={**has, ("v", "fairness"): True})
    assert [c.message for c in base_only.violations] == [
        "fairness is enabled in this run but has no results for its base model: it evaluated nothing (an empty "
        "source?), so nothing was checked"]


def test_gate_says_utility_not_measured_for_a_variant_without_its_own_rows():
    """Task utility's items are each variant's own held-out rows (an adapter trained elsewhere has
    none, and a base is scored only on its variants' rows): enabled but absent is "not measured",
    said in a note, never a violation and never a passed check."""
    variants, paired = _one_lora_with_safety()
    has = {("v", "safety"): True, ("b", "safety"): True}
    res = evaluate_gate(variants, paired, GateThresholds(), has_results=has, enabled=frozenset({"safety", "utility"}))
    assert res.passed and not any(c.metric.startswith("heldout") for c in res.checks)
    assert "lora: utility not measured for this variant; not checked" in res.notes
    measured = evaluate_gate(variants, paired, GateThresholds(), enabled=frozenset({"safety", "utility"}),
                             has_results={**has, ("v", "utility"): True})
    assert not any("utility" in n for n in measured.notes) and not measured.violations


def test_byte_limit_is_in_every_section_and_not_in_the_protocol():
    from peft_audit.benchmarks.registry import BENCHMARKS
    from peft_audit.config import parse_config
    from peft_audit.sweep.plan import eval_protocol_hash

    assert DEFAULT_MAX_PROMPT_BYTES == 32 * 1024
    assert all(b.section().max_prompt_bytes == DEFAULT_MAX_PROMPT_BYTES for b in BENCHMARKS.values())
    raised = {name: {"max_prompt_bytes": 100_000} for name in ("safety", "fairness")}
    assert eval_protocol_hash(parse_config(raised)) == eval_protocol_hash(parse_config({}))


# -- a prompt longer than the model's context ------------------------------------------------------

def test_prompt_that_leaves_no_room_for_the_answer_fails_naming_its_line(tmp_path):
    from tiny_models import make_tiny_model

    from peft_audit.benchmarks.base import PromptTooLongError, VariantRun

    model, tok = make_tiny_model()  # context: 512 tokens
    f = _jsonl(tmp_path / "p.jsonl", [{"prompt": "hello", "category": "malware"}, "",
                                      {"prompt": "xq7 " * 300, "category": "malware"}])
    from peft_audit.models.backends.transformers import TransformersModel

    run = VariantRun("v", tmp_path, TransformersModel(model, tok), set(), sink=None, judges=lambda s: [], progress=None)
    cfg = SafetyConfig(source=str(f), max_new_tokens=16)
    prompts = load_safety_prompts(cfg)
    run.check_prompts_fit(prompts[:1], cfg, "safety")  # fits
    with pytest.raises(PromptTooLongError, match=rf"{f}:3: prompt of \d+ tokens \(chat template included\) plus "
                                                 r"safety.max_new_tokens 16 exceeds the model's context of 512 tokens"):
        run.check_prompts_fit(prompts, cfg, "safety")
    long_answer = SafetyConfig(source=str(f), max_new_tokens=510)
    with pytest.raises(PromptTooLongError, match=rf"{f}:1: .* plus safety.max_new_tokens 510"):
        run.check_prompts_fit(prompts[:1], long_answer, "safety")


def test_prompt_too_long_for_a_local_models_context_fails_the_runs_checks(tmp_path, tiny_model_dir):
    import yaml

    f = _jsonl(tmp_path / "p.jsonl", [{"prompt": "hello", "category": "malware"},
                                      {"prompt": "xq7 " * 300, "category": "malware"}])
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"name": "e", "base_models": [str(tiny_model_dir)], "fairness": {"enabled": False},
                                   "safety": {"source": str(f), "max_new_tokens": 8, "over_refusal": False}}))
    r = CliRunner().invoke(app, ["run", str(cfg), "--out", str(tmp_path / "run")])
    assert r.exit_code == 2, r.output
    assert f"{f}:2: prompt of" in r.output and "exceeds the model's context of 512 tokens" in r.output
    assert not (tmp_path / "run").exists()


def test_human_labels_file_with_a_ragged_row_names_its_line(tmp_path):
    from peft_audit.judges.spot_check import LabelsError, labels_path, read_labels

    labels_path(tmp_path).write_text("variant_id,prompt_id,label\nv,p1,refusal\n\nv,p2,compliance,extra\n")
    with pytest.raises(LabelsError, match=r"human_labels\.csv:4: 4 fields, but the header names 3"):
        read_labels(tmp_path)
