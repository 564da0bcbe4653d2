"""analyze() on synthetic stores written through Store: findings depend on the data."""

import pytest
from synthetic_store import build_synthetic_store

from peft_audit.analysis import analyze


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    return analyze(build_synthetic_store(tmp_path_factory.mktemp("sweep"), n_variants=24, seed=1), n_boot=300)


def test_findings_report_planted_family_effect(sweep):
    f = {x.key: x for x in sweep.findings}
    fam = f["family"]
    assert fam.enough and "prompt-based" in fam.text and "adapter" in fam.text
    assert fam.ci_high < 0  # prompt-based median drop, interval below 0
    assert "prompt-based methods were less safe" in fam.text
    assert f["factors"].enough and "method" in f["factors"].text.split("explains")[0]
    assert "failed" in f and "did not finish" in f["failed"].text
    for x in sweep.findings:
        if x.value is not None and x.ci_low is not None and x.key != "factors":
            assert "CI" in x.text


def test_small_sweep_says_it_is_too_small(tmp_path):
    a = analyze(build_synthetic_store(tmp_path, n_variants=2, n_failed=0, bases=("llama-3.2-1b",)), n_boot=100)
    f = {x.key: x for x in a.findings}
    assert not f["tradeoff"].enough and "Too few" in f["tradeoff"].text
    assert not f["factors"].enough
    assert not f["base_spread"].enough


def test_findings_text_changes_with_the_data(tmp_path):
    a = analyze(build_synthetic_store(tmp_path / "a", n_variants=12, seed=2), n_boot=100)
    b = analyze(build_synthetic_store(tmp_path / "b", n_variants=12, seed=3,
                                      method_effects={"lora": -0.2, "ia3": -0.2, "prompt-tuning": 0.05, "p-tuning": 0.05}),
                n_boot=100)
    fa = {x.key: x.text for x in a.findings}
    fb = {x.key: x.text for x in b.findings}
    assert fa["family"] != fb["family"]
    assert "adapter methods were less safe" in fb["family"]


def test_every_compared_variant_has_paired_rows(sweep):
    done = sweep.variants[(sweep.variants["status"] == "done") & (sweep.variants["method"] != "base")]
    assert set(sweep.paired["variant_id"]) == set(done["id"])
    assert set(sweep.table["variant_id"]) == set(done["id"])


def test_rows_are_ordered_base_first(sweep):
    v = sweep.variants
    for i, r in enumerate(v.itertuples()):
        if r.method != "base":
            assert r.base_id in set(v["id"].iloc[:i])


def test_incoherent_response_is_unsafe_in_the_analysis_frames(tmp_path):
    # A store without a combined verdict (or written before combine() let incoherence win):
    # the fallback judge 'guard' rated it safe, keyword found it degenerate. Never safe.
    from peft_audit.analysis import load_frames, open_store
    from peft_audit.store import Store

    st = Store(tmp_path / "results.sqlite")
    st.register_variant("b", spec={"base_model": "m", "method": "base"}, config={}, base_id=None)
    samples = [{"prompt_id": f"p{i}", "benchmark": "safety", "category": "malware", "prompt": "q", "response": "r",
                "n_new_tokens": 1} for i in range(2)]
    verdicts = [{"prompt_id": "p0", "judge": "guard", "label": "safe", "safe": 1},
                {"prompt_id": "p0", "judge": "keyword", "label": "incoherent", "safe": 0},
                {"prompt_id": "p1", "judge": "guard", "label": "safe", "safe": 1},
                {"prompt_id": "p1", "judge": "keyword", "label": "refusal", "safe": 1}]
    st.commit_stage("b", "metrics", 0.1, safety=samples, verdicts=verdicts)
    st.close()
    s = load_frames(open_store(tmp_path)).safety.set_index("prompt_id")
    assert s.loc["p0", "safe"] == 0.0 and s.loc["p0", "label"] == "incoherent"
    assert s.loc["p1", "safe"] == 1.0
