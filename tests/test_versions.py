"""The versions of the libraries the model code calls are the ones the project declares and tests.

``make test`` runs the model-facing tests twice: in the main environment (the newest releases
in the declared ranges) and again with the lowest declared versions laid over it (the
Makefile's ``LOW_PINS``, installed with ``pip --target`` and put first on ``PYTHONPATH``;
``PEFT_AUDIT_EXPECT_VERSIONS`` names them). These tests check that each run really has the
versions it claims, that they lie in pyproject's ranges, that the low pins are the ranges' lower
ends, and that the mix of overlay and main environment satisfies every requirement between them
(``pip check`` for the packages involved).
"""

from __future__ import annotations

import os
import re
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
MODEL_LIBRARIES = ("torch", "transformers", "peft", "trl")


def declared() -> dict[str, Requirement]:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    return {canonicalize_name(r.name): r for r in map(Requirement, deps)}


def makefile_low_pins() -> dict[str, str]:
    text = (ROOT / "Makefile").read_text()
    line = re.search(r"^LOW_PINS := (.+)$", text, re.M).group(1)
    return {canonicalize_name(n): v for n, v in (pin.split("==") for pin in line.split())}


def visible() -> dict[str, metadata.Distribution]:
    """The distribution Python imports for each name: the first on ``sys.path`` (the overlay's
    copy, where it has one)."""
    out: dict[str, metadata.Distribution] = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            out.setdefault(canonicalize_name(name), dist)
    return out


def test_model_libraries_lie_in_the_declared_ranges():
    reqs = declared()
    for name in MODEL_LIBRARIES:
        version = metadata.version(name)
        assert reqs[name].specifier.contains(version, prereleases=True), (
            f"{name} {version} is outside pyproject's {reqs[name]}")


def test_low_pins_are_the_lower_ends_of_the_declared_ranges():
    reqs, pins = declared(), makefile_low_pins()
    for name in ("transformers", "peft", "trl"):
        lows = [Version(s.version) for s in reqs[name].specifier if s.operator in (">=", "==")]
        assert lows and Version(pins[name]) == min(lows), (
            f"Makefile LOW_PINS has {name}=={pins[name]}, pyproject declares {reqs[name]}")


def test_this_run_has_the_versions_it_claims():
    expected = os.environ.get("PEFT_AUDIT_EXPECT_VERSIONS")
    dists = visible()
    if expected:  # the low run: every pin is what Python imports
        for pin in expected.split():
            name, version = pin.split("==")
            assert dists[canonicalize_name(name)].version == version, f"{name}: expected {version}"
    else:  # the main run: no overlay in the way
        for name, version in makefile_low_pins().items():
            assert Version(dists[name].version) >= Version(version)


def test_requirements_between_the_packages_involved_hold():
    # pip check, restricted to requirements that name a model library or an overlay package
    # (unrelated packages of the environment are not this test's business).
    involved = {canonicalize_name(n) for n in MODEL_LIBRARIES} | set(makefile_low_pins())
    dists = visible()
    broken = []
    for name, dist in dists.items():
        for text in dist.requires or []:
            req = Requirement(text)
            target = canonicalize_name(req.name)
            if name not in involved and target not in involved:
                continue
            if req.marker is not None and not req.marker.evaluate({"extra": ""}):
                continue
            if target in dists and not req.specifier.contains(dists[target].version, prereleases=True):
                broken.append(f"{name} {dist.version} requires {req}, has {dists[target].version}")
    assert not broken, "\n".join(broken)
