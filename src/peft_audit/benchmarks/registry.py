"""Benchmark registry: one line per benchmark. The sweep file's section of each is keyed by
its name; the pipeline, summary, gate and export loop over this table in its order."""

from __future__ import annotations

from .base import Benchmark
from .fairness.benchmark import BBQBenchmark
from .safety.benchmark import SafetyBenchmark

BENCHMARKS: dict[str, Benchmark] = {
    "safety": SafetyBenchmark(),
    "fairness": BBQBenchmark(),
}


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
