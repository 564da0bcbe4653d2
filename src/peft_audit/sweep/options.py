"""How a sweep is run (not what it computes): executor, parallelism, budget, tracking.

None of these settings changes a result, so none is part of a variant id or the run's
evaluation protocol.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class RunOptions:
    retry_failed: bool = False
    executor: str = "local"
    jobs: int = 1
    ray_address: str | None = None
    max_hours: float | None = None
    mlflow: bool = False
    in_process: bool = False  # local executor: run variants in this process (tests, debugging)
    verbose: bool = False  # stream other libraries' output to the terminal instead of RUN_DIR/logs/


#: ``run_one(cfg, run_dir, pv, sink, done_stages) -> (status, timings)``: evaluates one variant
#: with failure isolation (:func:`peft_audit.pipeline.run_one`). Executors are handed it, so the
#: sweep package never imports the pipeline; it must be a module-level function (pickled by name
#: for spawned processes and Ray tasks).
VariantRunner = Callable[..., tuple[str, dict[str, float]]]
