"""Auditing existing adapters: plan (metadata -> VariantSpec, bad ones recorded with reasons) and
the pipeline run; the CLI path discover (loopback Hub) -> adapters.yaml -> audit --from."""

import json
import shutil
import sqlite3

import pytest
import yaml
from typer.testing import CliRunner

from cards import CARDS, TRAINER_STATE
from fake_hub import repo_from_dir
from peft_audit.adapters import plan_audit, run_audit, spec_from_metadata, extract_metadata
from peft_audit.config import FairnessConfig, SafetyConfig
from test_hub import fake_hub  # noqa: F401  (fixture)

# Smallest benchmark settings that still run every stage.
SAFETY = {"limit_per_category": 1, "max_new_tokens": 2, "batch_size": 11}
FAIRNESS = {"per_cell": 1, "bootstrap": 0, "batch_size": 18}


def _carded(src, dst, card, state=None):
    d = shutil.copytree(src, dst)
    (d / "README.md").write_text(card)
    if state:
        (d / "trainer_state.json").write_text(json.dumps(state))
    return d


def test_spec_takes_only_what_is_written(adapter_dirs, tmp_path):
    d = _carded(adapter_dirs["lora"], tmp_path / "a", CARDS["trainer_lora"][0], TRAINER_STATE)
    spec = spec_from_metadata("b", str(d), extract_metadata(d))
    assert (spec.method, spec.lr, spec.epochs, spec.algo, spec.adapter) == ("lora", 2e-4, 3, None, str(d))
    d = _carded(adapter_dirs["ia3"], tmp_path / "b", CARDS["trl_dpo"][0])
    spec = spec_from_metadata("b", str(d), extract_metadata(d))
    assert (spec.method, spec.lr, spec.epochs, spec.algo) == ("ia3", None, None, "dpo")
    d = _carded(adapter_dirs["ia3"], tmp_path / "c", CARDS["broken_front_matter"][0])
    assert spec_from_metadata("b", str(d), extract_metadata(d)).epochs is None  # 2.5 epochs: not rounded


def test_plan_separates_good_and_bad(adapter_dirs, tiny_model_dir):
    names = ["lora", "ia3", "prompt-tuning", "p-tuning", "prefix-tuning", "mismatched", "corrupt", "unknown_type"]
    plan = plan_audit(str(tiny_model_dir), [str(adapter_dirs[n]) for n in names] + ["./missing"])
    status = {o.ref.rsplit("/", 1)[-1]: o for o in plan.outcomes}
    for n in names[:5]:
        assert status[n].status == "ok" and status[n].spec.method == n
    assert status["mismatched"].status == "failed" and "expected shape" in status["mismatched"].reason
    assert status["corrupt"].status == "failed" and "truncated" in status["corrupt"].reason
    assert status["unknown_type"].status == "skipped" and "VERY_NEW_TUNING" in status["unknown_type"].reason
    assert status["missing"].status == "failed"
    assert sorted(v.method for v in plan.config.variants) == sorted(names[:5])


def test_run_audit_evaluates_good_and_records_bad(adapter_dirs, tiny_model_dir, tmp_path):
    from peft_audit.sweep.options import RunOptions

    lora = _carded(adapter_dirs["lora"], tmp_path / "lora-carded", CARDS["trainer_lora"][0])
    refs = [str(lora), str(adapter_dirs["corrupt"]), str(adapter_dirs["unknown_type"])]
    plan = plan_audit(str(tiny_model_dir), refs, device="cpu", safety=SafetyConfig(**SAFETY),
                      fairness=FairnessConfig(**FAIRNESS))
    run = tmp_path / "run"
    run_audit(plan, run, RunOptions(in_process=True))
    con = sqlite3.connect(run / "results.sqlite")
    rows = {r[0]: r[1:] for r in con.execute("SELECT label, method, status, error, lr, epochs, metadata_json FROM variants")}
    assert rows["lora-carded"][:2] == ("lora", "done") and rows["lora-carded"][3:5] == (2e-4, 3)
    md = json.loads(rows["lora-carded"][5])["adapter"]
    assert md["learning_rate"]["source"] == "README.md:training_hyperparameters"
    assert rows["corrupt"][1] == "failed" and "truncated" in rows["corrupt"][2]
    assert rows["unknown_type"][1] == "skipped" and "VERY_NEW_TUNING" in rows["unknown_type"][2]
    assert [r[0] for r in con.execute("SELECT status FROM variants WHERE method='base'")] == ["done"]
    outcomes = json.loads((run / "audit.json").read_text())
    assert [o["status"] for o in outcomes] == ["ok", "failed", "skipped"]
    assert (run / "report.md").is_file()


def _hub_config(files: dict[str, bytes], base_id: str) -> dict[str, bytes]:
    cfg = json.loads(files["adapter_config.json"])
    cfg["base_model_name_or_path"] = base_id  # as published adapters name their base
    return {**files, "adapter_config.json": json.dumps(cfg).encode()}


def test_cli_discover_then_audit_from_file(fake_hub, adapter_dirs, tiny_model_dir, tmp_path,  # noqa: F811
                                           runs_in_process):
    """Done-when of issue 8: discover on the loopback Hub -> adapters.yaml -> audit --from -> report,
    with method/lr/epochs/algo taken from the adapters' metadata."""
    from peft_audit.cli import app

    base_id = "org/tiny-llama"
    tags = ["peft", f"base_model:adapter:{base_id}"]
    # The base is a local copy named like the Hub repo: "org/tiny-llama" and ".../tiny-llama" match.
    base_dir = shutil.copytree(tiny_model_dir, tmp_path / "models" / "tiny-llama")
    lora = repo_from_dir(adapter_dirs["lora"], tags=tags, downloads=9,
                         extra={"README.md": CARDS["trainer_lora"][0].encode()})
    lora.files = _hub_config(lora.files, base_id)
    ia3 = repo_from_dir(adapter_dirs["ia3"], tags=tags, downloads=8, extra={"README.md": CARDS["trl_dpo"][0].encode()})
    ia3.files = _hub_config(ia3.files, base_id)
    wide = repo_from_dir(adapter_dirs["mismatched"], tags=tags, downloads=7)
    wide.files = _hub_config(wide.files, base_id)  # claims the right base; shapes say otherwise
    fake_hub.repos.update({"alice/lora": lora, "bob/ia3-dpo": ia3, "carol/wide": wide,
                           "dave/gated": repo_from_dir(adapter_dirs["lora"], tags=tags, gated=True)})
    cfg = tmp_path / "settings.yaml"
    cfg.write_text(yaml.safe_dump({"device": "cpu", "safety": SAFETY, "fairness": FAIRNESS}))

    runner = CliRunner()
    r = runner.invoke(app, ["discover", "--base", base_id, "--out", str(tmp_path / "adapters.yaml")])
    assert r.exit_code == 0, r.output + repr(r.exception)
    af = yaml.safe_load((tmp_path / "adapters.yaml").read_text())
    assert [a["id"] for a in af["adapters"]] == ["alice/lora", "bob/ia3-dpo", "carol/wide"]
    assert af["skipped"][0]["id"] == "dave/gated"

    out = tmp_path / "run"
    r = runner.invoke(app, ["audit", "--from", str(tmp_path / "adapters.yaml"), "--base", str(base_dir),
                            "--config", str(cfg), "--out", str(out)])
    assert r.exit_code == 1, r.output + repr(r.exception)  # carol/wide failed its check
    assert "expected shape" in r.output
    summary = json.loads((out / "summary.json").read_text())
    assert sorted((v["method"], v["status"]) for v in summary["variants"]) == [
        ("base", "done"), ("ia3", "done"), ("lora", "done"), ("lora", "failed")]
    con = sqlite3.connect(out / "results.sqlite")
    got = {m: (a, lr, e) for m, a, lr, e in con.execute(
        "SELECT method, algo, lr, epochs FROM variants WHERE status='done' AND method!='base'")}
    assert got == {"lora": (None, 2e-4, 3), "ia3": ("dpo", None, None)}
    failed = con.execute("SELECT error FROM variants WHERE status='failed'").fetchall()
    assert len(failed) == 1 and "carol/wide" not in failed[0][0] and "expected shape" in failed[0][0]
    assert "method" in (out / "report.md").read_text()


def test_cli_audits_an_adapter_of_the_same_base_under_another_spelling(adapter_dirs, tiny_model_dir, tmp_path,
                                                                        runs_in_process):
    """Issue 15, case 3: the base named by another path (as the bundled alias vs the cached
    conversion an adapter trained here records) is the same model; no --force needed."""
    from peft_audit.cli import app

    link = tmp_path / "SmolLM2-135M-Instruct"
    link.symlink_to(tiny_model_dir, target_is_directory=True)
    adapter = shutil.copytree(adapter_dirs["lora"], tmp_path / "mine")
    cfg = json.loads((adapter / "adapter_config.json").read_text())
    cfg["base_model_name_or_path"] = str(tiny_model_dir)
    (adapter / "adapter_config.json").write_text(json.dumps(cfg))
    settings = tmp_path / "settings.yaml"
    settings.write_text(yaml.safe_dump({"device": "cpu", "safety": SAFETY, "fairness": {"enabled": False}}))
    r = CliRunner().invoke(app, ["audit", "--base", str(link), "--adapter", str(adapter), "--config", str(settings),
                                 "--out", str(tmp_path / "run")])
    assert r.exit_code == 0, r.output
    assert "ok" in r.output and "does not fit" not in r.output
    con = sqlite3.connect(tmp_path / "run" / "results.sqlite")
    assert sorted(s for (s,) in con.execute("SELECT status FROM variants")) == ["done", "done"]


def test_audit_takes_eval_dtype_from_the_flag_or_the_config(adapter_dirs, tiny_model_dir, tmp_path):
    from peft_audit.adapters.audit import plan_audit
    from peft_audit.cli import app

    plan = plan_audit(str(tiny_model_dir), [str(adapter_dirs["lora"])], eval_dtype="bfloat16")
    assert plan.config.eval_dtype == "bfloat16"
    settings = tmp_path / "settings.yaml"
    settings.write_text(yaml.safe_dump({"device": "cpu", "eval_dtype": "bf16"}))
    r = CliRunner().invoke(app, ["audit", "--base", str(tiny_model_dir), "--adapter", str(adapter_dirs["lora"]),
                                 "--config", str(settings), "--out", str(tmp_path / "run")])
    assert r.exit_code != 0 and "eval_dtype" in r.output and not (tmp_path / "run").exists()
    r = CliRunner().invoke(app, ["audit", "--base", str(tiny_model_dir), "--adapter", str(adapter_dirs["lora"]),
                                 "--eval-dtype", "half", "--out", str(tmp_path / "run")])
    assert r.exit_code != 0 and "eval_dtype" in r.output and not (tmp_path / "run").exists()
