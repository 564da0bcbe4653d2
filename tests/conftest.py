import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
# Keep the suite fast and quiet on a 2-core machine.
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")

from tiny_models import FAMILIES, save_lively_tiny_model, save_tiny_model  # noqa: E402


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A tiny random Llama checkpoint saved as a local directory."""
    return save_tiny_model(tmp_path_factory.mktemp("tiny-llama"), "llama")


@pytest.fixture(scope="session")
def lively_model_dir(tmp_path_factory) -> Path:
    """A tiny model whose greedy answers depend on the prompt and on an adapter (local directory)."""
    return save_lively_tiny_model(tmp_path_factory.mktemp("tiny-lively"))


@pytest.fixture(scope="session")
def tiny_family_dirs(tmp_path_factory) -> dict[str, Path]:
    return {f: save_tiny_model(tmp_path_factory.mktemp(f"tiny-{f}"), f) for f in FAMILIES}


@pytest.fixture(scope="session")
def smollm2_dir() -> Path:
    """The real bundled SmolLM2-135M-Instruct, converted once and cached."""
    from peft_audit.models import resolve_model

    return resolve_model("smollm2-135m-instruct").path


@pytest.fixture(autouse=True)
def _pack_tiny_models_too(monkeypatch):
    """The tiny models' matrices are below the size worth packing for oneDNN; pack them anyway,
    so every generation and scoring test runs the kernels real models get on the CPU."""
    from peft_audit.models import packed_weights

    monkeypatch.setattr(packed_weights, "MIN_ELEMENTS", 0)


@pytest.fixture(autouse=True)
def _packed_kernels_without_measuring(monkeypatch):
    """Tests run the packed kernels (and the screened head where bfloat16 is native) whatever this
    machine would measure, and never write the user's kernel cache; tests/models/test_kernels.py
    unsets this to test the measured choice."""
    from peft_audit.models import kernels

    monkeypatch.setenv(kernels.ENV, "1")


@pytest.fixture(autouse=True)
def _decode_small_batches_in_streams_too(monkeypatch):
    """The tests' batches are too small to be split into decoding streams; split them anyway
    (where torch has at least two threads), so every generation test runs the threaded decoding
    real batches get on a CPU."""
    from peft_audit.models import generate

    monkeypatch.setattr(generate, "MIN_STREAM_ROWS", 1)


@pytest.fixture(autouse=True)
def _screen_tiny_heads_too(monkeypatch):
    """The tiny models' output heads are below the size worth screening in bfloat16; screen them
    anyway, so every greedy generation test checks that the screened head picks the float32
    head's tokens."""
    from peft_audit.models import screened_head

    monkeypatch.setattr(screened_head, "MIN_ELEMENTS", 0)


@pytest.fixture
def runs_in_process(monkeypatch):
    """Commands (``run``, ``audit``, ``mitigate``) evaluate their variants in the test process, as
    ``RunOptions(in_process=True)`` does: no worker is spawned, so none imports torch,
    transformers and peft anew (3-5 s a worker). For tests of what a command does with its
    variants' results; worker processes are under test in tests/sweep/ and
    tests/test_reliability_cli.py, and the commands' own spawned runs in tests/test_e2e.py."""
    import dataclasses

    from peft_audit.sweep import options

    @dataclasses.dataclass(frozen=True)
    class InProcess(options.RunOptions):
        in_process: bool = True

    monkeypatch.setattr(options, "RunOptions", InProcess)
