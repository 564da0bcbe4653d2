"""Sweeps: pure expansion with stable ids (:mod:`.plan`), cost estimates (:mod:`.cost`), and
executors (local subprocesses, Ray) that run variants while the driver alone writes the store."""


class MissingDependencyError(ImportError):
    """An optional extra (Ray, MLflow) was asked for but is not installed; the message says how."""
