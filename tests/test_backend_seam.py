"""The seam between benchmarks and models (issue #32 item 1): benchmarks see only the backend
protocol, a backend is one module plus one registry line, and what a worker keeps between
variants lives as long as the worker, not in module globals."""

from __future__ import annotations

import ast
import dataclasses
import typing
from pathlib import Path

import pytest

import peft_audit
from peft_audit.benchmarks.base import VariantRun
from peft_audit.models import backends
from peft_audit.models.backends.base import BackendSettings, LanguageModel
from peft_audit.sweep.resources import WorkerResources
from test_import_cycles import import_graph

SRC = Path(peft_audit.__file__).parent


def test_no_benchmark_imports_models_except_the_backend_protocol():
    # every import, inside functions too, resolved to the module it names (test_import_cycles)
    allowed = {"peft_audit.models.backends.base"}
    bad = {mod: sorted(m for m in deps if (m == "peft_audit.models" or m.startswith("peft_audit.models."))
                       and m not in allowed)
           for mod, deps in import_graph().items() if mod.startswith("peft_audit.benchmarks")}
    assert not {mod: deps for mod, deps in bad.items() if deps}, bad


def _top_level_imports(path: Path) -> set[str]:
    """The top-level package of every module ``path`` imports (absolute imports only)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            out.add(node.module.split(".")[0])
    return out


def test_the_protocol_module_imports_nothing_heavy():
    heavy = {"torch", "transformers", "peft", "vllm"}
    for name in ("base.py", "__init__.py"):
        mods = _top_level_imports(SRC / "models" / "backends" / name)
        assert not mods & heavy, (name, mods & heavy)


def test_variant_run_holds_no_untyped_field():
    hints = typing.get_type_hints(VariantRun, globalns=vars(__import__("peft_audit.benchmarks.base", fromlist=["x"])),
                                  localns={"Judge": object, "TrainingConfig": object, "Store": object})
    for f in dataclasses.fields(VariantRun):
        assert hints[f.name] is not typing.Any, f.name
    names = {f.name for f in dataclasses.fields(VariantRun)}
    assert not names & {"model", "tokenizer", "backend", "compile", "shared"}, names


def test_no_module_global_engine_or_judge_cache():
    """A module-level dict or list that a worker would fill (an engine per base, a judge per spec)
    outlives the worker's resources: none may exist in the modules that build them."""
    for rel in ("pipeline.py", "models/backends/vllm.py", "models/backends/transformers.py", "judges/registry.py",
                "sweep/worker.py", "sweep/resources.py", "judges/completion.py"):
        tree = ast.parse((SRC / rel).read_text())
        for node in tree.body:
            value = getattr(node, "value", None)
            if isinstance(node, (ast.Assign, ast.AnnAssign)) and isinstance(value, (ast.Dict, ast.List)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                names = [t.id for t in targets if isinstance(t, ast.Name)]
                # constants (registries, defaults) are written in full; a cache starts empty
                assert value.keys if isinstance(value, ast.Dict) else value.elts, (rel, names)


def test_a_backend_is_one_registry_line(monkeypatch):
    monkeypatch.setitem(backends.BACKENDS, "fake", "fake_backend:FakeBackend")
    backend = backends.build_backend(BackendSettings("fake"))
    lm = backend.load("any-model")
    assert isinstance(lm, LanguageModel)  # the protocol, checked at run time
    from peft_audit.config import parse_config

    assert parse_config({"backend": "fake"}).backend == "fake"
    with pytest.raises(ValueError, match="unknown backend 'tgi'; valid: transformers, vllm"):
        backends.backend_class("tgi")


def test_config_refuses_an_unregistered_backend():
    from peft_audit.config import ConfigError, parse_config

    with pytest.raises((ConfigError, ValueError), match="unknown backend 'tgi'"):
        parse_config({"backend": "tgi"})


def test_worker_resources_build_once_and_close_everything(monkeypatch):
    monkeypatch.setitem(backends.BACKENDS, "fake", "fake_backend:FakeBackend")
    closed = []

    class Judge:
        name = "counting"

        def close(self):
            closed.append(self)

    import peft_audit.judges.registry as registry

    built = []
    monkeypatch.setitem(registry.JUDGES, "keyword", lambda spec: built.append(spec) or Judge())
    from peft_audit.config import parse_config

    section = parse_config({"safety": {"judges": ["keyword"]}}).safety
    with WorkerResources() as resources:
        b1 = resources.backend(BackendSettings("fake"))
        assert resources.backend(BackendSettings("fake")) is b1
        assert resources.backend(BackendSettings("fake", device="cpu")) is not b1  # other settings, other backend
        j1 = resources.judges(section, "/run")[0]
        assert resources.judges(section, "/run")[0] is j1 and len(built) == 1
        assert resources.judges(section, "/other-run")[0] is not j1  # each run's judgment cache
    assert b1.closed and j1 in closed and len(closed) == 2
