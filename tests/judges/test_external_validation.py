"""External validation: every named judge on sets labelled by others, beside the field references."""

import json

import pytest

from peft_audit.judges import external
from peft_audit.judges.base import Verdict
from peft_audit.judges.external import measure, markdown, set_parts, xstest_half
from peft_audit.judges.refusal import RefusalJudge

DECLINE, ANSWER = "I'm sorry, but I can't help with that.", "Sure, here is how: 1. Open the panel."
# rows written here in the sets' layouts (no third-party text)
XSTEST = [{"prompt": f"question {i}", "response": DECLINE if i % 2 else ANSWER,
           "label": "refusal" if i % 2 else "compliance"} for i in range(40)]
HARMBENCH = [{"behavior": f"behaviour {i}", "prompt": "a long attack prompt", "response": DECLINE if i % 3 else ANSWER,
              "label": "safe" if i % 3 else "unsafe", "cls_llama2_13b": "0" if i % 3 else "1",
              "cls_mistral_7b": "1", "llama_guard": "0"} for i in range(30)]


class _Harm:
    name = "harm"

    def judge_batch(self, pairs):
        return [Verdict("safe" if "sorry" in r else "unsafe", refused="sorry" in r) for _, r in pairs]


def test_xstest_halves_split_by_prompt_and_cover_the_set():
    parts = set_parts("xstest", XSTEST)
    assert set(parts) == {"xstest", "xstest_dev", "xstest_heldout"}
    assert len(parts["xstest_dev"]) + len(parts["xstest_heldout"]) == len(XSTEST)
    assert all(xstest_half(r["prompt"]) == "dev" for r in parts["xstest_dev"])
    assert 0 < len(parts["xstest_dev"]) < len(XSTEST)


def test_each_judge_is_read_on_the_labels_kind_and_references_come_from_the_columns():
    doc = measure([RefusalJudge(), _Harm()], {"xstest": XSTEST, "harmbench": HARMBENCH})
    refusal, harm = doc["judges"]["refusal"], doc["judges"]["harm"]
    assert refusal["xstest"]["basis"] == "direct" and refusal["xstest"]["safe_agreement"]["value"] == 1.0
    assert refusal["harmbench"]["basis"].startswith("proxy")  # refusal judge vs safe/unsafe labels
    assert harm["harmbench"]["basis"] == "direct"
    assert harm["xstest"]["basis"] == "refused"  # harm judge vs refusal labels: its refusal verdict
    assert refusal["harmbench"]["safe_agreement"]["value"] == 1.0 and refusal["harmbench"]["kappa"]["value"] == 1.0
    ref = doc["references"]["HarmBench-Llama-2-13b-cls"]
    assert ref["published_safe_agreement"] == 0.909
    assert ref["computed"]["safe_agreement"]["value"] == 1.0  # computed from cls_llama2_13b, not copied
    mistral = doc["references"]["HarmBench-Mistral-7b-val-cls"]["computed"]["safe_agreement"]
    assert mistral["k"] == sum(r["label"] == "unsafe" for r in HARMBENCH)  # says unsafe to every row
    assert "computed" not in doc["references"]["XSTest string match"]  # no verdict column: published figure only
    table = markdown(doc)
    assert "HarmBench-Llama-2-13b-cls" in table and "Röttger et al. 2024" in table and "(proxy)" in table


def test_default_judges_pick_up_harm_by_registry_name(monkeypatch):
    from peft_audit.judges import registry

    assert external.default_judge_names()[:2] == ["refusal", "keyword"]
    monkeypatch.setitem(registry.JUDGES, "harm", lambda spec: _Harm())
    assert external.default_judge_names() == ["refusal", "keyword", "harm"]


def test_main_writes_json_and_prints_the_table(tmp_path, capsys):
    paths = {}
    for name, rows in (("xstest", XSTEST), ("harmbench", HARMBENCH)):
        paths[name] = tmp_path / f"{name}.jsonl"
        paths[name].write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    out = tmp_path / "external.json"
    assert external.main(["--xstest", str(paths["xstest"]), "--harmbench", str(paths["harmbench"]),
                          "--judges", "refusal,keyword", "--out", str(out)]) == 0
    doc = json.loads(out.read_text(encoding="utf-8"))
    assert set(doc["judges"]) == {"refusal", "keyword"} and "xstest_heldout" in doc["sets"]
    assert "| keyword |" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        external.main(["--judges", "refusal"])  # no set given


def test_published_external_figures_cover_the_default_judges_on_every_set():
    doc = external.published_external()
    assert doc is not None, f"{external.EXTERNAL_FILE} is missing: run python -m peft_audit.judges.external"
    for judge in ("refusal", "keyword"):
        assert set(doc["judges"][judge]) == {"xstest", "xstest_dev", "xstest_heldout", "gptfuzz", "harmbench"}


def test_a_judge_trained_on_a_set_publishes_its_held_out_figure_there():
    from peft_audit.judges.harm import HarmJudge, load_probe, published_card

    judge = HarmJudge(load_probe())  # its model would load only if it judged
    gptfuzz = [{"prompt": f"q {i}", "response": ANSWER, "label": "unsafe"} for i in range(5)]
    doc = measure([judge], {"gptfuzz": gptfuzz, "xstest": XSTEST})
    held = published_card()["figures"]["leave_out_gptfuzz"]
    cell = doc["judges"]["harm"]["gptfuzz"]
    assert cell["basis"].startswith("held out") and cell["n"] == 1540  # the card's, not these 5 rows
    assert cell["safe_agreement"]["value"] == next(r["value"] for r in held if r["metric"] == "safe_agreement")
    assert doc["judges"]["harm"]["xstest"]["note"].startswith("no refusal verdict")
    assert judge._features is None  # nothing was judged again
    assert "held out: trained without this set" in external.cell_text(cell)


def test_the_published_harm_figures_are_held_out_where_it_was_trained():
    doc = external.published_external()
    assert doc["judges"]["harm"]["gptfuzz"]["basis"].startswith("held out")
    assert doc["judges"]["harm"]["harmbench"]["basis"] == "direct"
