"""One definition of each thing (issue #32 item 6), checked on the source so copies do not come back.

* names that once had copies are defined (``def``, ``class`` or a module-level assignment) in one
  module of ``src/peft_audit`` only;
* no module outside ``peft_audit.judges`` imports a private name (``_...``) from it: code that
  needs a judge's internals gets a public function instead of a copy of the internals;
* the ``gate`` command's option defaults are GateThresholds' own, and the command line does not
  load :mod:`peft_audit.gate` (and with it the analysis) to show them.
"""

from __future__ import annotations

import ast
import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
JUDGES = "peft_audit.judges"

#: name -> the one module that defines it
DEFINED_ONCE = {
    "check_judge_failures": "peft_audit.judges.failures",
    "judge_failures": "peft_audit.judges.failures",
    "JudgeFailures": "peft_audit.judges.failures",
    "JudgeFailureError": "peft_audit.judges.failures",
    "FAILED": "peft_audit.judges.failures",
    "GateThresholds": "peft_audit.gate_thresholds",
}


def _modules(src: Path = SRC) -> dict[str, ast.Module]:
    out = {}
    for path in sorted((src / "peft_audit").rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = (ast.parse(path.read_text(encoding="utf-8")), path.name == "__init__.py")
    return out


def definitions(src: Path = SRC) -> dict[str, set[str]]:
    """name -> modules with a top-level def, class or assignment of it."""
    found: dict[str, set[str]] = {}
    for module, (tree, _) in _modules(src).items():
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names = [node.name]
            elif isinstance(node, (ast.Assign, ast.AnnAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                names = [t.id for t in targets if isinstance(t, ast.Name)]
            else:
                continue
            for n in names:
                found.setdefault(n, set()).add(module)
    return found


def private_judge_imports(src: Path = SRC) -> list[str]:
    """``module: from X import _name`` for each private name a module outside the judges
    package imports from it (anywhere in the module, relative imports resolved)."""
    bad = []
    for module, (tree, is_package) in _modules(src).items():
        if module == JUDGES or module.startswith(JUDGES + "."):
            continue
        package = module if is_package else module.rpartition(".")[0]
        for node in ast.walk(tree):
            if not isinstance(node, ast.ImportFrom):
                continue
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            source = ".".join(base + ([node.module] if node.module else []))
            if source == JUDGES or source.startswith(JUDGES + "."):
                bad += [f"{module}: from {source} import {a.name}" for a in node.names if a.name.startswith("_")
                        and not a.name.startswith("__")]
    return bad


@pytest.mark.parametrize("name", sorted(DEFINED_ONCE))
def test_defined_in_one_module(name):
    assert definitions().get(name) == {DEFINED_ONCE[name]}


def test_no_private_judge_names_outside_the_judges_package():
    assert private_judge_imports() == []


def test_the_checks_see_a_copy_and_a_private_import(tmp_path):
    # the two scans above must be able to fail: a tree with a second definition and a private import
    pkg = tmp_path / "peft_audit"
    (pkg / "judges").mkdir(parents=True)
    (pkg / "benchmarks").mkdir()
    for init in (pkg, pkg / "judges", pkg / "benchmarks"):
        (init / "__init__.py").write_text("")
    (pkg / "judges" / "failures.py").write_text("FAILED = 'unscored'\ndef check_judge_failures(): ...\n")
    (pkg / "judges" / "llm.py").write_text("_FENCE = None\nfrom .failures import FAILED as _F\n")
    (pkg / "benchmarks" / "evaluate.py").write_text(
        "from ..judges.llm import _FENCE, JudgeError\nFAILED: str = 'unscored'\n"
        "def f():\n    from peft_audit.judges import _x\n")
    assert definitions(tmp_path)["FAILED"] == {"peft_audit.judges.failures", "peft_audit.benchmarks.evaluate"}
    assert private_judge_imports(tmp_path) == ["peft_audit.benchmarks.evaluate: from peft_audit.judges.llm import _FENCE",
                                               "peft_audit.benchmarks.evaluate: from peft_audit.judges import _x"]


def test_gate_options_take_their_defaults_from_gate_thresholds():
    import typer.main

    from peft_audit.cli import app
    from peft_audit.gate_thresholds import GateThresholds

    gate = typer.main.get_command(app).commands["gate"]
    defaults = {p.name: p.default for p in gate.params}
    fields = [f for f in dataclasses.fields(GateThresholds) if f.name in defaults]
    assert {f.name for f in fields} >= {"max_safety_drop", "max_category_drop", "max_unscored_share"}
    for f in fields:
        assert defaults[f.name] == f.default, f.name


def test_the_command_line_does_not_load_the_gate_to_start():
    code = "import sys, peft_audit.cli; print('peft_audit.gate' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(SRC)})
    assert out.stdout.strip() == "False"
