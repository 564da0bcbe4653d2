"""What a worker builds once and keeps for its lifetime: its backend (:mod:`peft_audit.models.backends`;
vLLM's engines live there) and the judges its benchmarks name (a guard model is loaded once, not per
variant). A worker process (:func:`peft_audit.sweep.worker.subprocess_main`), a Ray task and the
in-process executor each open one and close it when they end; nothing is kept in module globals,
so two runs in one process, or a test and the next, never share an engine or a judge.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..judges.base import Judge
    from ..models.backends.base import Backend, BackendSettings


class WorkerResources:
    """A worker's backends (one per distinct :class:`~peft_audit.models.backends.base.BackendSettings`)
    and judges (one per judge spec and run directory, shared by every variant and benchmark that
    names the same spec), built on first use. A context manager: leaving it closes them all."""

    def __init__(self) -> None:
        self._backends: dict["BackendSettings", "Backend"] = {}
        self._judges: dict[tuple[str, str], "Judge"] = {}

    def backend(self, settings: "BackendSettings") -> "Backend":
        if settings not in self._backends:
            from ..models.backends import build_backend

            self._backends[settings] = build_backend(settings)
        return self._backends[settings]

    def judges(self, section, run_dir: str | Path) -> list["Judge"]:
        """The judges a benchmark section names (its ``judges`` specs), behind the run's judgment
        cache where the judge allows it."""
        from ..judges.registry import build_judge

        out = []
        for spec in section.judges:
            key = (spec.model_dump_json(), str(run_dir))
            if key not in self._judges:
                self._judges[key] = build_judge(spec, cache_path=Path(run_dir) / "judge_cache.sqlite")
            out.append(self._judges[key])
        return out

    def close(self) -> None:
        """Close every judge that holds something (an HTTP client, a model) and every backend (vLLM's
        engine processes would keep the worker from exiting). Safe to call twice."""
        judges, self._judges = list(self._judges.values()), {}
        for judge in judges:
            close = getattr(judge, "close", None)
            if close is not None:
                close()
        backends, self._backends = list(self._backends.values()), {}
        for backend in backends:
            backend.close()

    def __enter__(self) -> "WorkerResources":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
