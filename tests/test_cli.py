"""CLI surface: every command has --help with an example; bad configs fail before any model loads."""

import pytest
from typer.testing import CliRunner

from peft_audit.cli import app

COMMANDS = sorted(c.name or c.callback.__name__ for c in app.registered_commands)


def test_top_level_help_lists_commands():
    r = CliRunner().invoke(app, ["--help"])
    assert r.exit_code == 0
    for name in COMMANDS:
        assert name in r.output


@pytest.mark.parametrize("name", COMMANDS)
def test_each_command_has_help_with_example(name):
    r = CliRunner().invoke(app, [name, "--help"])
    assert r.exit_code == 0, r.output
    assert "Example" in r.output


def test_bad_config_fails_fast_with_key_and_file(tmp_path, monkeypatch):
    import peft_audit.models.load as load

    monkeypatch.setattr(load, "load_base", lambda *a, **k: pytest.fail("a model was loaded"))
    p = tmp_path / "bad.yaml"
    p.write_text("lr: [0]\nmethods: [lora]\n")
    r = CliRunner().invoke(app, ["run", str(p), "--out", str(tmp_path / "run")])
    assert r.exit_code == 2
    assert "bad.yaml" in r.output and "lr" in r.output and "must be a finite number > 0" in r.output
    assert not (tmp_path / "run").exists()


def test_show_on_missing_run_dir(tmp_path):
    r = CliRunner().invoke(app, ["show", str(tmp_path)])
    assert r.exit_code == 2 and "no results.sqlite" in r.output
