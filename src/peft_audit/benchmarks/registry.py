"""Benchmark registry: one line per benchmark, ``name: "module:Class"`` (relative to this
package). The sweep file's section of each is keyed by its name; the pipeline, summary, report,
gate and export loop over this table in its order."""

from __future__ import annotations

from importlib import import_module

from .base import Benchmark

_REGISTERED = {
    "safety": ".safety.benchmark:SafetyBenchmark",
    "fairness": ".fairness.benchmark:BBQBenchmark",
    "xstest": ".xstest.benchmark:XSTestBenchmark",
    "strongreject": ".strongreject.benchmark:StrongRejectBenchmark",
    "harmbench": ".harmbench.benchmark:HarmBenchBenchmark",
    "utility": ".utility.benchmark:UtilityBenchmark",
}


def _load(path: str) -> Benchmark:
    module, _, cls = path.partition(":")
    return getattr(import_module(module, __package__), cls)()


BENCHMARKS: dict[str, Benchmark] = {name: _load(path) for name, path in _REGISTERED.items()}


def get_benchmark(name: str) -> Benchmark:
    """The benchmark registered as ``name``; ValueError naming the valid ones if unknown."""
    try:
        return BENCHMARKS[name]
    except KeyError:
        raise ValueError(f"unknown benchmark {name!r}; valid: {', '.join(BENCHMARKS)}") from None


def benchmark_for_samples(kind: str) -> Benchmark:
    """The benchmark whose per-item export is ``kind`` (``peft-audit export --samples``)."""
    for b in BENCHMARKS.values():
        if b.sample_kind == kind:
            return b
    raise ValueError(f"unknown sample kind {kind!r}; valid: {', '.join(b.sample_kind for b in BENCHMARKS.values())}")
