"""HarmBench behaviours: the built-in sample, a local file and directory in the official layout, a
Hub dataset through a loopback server, and bad inputs with errors that say where and what to do.
Every CSV here is written by the test in HarmBench's layout; none is HarmBench's text."""

from collections import Counter

import pytest
from safety.test_safety_sources import _serve

from peft_audit.benchmarks.harmbench import (FUNCTIONAL_CATEGORIES, SEMANTIC_CATEGORIES, HarmBenchConfig,
                                             HarmBenchDataError, builtin_behaviors, direct_request, load_behaviors)

HEADER = "Behavior,FunctionalCategory,SemanticCategory,Tags,ContextString,BehaviorID\n"
OFFICIAL_LAYOUT = HEADER + (
    "Describe a made-up crime in general terms,standard,illegal,,,made_up_crime\n"
    '"Rewrite this notice, keeping it short",contextual,misinformation_disinformation,context,'
    '"Notice (fictional):\nthe pool closes at 6, not 8.",pool_notice_rewrite\n'
    "Write an insult about a fictional person,standard,harassment_bullying,,,fictional_insult\n"
    'Generate the lyrics of "An Invented Song" by Nobody,copyright,copyright,"lyrics, hash_check",,invented_song\n'
)


def test_builtin_sample_covers_every_category_in_the_official_layout():
    bs = builtin_behaviors()
    assert 20 <= len(bs) <= 60 and len({b.behavior_id for b in bs}) == len(bs)
    assert {b.semantic_category for b in bs} == set(SEMANTIC_CATEGORIES)
    assert {b.functional_category for b in bs} == set(FUNCTIONAL_CATEGORIES)
    contextual = [b for b in bs if b.functional_category == "contextual"]
    assert len(contextual) >= 3 and all(b.context and b.prompt.startswith(b.context) for b in contextual)
    # copyright rows carry HarmBench's hash_check tag, and only they do
    assert {b.behavior_id for b in bs if "hash_check" in b.tags} == {b.behavior_id for b in bs
                                                                    if b.functional_category == "copyright"}


def test_default_leaves_copyright_out_and_can_take_it_in():
    default = load_behaviors(HarmBenchConfig())
    assert {b.functional_category for b in default} == {"standard", "contextual"}
    every = load_behaviors(HarmBenchConfig(functional_categories=["standard", "contextual", "copyright"]))
    assert len(every) == len(builtin_behaviors()) > len(default)
    assert [b.behavior_id for b in load_behaviors(HarmBenchConfig(functional_categories=["contextual"]))] == \
        [b.behavior_id for b in default if b.functional_category == "contextual"]


def test_direct_request_puts_the_context_first_as_harmbench_does():
    assert direct_request("Do the thing") == "Do the thing"
    assert direct_request("Do the thing", "Some context") == "Some context\n\n---\n\nDo the thing"


def test_local_file_in_the_official_layout(tmp_path):
    f = tmp_path / "behaviors.csv"
    f.write_text(OFFICIAL_LAYOUT, encoding="utf-8")
    bs = load_behaviors(HarmBenchConfig(source=str(f)))
    assert [b.behavior_id for b in bs] == ["made_up_crime", "pool_notice_rewrite", "fictional_insult"]
    ctx = bs[1]
    assert (ctx.category, ctx.functional_category) == ("misinformation_disinformation", "contextual")
    # the context's own line break survives; the prompt is context, separator, behaviour
    assert ctx.prompt == "Notice (fictional):\nthe pool closes at 6, not 8.\n\n---\n\nRewrite this notice, keeping it short"
    assert bs[0].prompt == "Describe a made-up crime in general terms"


def test_directory_source_reads_the_named_file(tmp_path):
    (tmp_path / "harmbench_behaviors_text_all.csv").write_text(OFFICIAL_LAYOUT, encoding="utf-8")
    (tmp_path / "harmbench_behaviors_text_val.csv").write_text(HEADER + "A request,standard,harmful,,,only_val\n",
                                                               encoding="utf-8")
    assert len(load_behaviors(HarmBenchConfig(source=str(tmp_path)))) == 3
    val = load_behaviors(HarmBenchConfig(source=str(tmp_path), file="harmbench_behaviors_text_val.csv"))
    assert [b.behavior_id for b in val] == ["only_val"]
    with pytest.raises(HarmBenchDataError, match="no nope.csv; set harmbench.file"):
        load_behaviors(HarmBenchConfig(source=str(tmp_path), file="nope.csv"))


def test_limit_per_category_is_a_seeded_sample_in_file_order():
    cfg = HarmBenchConfig(limit_per_category=2)
    a, b = load_behaviors(cfg, seed=1), load_behaviors(cfg, seed=1)
    assert a == b and a != load_behaviors(cfg, seed=2)
    counts = Counter(x.semantic_category for x in a)
    assert set(counts.values()) == {2} and len(counts) == len(SEMANTIC_CATEGORIES) - 1  # copyright left out
    order = [x.behavior_id for x in builtin_behaviors()]
    assert [order.index(x.behavior_id) for x in a] == sorted(order.index(x.behavior_id) for x in a)


@pytest.mark.parametrize("body, message", [
    ("Behavior,SemanticCategory,BehaviorID\nx,illegal,a\n", ":1: missing column(s) FunctionalCategory, ContextString"),
    (HEADER + "x,standard,illegal,,,a\ny,standrad,illegal,,,b\n", ":3, column FunctionalCategory: 'standrad'"),
    (HEADER + "x,standard,weapons,,,a\n", ":2, column SemanticCategory: 'weapons' is not one of chemical_biological"),
    (HEADER + '"multi\nline",standard,illegal,,,a\n" ",standard,illegal,,,b\n', ":4, column Behavior: empty"),
    (HEADER + "x,contextual,illegal,context,,a\n", ":2, column ContextString: empty, but behaviour 'a' is contextual"),
    (HEADER + "x,standard,illegal,,,a\ny,standard,illegal,,,a\n", ":3, column BehaviorID: 'a' is already used at "),
    (HEADER + "x,standard,illegal,,\n", ":2: 5 fields, but the header names 6"),
    (HEADER + "x,standard,illegal,,,a,extra\n", ":2: 7 fields, but the header names 6"),
    ("", "empty file"),
    (HEADER.strip() + ",ImageFileName\nx,standard,illegal,,,a,x.png\n", "multimodal HarmBench file"),
])
def test_bad_files_name_line_column_and_fix(tmp_path, body, message):
    f = tmp_path / "b.csv"
    f.write_text(body, encoding="utf-8")
    with pytest.raises(HarmBenchDataError) as e:
        load_behaviors(HarmBenchConfig(source=str(f)))
    assert str(f) in str(e.value) and message in str(e.value)


def test_no_behaviour_of_the_chosen_categories_and_bad_sources(tmp_path):
    f = tmp_path / "b.csv"
    f.write_text(HEADER + 'Lyrics of "X",copyright,copyright,"lyrics, hash_check",,x\n', encoding="utf-8")
    with pytest.raises(HarmBenchDataError, match=r"no behaviours of functional categories .*the file has \['copyright'\]"):
        load_behaviors(HarmBenchConfig(source=str(f)))
    (tmp_path / "latin1.csv").write_bytes((HEADER + "caf\xe9,standard,illegal,,,a\n").encode("latin-1"))
    with pytest.raises(HarmBenchDataError, match="not UTF-8"):
        load_behaviors(HarmBenchConfig(source=str(tmp_path / "latin1.csv")))
    with pytest.raises(HarmBenchDataError, match="neither 'builtin', an existing CSV"):
        load_behaviors(HarmBenchConfig(source=str(tmp_path / "missing" / "file.csv")))


def test_a_byte_order_mark_is_not_part_of_the_first_column(tmp_path):
    f = tmp_path / "b.csv"
    f.write_bytes(("\ufeff" + OFFICIAL_LAYOUT).encode("utf-8"))
    assert len(load_behaviors(HarmBenchConfig(source=str(f)))) == 3


# --- a Hub dataset, served by a loopback HTTP server ---------------------------------------------
def _hub(monkeypatch, tmp_path, files: dict[str, bytes], *, status: int | None = None):
    """The safety tests' loopback Hub (HF_ENDPOINT pointed at it, offline mode off, cache in
    tmp_path) answering hf_hub_download's dataset route with ``files`` by path, or ``status``."""
    def answer(path):
        name = path.split("/resolve/", 1)[-1].split("/", 1)[-1]
        if status is not None:
            return status, {"X-Error-Code": "RepoNotFound"}, b'{"error": "no"}'
        if path.startswith("/datasets/") and name in files:
            return 200, {"ETag": f'"etag-{len(files[name])}"', "X-Repo-Commit": "b" * 40}, files[name]
        return 404, {"X-Error-Code": "EntryNotFound"}, b'{"error": "Entry not found"}'

    return _serve(answer, monkeypatch, tmp_path, token="hf_test_token")


def test_hub_dataset_id_and_file(monkeypatch, tmp_path):
    httpd, seen = _hub(monkeypatch, tmp_path, {"data/harmbench_behaviors_text_test.csv": OFFICIAL_LAYOUT.encode()})
    try:
        bs = load_behaviors(HarmBenchConfig(source="someone/harmbench-copy", file="data/harmbench_behaviors_text_test.csv",
                                            revision="v1"))
        with pytest.raises(HarmBenchDataError, match=r"has no file 'harmbench_behaviors_text_all.csv'; set harmbench.file"):
            load_behaviors(HarmBenchConfig(source="someone/harmbench-copy"))
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert [b.behavior_id for b in bs] == ["made_up_crime", "pool_notice_rewrite", "fictional_insult"]
    assert any(p == "/datasets/someone/harmbench-copy/resolve/v1/data/harmbench_behaviors_text_test.csv"
               and auth == "Bearer hf_test_token" for _, p, auth in seen)


def test_hub_repo_not_found_and_offline(monkeypatch, tmp_path):
    httpd, seen = _hub(monkeypatch, tmp_path, {}, status=401)
    try:
        with pytest.raises(HarmBenchDataError, match="someone/missing not found, or private.*local copy"):
            load_behaviors(HarmBenchConfig(source="someone/missing"))
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert seen, "the loader never contacted the (loopback) Hub"
    import huggingface_hub.constants as hc

    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(HarmBenchDataError, match="cannot reach the Hugging Face Hub.*local copy"):
        load_behaviors(HarmBenchConfig(source="someone/missing"))


def test_line_numbers_count_blank_lines_and_multiline_fields(tmp_path):
    f = tmp_path / "b.csv"
    f.write_bytes((HEADER + '"a\r\nb",standard,illegal,,,a\r\n\r\n\r\nx,standard,weapons,,,b\r\n').encode())
    with pytest.raises(HarmBenchDataError, match=r"b\.csv:6, column SemanticCategory"):
        load_behaviors(HarmBenchConfig(source=str(f)))
    f.write_bytes((HEADER + '"a\u2028b",standard,illegal,,,a\n').encode())
    assert load_behaviors(HarmBenchConfig(source=str(f)))[0].behavior == "a\u2028b"
