"""Task utility end to end on a tiny random model: a base, a LoRA trained by SFT and one by DPO
on the built-in data (one step each, safety and BBQ off), and an audited adapter; the stored
rows, the paired table, summary.json, the report, and the not-measured cases."""

import json

import pytest
import yaml

from peft_audit.analysis import analyze
from peft_audit.config import load_config
from peft_audit.pipeline import run_sweep
from peft_audit.report.overview import overview
from peft_audit.store import Store
from peft_audit.sweep.options import RunOptions
from peft_audit.training.data import row_key


@pytest.fixture(scope="module")
def run_dir(tiny_model_dir, tmp_path_factory):
    from peft import LoraConfig

    from tiny_models import save_random_adapter

    d = tmp_path_factory.mktemp("utility-run")
    adapter = save_random_adapter(tiny_model_dir, d / "audited", LoraConfig(r=2, target_modules=["q_proj"]), seed=1)
    cfg = {
        "name": "utility-e2e", "base_models": [str(tiny_model_dir)], "methods": ["lora"], "algos": ["sft", "dpo"],
        "lr": [1e-3], "device": "cpu",
        "variants": [{"base_model": str(tiny_model_dir), "method": "lora", "adapter": str(adapter), "label": "audited"}],
        "training": {"max_steps": 1, "batch_size": 2, "max_seq_len": 48, "max_examples": 4},
        "safety": {"enabled": False}, "fairness": {"enabled": False},
    }
    (d / "c.yaml").write_text(yaml.safe_dump(cfg))
    run_sweep(load_config(d / "c.yaml"), d / "run", RunOptions(in_process=True))
    return d / "run"


def _variants(run_dir):
    return {v["label"].split(" · lr")[0]: v for v in json.loads((run_dir / "summary.json").read_text())["variants"]}


def test_rows_pair_on_the_held_out_split(run_dir):
    from peft_audit.config import TrainingConfig
    from peft_audit.training.data import load_training_data

    with Store(run_dir / "results.sqlite") as s:
        rows = s.samples("utility")
        variants = {v["id"]: v for v in s.variants()}
    by_variant = {}
    for r in rows:
        by_variant.setdefault(r["variant_id"], set()).add(r["sample_id"])
    base_id = next(i for i, v in variants.items() if v["spec"]["method"] == "base")
    sft_ids = {row_key(r)[:16] for r in load_training_data(TrainingConfig(), "sft").heldout}
    dpo_ids = {row_key(r)[:16] for r in load_training_data(TrainingConfig(), "dpo").heldout}
    assert by_variant[base_id] == sft_ids | dpo_ids  # the base: the union of its variants' held-out rows
    algos = {v["spec"]["algo"]: i for i, v in variants.items() if v["spec"].get("algo")}
    assert by_variant[algos["sft"]] == sft_ids and by_variant[algos["dpo"]] == dpo_ids
    audited = next(i for i, v in variants.items() if v["spec"].get("adapter"))
    assert audited not in by_variant  # not measured: no task file


def test_paired_table_and_summary(run_dir):
    a = analyze(run_dir, n_boot=200)
    u = a.paired[(a.paired["benchmark"] == "utility") & (a.paired["category"] == "overall")]
    labels = {i: label.split(" · lr")[0] for i, label in zip(a.variants["id"], a.variants["label"])}
    got = {(labels[r.variant_id], r.metric) for r in u.itertuples()}
    assert got == {("lora · sft", "heldout_loss"), ("lora · sft", "perplexity"), ("lora · dpo", "preference_accuracy")}
    loss = u[u["metric"] == "heldout_loss"].iloc[0]
    ppl = u[u["metric"] == "perplexity"].iloc[0]
    assert loss["n"] >= 20 and loss["ci_low"] <= loss["delta"] <= loss["ci_high"]
    assert ppl["value"] == pytest.approx(2.718281828 ** loss["value"]) and ppl["p_value"] == loss["p_value"]
    v = _variants(run_dir)
    assert v["lora · sft"]["utility"]["heldout_loss"] > 0 and v["lora · sft"]["utility"]["preference_accuracy"] is None
    assert v["lora · dpo"]["utility"]["heldout_loss"] is None
    lo, hi = v["lora · dpo"]["utility"]["preference_accuracy_ci"]
    assert lo <= v["lora · dpo"]["utility"]["preference_accuracy"] <= hi
    assert v["audited"]["utility"] is None and v["audited"]["delta_vs_base"]["utility"] is None
    base = next(b for k, b in v.items() if k.endswith("(base)"))["utility"]
    assert set(base["by_task"]) == {"builtin:sft.jsonl", "builtin:preference.jsonl"}
    # utility is additive: the audited adapter without a task file is not a gate failure
    from peft_audit.gate import gate_of_analysis

    failed = [c for c in gate_of_analysis(a).checks if not c.passed and c.metric == "utility"]
    assert failed == []
    # the overview shows the loss change in nats
    ov = overview(a)
    col = ov["columns"].index("Task utility: held-out loss: heldout_loss Δ")
    cell = next(r for r in ov["rows"] if r["label"].startswith("lora · sft"))["cells"][col]
    from peft_audit.report.tables import num

    assert cell["delta_text"].startswith(num(loss["delta"], 1, signed=True) + " [")  # nats, not points
    assert num(-0.0123, 1, signed=True) == "-0.01" and num(-0.0123, signed=True) == "-1.2"


def test_report_has_the_utility_sections(run_dir):
    md = (run_dir / "report.md").read_text()
    assert "Task utility: held-out loss" in md and "Task utility: held-out preference accuracy" in md
    html = (run_dir / "report.html").read_text()
    assert "Held-out loss, nats per response token" in html


def test_an_adapter_without_a_recorded_split_is_not_measured(run_dir):
    from peft_audit.benchmarks.utility.config import UtilityConfig
    from peft_audit.benchmarks.utility.tasks import AUDITED_REASON, variant_rows
    from peft_audit.config import TrainingConfig
    from peft_audit.training.provenance import PROVENANCE_FILE

    adapter = next(p for p in (run_dir / "adapters").iterdir() if (p / PROVENANCE_FILE).is_file())
    original = (adapter / PROVENANCE_FILE).read_text()
    record = json.loads(original)
    algo = record["algo"]
    rows, reason = variant_rows(UtilityConfig(), ((algo, TrainingConfig()),), adapter, is_base=False)
    assert len(rows) >= 20 and reason is None
    record["dataset"].pop("heldout")  # as written before held-out splits existed
    (adapter / PROVENANCE_FILE).write_text(json.dumps(record))
    try:
        rows, reason = variant_rows(UtilityConfig(), ((algo, TrainingConfig()),), adapter, is_base=False)
        assert rows == [] and "trained without a held-out split" in reason
    finally:
        (adapter / PROVENANCE_FILE).write_text(original)
    assert variant_rows(UtilityConfig(), (), None, is_base=False) == ([], AUDITED_REASON)


def test_a_task_file_measures_an_audited_adapter(tmp_path):
    from peft_audit.benchmarks.utility.config import UtilityConfig
    from peft_audit.benchmarks.utility.tasks import variant_rows

    f = tmp_path / "task.jsonl"
    f.write_text("".join(json.dumps({"prompt": f"q{i}", "chosen": "yes", "rejected": "no"}) + "\n" for i in range(3)))
    rows, reason = variant_rows(UtilityConfig(task_file=str(f)), (), None, is_base=False)
    assert reason is None and [r.algo for r in rows] == ["dpo"] * 3 and rows[0].category == "task_file:task.jsonl"
    bad = tmp_path / "bad.csv"
    bad.write_text("question,answer\nq,a\n")
    with pytest.raises(ValueError, match="column 'prompt'.*bad.csv|bad.csv.*column 'prompt'"):
        variant_rows(UtilityConfig(task_file=str(bad)), (), None, is_base=False)


def test_audit_with_a_task_file_pairs_the_adapter_with_its_base(tiny_model_dir, tmp_path):
    from peft import LoraConfig

    from peft_audit.adapters import plan_audit, run_audit
    from peft_audit.benchmarks.fairness.config import FairnessConfig
    from peft_audit.benchmarks.safety.config import SafetyConfig
    from peft_audit.benchmarks.utility.config import UtilityConfig

    from tiny_models import save_random_adapter

    adapter = save_random_adapter(tiny_model_dir, tmp_path / "ad", LoraConfig(r=2, target_modules=["q_proj"]), seed=2)
    task = tmp_path / "task.csv"
    task.write_text("prompt,response\n" + "".join(f"Count to {i}.,{' '.join(map(str, range(1, i + 1)))}\n"
                                                  for i in range(1, 9)))
    plan = plan_audit(str(tiny_model_dir), [str(adapter)], device="cpu", safety=SafetyConfig(enabled=False),
                      fairness=FairnessConfig(enabled=False), utility=UtilityConfig(task_file=str(task)))
    run_audit(plan, tmp_path / "run", RunOptions(in_process=True))
    a = analyze(tmp_path / "run", n_boot=100)
    loss = a.paired.query("benchmark == 'utility' and metric == 'heldout_loss' and category == 'overall'")
    assert len(loss) == 1 and loss["n"].iloc[0] == 8
