"""`peft-audit train` builds the configs, trains, and prints trainable params and loss."""

import json

from typer.testing import CliRunner

from peft_audit.cli import app


def test_train_command(tiny_model_dir, tmp_path):
    out = tmp_path / "adapter"
    result = CliRunner().invoke(app, [
        "train", "--base", str(tiny_model_dir), "--method", "lora", "--algo", "sft", "--max-steps", "2",
        "--batch-size", "2", "--max-examples", "6", "--max-seq-len", "64", "--method-arg", "r=4",
        "--method-arg", "target_modules=q_proj,v_proj", "--seed", "3", "--device", "cpu", "--quiet", "--out", str(out),
    ])
    assert result.exit_code == 0, result.output
    assert "trainable params:" in result.output and "loss: first" in result.output
    prov = json.loads((out / "peft_audit_provenance.json").read_text())
    assert prov["method_args"]["r"] == 4 and prov["method_args"]["target_modules"] == ["q_proj", "v_proj"]
    assert prov["hyperparameters"]["lr"] == 2e-4  # LoRA's default learning rate
    assert prov["hyperparameters"]["seed"] == 3


def test_train_command_errors_are_messages(tiny_model_dir, tmp_path):
    runner = CliRunner()
    bad_arg = runner.invoke(app, ["train", "--base", str(tiny_model_dir), "--method", "lora", "--method-arg", "rank=4",
                                  "--device", "cpu", "--out", str(tmp_path / "a")])
    assert bad_arg.exit_code == 2 and "valid: r, alpha, dropout, target_modules" in bad_arg.output
    bad_method = runner.invoke(app, ["train", "--base", str(tiny_model_dir), "--method", "adapterx", "--out", str(tmp_path / "b")])
    assert bad_method.exit_code == 2 and "valid:" in bad_method.output
    bad_form = runner.invoke(app, ["train", "--base", str(tiny_model_dir), "--method", "lora", "--method-arg", "r4",
                                   "--out", str(tmp_path / "c")])
    assert bad_form.exit_code == 2 and "key=value" in bad_form.output
