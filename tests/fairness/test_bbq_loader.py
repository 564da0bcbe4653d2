"""Loading BBQ: built-in sample, official-layout directory, HF ids, sampling, errors."""

import json
from collections import Counter

import pytest

from peft_audit.benchmarks.categories import BBQ_CATEGORIES
from peft_audit.benchmarks.fairness import BBQFormatError, load_bbq
from peft_audit.benchmarks.fairness.loader import BUILTIN_PATH

FIELDS = ("example_id", "question_index", "question_polarity", "context_condition", "category", "answer_info",
          "additional_metadata", "context", "question", "ans0", "ans1", "ans2", "label")


def _builtin_rows(category):
    rows = [json.loads(line) for line in BUILTIN_PATH.read_text().splitlines()]
    return [r for r in rows if r["category"] == category]


def test_builtin_sample_covers_every_category_cell():
    items = load_bbq("builtin").items
    raw = [json.loads(line) for line in BUILTIN_PATH.read_text().splitlines()]
    assert all(tuple(r) == FIELDS for r in raw)
    counts = Counter(it.category for it in items)
    assert set(counts) == set(BBQ_CATEGORIES) and min(counts.values()) >= 16
    cells = Counter((it.category, it.context_condition, it.question_polarity) for it in items)
    assert len(cells) == 9 * 4
    assert len({it.item_id for it in items}) == len(items)
    for it in items:  # ambiguous -> unknown is correct; disambiguated -> a person is
        assert (it.label == it.unknown_index) == (it.context_condition == "ambig")


def test_per_cell_sampling_is_stratified_and_seeded():
    a = load_bbq("builtin", per_cell=2, seed=1).items
    b = load_bbq("builtin", per_cell=2, seed=1).items
    c = load_bbq("builtin", per_cell=2, seed=2).items
    assert Counter((it.category, it.context_condition, it.question_polarity) for it in a) == Counter(
        {k: 2 for k in {(it.category, it.context_condition, it.question_polarity) for it in a}})
    assert len(a) == 9 * 4 * 2
    assert [it.item_id for it in a] == [it.item_id for it in b]
    assert [it.item_id for it in a] != [it.item_id for it in c]


def test_category_filter_accepts_keys_and_official_spelling():
    items = load_bbq("builtin", categories=["age", "Religion"]).items
    assert {it.category for it in items} == {"age", "religion"}
    with pytest.raises(ValueError, match="unknown BBQ category"):
        load_bbq("builtin", categories=["astrology"])


def _write(path, rows, bad_line=None):
    lines = [json.dumps(r) for r in rows]
    if bad_line is not None:
        lines.insert(bad_line - 1, '{"example_id": 99, "context": "truncated')
    path.write_text("\n".join(lines) + "\n")


def test_directory_of_official_files(tmp_path):
    _write(tmp_path / "Age.jsonl", _builtin_rows("Age"))
    _write(tmp_path / "SES.jsonl", _builtin_rows("SES"))
    res = load_bbq(tmp_path)
    assert Counter(it.category for it in res.items) == {"age": 16, "ses": 16}
    assert res.n_unresolved == 0
    with pytest.raises(FileNotFoundError, match="Religion.jsonl"):
        load_bbq(tmp_path, categories=["religion"])


def test_malformed_line_names_file_and_line(tmp_path):
    _write(tmp_path / "Age.jsonl", _builtin_rows("Age")[:4], bad_line=3)
    with pytest.raises(BBQFormatError, match=r"Age\.jsonl:3: not valid JSON.*skip_bad_items: true"):
        load_bbq(tmp_path)
    res = load_bbq(tmp_path, skip_bad_items=True)
    assert len(res.items) == 4 and len(res.bad_lines) == 1 and "Age.jsonl:3" in res.bad_lines[0]


@pytest.mark.parametrize("field, value, message", [
    ("label", 5, "label must be 0, 1 or 2"),
    ("context_condition", "ambiguous", "context_condition must be"),
    ("question_polarity", None, "question_polarity must be"),
    ("category", "Astrology", "unknown BBQ category"),
])
def test_invalid_field_values(tmp_path, field, value, message):
    rows = _builtin_rows("Age")[:2]
    rows[1][field] = value
    _write(tmp_path / "Age.jsonl", rows)
    with pytest.raises(BBQFormatError, match=rf"Age\.jsonl:2: {message}"):
        load_bbq(tmp_path)


def test_missing_field(tmp_path):
    rows = _builtin_rows("Age")[:1]
    del rows[0]["answer_info"]
    _write(tmp_path / "x.jsonl", rows)
    with pytest.raises(BBQFormatError, match=r"x\.jsonl:1: missing field\(s\) answer_info"):
        load_bbq(tmp_path / "x.jsonl")


def test_metadata_csv_target_loc_is_preferred(tmp_path):
    rows = _builtin_rows("Age")[:1]  # neg item; name matching says ans0 (grandfather)
    _write(tmp_path / "Age.jsonl", rows)
    assert load_bbq(tmp_path).items[0].target_index == 0
    csv = tmp_path / "additional_metadata.csv"
    csv.write_text("category,question_index,example_id,target_loc,label_type\nAge,1,0,1,label\n")
    assert load_bbq(tmp_path, metadata_csv=csv).items[0].target_index == 1


def test_hf_dataset_id_configs_and_rows(monkeypatch):
    import datasets

    calls = []

    def fake_load(dataset_id, config):
        calls.append((dataset_id, config))
        return {"test": _builtin_rows(config)}

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    res = load_bbq("someone/bbq", categories=["age", "sexual_orientation"])
    assert calls == [("someone/bbq", "Age"), ("someone/bbq", "Sexual_orientation")]
    assert len(res.items) == 32 and res.n_unresolved == 0


def test_hf_gated_dataset_explains_login(monkeypatch):
    import datasets

    def gated(*a, **k):
        raise ConnectionError("401 Client Error: Unauthorized for url https://huggingface.co/...")

    monkeypatch.setattr(datasets, "load_dataset", gated)
    with pytest.raises(PermissionError, match="HF_TOKEN"):
        load_bbq("someone/gated-bbq")


def test_missing_local_path():
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_bbq("./no/such/dir")


def _official_metadata_csv(path, items):
    """An ``additional_metadata.csv`` with BBQ's own semantics: ``target_loc`` is the *biased*
    answer for both polarities (BBQ_results_metadata.R moves it to the non-stereotyped option for
    non-negative questions; BBQ_calculate_bias_score.R counts neg_Target + nonneg_Target)."""
    stems = {"age": "Age", "disability_status": "Disability_status", "gender_identity": "Gender_identity",
             "nationality": "Nationality", "physical_appearance": "Physical_appearance",
             "race_ethnicity": "Race_ethnicity", "race_x_gender": "Race_x_gender", "race_x_ses": "Race_x_SES",
             "religion": "Religion", "ses": "SES", "sexual_orientation": "Sexual_orientation"}
    lines = ["category,question_index,example_id,target_loc,label_type"]
    lines += [f"{stems[it.category]},{it.question_index},{it.source_id},{it.target_index},label" for it in items]
    path.write_text("\n".join(lines) + "\n")
    return path


def _random_predictions(items, seed=0):
    import random

    rng = random.Random(seed)
    return [{"category": it.category, "context_condition": it.context_condition, "label": it.label,
             "target_index": it.target_index, "unknown_index": it.unknown_index, "question_index": it.question_index,
             "pred_index": rng.randrange(3)} for it in items]


def test_official_metadata_csv_gives_the_same_bias_as_name_matching(tmp_path):
    from peft_audit.benchmarks.fairness import fairness_metrics

    plain = load_bbq("builtin").items
    csv = _official_metadata_csv(tmp_path / "additional_metadata.csv", plain)
    with_csv = load_bbq("builtin", metadata_csv=csv).items
    assert [it.target_index for it in with_csv] == [it.target_index for it in plain]
    a = fairness_metrics(_random_predictions(plain), bootstrap=0)
    b = fairness_metrics(_random_predictions(with_csv), bootstrap=0)
    assert a == b


def test_official_metadata_csv_on_official_layout_files(tmp_path):
    from bbq_official_rows import write_official_dir, write_official_metadata_csv

    from peft_audit.benchmarks.fairness import fairness_metrics

    expected = write_official_dir(tmp_path / "data")
    csv = write_official_metadata_csv(tmp_path / "additional_metadata.csv", tmp_path / "data", expected)
    plain = load_bbq(tmp_path / "data").items
    with_csv = load_bbq(tmp_path / "data", metadata_csv=csv).items
    assert [it.target_index for it in with_csv] == [it.target_index for it in plain]
    assert fairness_metrics(_random_predictions(with_csv), bootstrap=0) == fairness_metrics(
        _random_predictions(plain), bootstrap=0)
