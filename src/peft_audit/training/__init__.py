"""Fine-tuning: SFT and DPO of PEFT adapters with provenance. Knows nothing about benchmarks."""

from .data import TrainingData, load_refusals, load_training_data
from .provenance import PROVENANCE_FILE, read_provenance
from .train import TrainResult, train_adapter

__all__ = [
    "PROVENANCE_FILE",
    "TrainResult",
    "TrainingData",
    "load_refusals",
    "load_training_data",
    "read_provenance",
    "train_adapter",
]
