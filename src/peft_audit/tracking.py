"""Optional experiment tracking: each finished variant as one MLflow run (``--mlflow``).

Params are the variant's spec and the training settings that went into its id; metrics are
its rows of the store's ``metrics`` table, named ``benchmark.category.metric`` (e.g.
``safety.overall.safety_score``). The tracking URI is ``MLFLOW_TRACKING_URI`` when set, else a
local file store in ``RUN_DIR/mlruns`` (view it with ``mlflow ui --backend-store-uri
RUN_DIR/mlruns``; MLflow 3 calls that backend "maintenance mode", so for a shared server or a
database set ``MLFLOW_TRACKING_URI``). A variant already logged (same ``peft_audit.variant_id`` tag) is not logged
twice, so a resumed sweep does not duplicate runs. MLflow is an optional extra.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from .sweep import MissingDependencyError
from .sweep.plan import variant_display

INSTALL_HINT = "--mlflow needs MLflow: pip install 'peft-audit[mlflow]'  (or: pip install mlflow)"
VARIANT_TAG = "peft_audit.variant_id"
MAX_PARAM_CHARS = 500  # MLflow's limit on a param value in older servers


def require_mlflow():
    """Import mlflow or raise :class:`MissingDependencyError` saying how to install it."""
    try:
        import mlflow
    except ImportError:
        raise MissingDependencyError(INSTALL_HINT) from None
    return mlflow


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; lists and scalars are leaves."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def metric_name(row: dict[str, Any]) -> str:
    """MLflow-safe name of a metrics row: ``benchmark.category.metric``."""
    return re.sub(r"[^A-Za-z0-9_\-./ ]", "_", f"{row['benchmark']}.{row['category']}.{row['metric']}")


class MlflowTracker:
    def __init__(self, run_dir: Path, experiment: str):
        self.mlflow = require_mlflow()
        uri = os.environ.get("MLFLOW_TRACKING_URI")
        if not uri:
            uri = (Path(run_dir).resolve() / "mlruns").as_uri()
            # MLflow >= 3.x refuses a file store unless opted in; it is the zero-setup default
            # here (a server or database URI goes in MLFLOW_TRACKING_URI).
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        self.client = self.mlflow.MlflowClient(tracking_uri=uri)
        self.uri = uri
        found = self.client.get_experiment_by_name(experiment)
        self.experiment_id = found.experiment_id if found else self.client.create_experiment(experiment)

    def logged(self, vid: str) -> bool:
        runs = self.client.search_runs([self.experiment_id], filter_string=f"tags.`{VARIANT_TAG}` = '{vid}'")
        return bool(runs)

    def log_variant(self, variant: dict[str, Any], metrics: list[dict[str, Any]]) -> None:
        """Log one finished variant (a Store.variant row and its metrics rows) as one run."""
        vid = variant["id"]
        if self.logged(vid):
            return
        params = flatten(variant["config"])
        name = variant_display({**variant.get("spec", {}), **variant})
        run = self.client.create_run(self.experiment_id, run_name=name,
                                     tags={VARIANT_TAG: vid, "peft_audit.base_id": str(variant.get("base_id"))})
        rid = run.info.run_id
        for k, v in params.items():
            self.client.log_param(rid, k, str(v)[:MAX_PARAM_CHARS])
        for row in metrics:
            if row.get("value") is not None:
                self.client.log_metric(rid, metric_name(row), float(row["value"]))
        self.client.set_terminated(rid, "FINISHED")
