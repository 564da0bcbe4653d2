"""train_adapter: determinism, provenance contents, clean interruption, refusal to overwrite; DPO
reference log-probs shared between variants (``training/reference.py``) without changing any
adapter, and never reused where the reference draws random numbers."""

import json
from collections import OrderedDict
from types import SimpleNamespace

import pytest
import torch

from peft_audit.config import TrainingConfig, VariantSpec
from peft_audit.models import load_base
from peft_audit.training import PROVENANCE_FILE, read_provenance, train_adapter
from peft_audit.training import reference
from peft_audit.training.data import BUILTIN_FILES
from peft_audit.training.provenance import file_sha256


def _train(base_dir, out_dir, *, method="lora", algo="sft", seed=0, training=None, **kw):
    loaded = load_base(str(base_dir), device="cpu")
    spec = VariantSpec(base_model=str(base_dir), method=method, method_args=kw.pop("method_args", {}), algo=algo,
                       lr=1e-2, epochs=1, seed=seed)
    training = training or TrainingConfig(max_steps=3, batch_size=2, max_seq_len=64, max_examples=12)
    return train_adapter(loaded.model, loaded.tokenizer, spec=spec, training=training, out_dir=out_dir,
                         base_fingerprint=loaded.resolved.fingerprint, device="cpu", show_progress=False, **kw)


@pytest.mark.parametrize("method", ["lora", "p-tuning"])
def test_same_seed_gives_identical_adapter_weights(method, tiny_model_dir, tmp_path):
    a = _train(tiny_model_dir, tmp_path / "a", method=method)
    b = _train(tiny_model_dir, tmp_path / "b", method=method)
    c = _train(tiny_model_dir, tmp_path / "c", method=method, seed=1)
    weights = lambda r: (r.adapter_dir / "adapter_model.safetensors").read_bytes()  # noqa: E731
    assert weights(a) == weights(b)
    assert a.losses == b.losses
    assert weights(a) != weights(c)


def test_provenance_records_everything(tiny_model_dir, tmp_path):
    training = TrainingConfig(max_steps=2, batch_size=2, max_seq_len=64, max_examples=10, safety_mix=0.2)
    result = _train(tiny_model_dir, tmp_path / "ad", method="ia3", algo="dpo", training=training)
    prov = read_provenance(result.adapter_dir)
    assert prov == json.loads((result.adapter_dir / PROVENANCE_FILE).read_text())
    # what a sweep stores on the variant: the same record whether it trained the adapter or reused it
    assert result.provenance == prov and prov["schema_version"] == 1
    loaded = load_base(str(tiny_model_dir), device="cpu")
    assert prov["base_model"]["id"] == str(tiny_model_dir)
    assert prov["base_model"]["fingerprint"] == loaded.resolved.fingerprint
    assert prov["method"] == "ia3" and prov["algo"] == "dpo"
    assert prov["method_args"] == {"target_modules": None, "feedforward_modules": None}
    assert set(prov["peft_config"]["target_modules"]) == {"k_proj", "v_proj", "down_proj"}
    hp = prov["hyperparameters"]
    assert hp["lr"] == 1e-2 and hp["seed"] == 0 and hp["max_steps"] == 2 and hp["safety_mix"] == 0.2
    assert hp["batch_size"] == 2 and hp["dpo_beta"] == 0.1
    ds = prov["dataset"]
    assert ds["source"] == "builtin:preference.jsonl" and ds["source_sha256"] == file_sha256(BUILTIN_FILES["dpo"])
    assert ds["rows"] == 10 + 2 and ds["safety_rows"] == 2 and len(ds["content_sha256"]) == 64
    for lib in ("torch", "transformers", "peft", "trl", "datasets"):
        assert prov["libraries"][lib]
    assert prov["device"] == "cpu" and prov["steps"] == 2
    assert prov["train_loss"] == result.losses and len(result.losses) == 2
    assert prov["wall_seconds"] > 0
    assert 0 < prov["trainable_params"] < prov["total_params"]
    assert "rewards/margins" in prov["log_history"][0]


def test_interrupt_leaves_no_adapter(tiny_model_dir, tmp_path):
    from transformers import TrainerCallback

    class CtrlC(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            raise KeyboardInterrupt

    import peft_audit.training.train as train_mod

    original = train_mod._LogRecorder.callback
    train_mod._LogRecorder.callback = lambda self: CtrlC()
    try:
        with pytest.raises(KeyboardInterrupt):
            _train(tiny_model_dir, tmp_path / "out")
    finally:
        train_mod._LogRecorder.callback = original
    assert not (tmp_path / "out").exists()
    assert list(tmp_path.iterdir()) == []  # the partial temp dir is gone too


def test_training_again_removes_what_a_killed_run_left(tiny_model_dir, tmp_path):
    # kill -9 during training runs no cleanup: the temporary directory stays next to the adapter
    stale = tmp_path / ".out.partial-k1lled"
    (stale / "_trainer").mkdir(parents=True)
    (stale / "adapter_model.safetensors").write_bytes(b"half written")
    other = tmp_path / ".other.partial-k1lled"  # another adapter's: not ours to remove
    other.mkdir()
    _train(tiny_model_dir, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.partial-k1lled", "out"]


def test_refuses_to_overwrite_and_to_train_base(tiny_model_dir, tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "adapter_config.json").write_text("{}")
    with pytest.raises(FileExistsError, match="not empty"):
        _train(tiny_model_dir, tmp_path / "out")
    loaded = load_base(str(tiny_model_dir), device="cpu")
    with pytest.raises(ValueError, match="cannot be trained"):
        train_adapter(loaded.model, loaded.tokenizer, spec=VariantSpec(base_model="x"), training=TrainingConfig(),
                      out_dir=tmp_path / "b", base_fingerprint="", device="cpu")


def test_unknown_method_arg_fails_before_training(tiny_model_dir, tmp_path):
    with pytest.raises(ValueError, match="valid: r, alpha, dropout, target_modules"):
        _train(tiny_model_dir, tmp_path / "x", method_args={"rank": 4})
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("method", ["lora", "prompt-tuning"])
def test_gradient_checkpointing_trains(method, tiny_model_dir, tmp_path):
    training = TrainingConfig(max_steps=2, batch_size=2, max_seq_len=64, max_examples=4, gradient_checkpointing=True)
    result = _train(tiny_model_dir, tmp_path / "gc", method=method, training=training)
    assert result.provenance["hyperparameters"]["gradient_checkpointing"] is True
    assert len(result.losses) == 2 and all(loss == loss for loss in result.losses)


@pytest.mark.parametrize("algo", ["sft", "dpo"])
def test_lm_head_scores_labelled_positions_only_and_changes_nothing(algo, tiny_model_dir, tmp_path, monkeypatch):
    # TRL scores every position on a CPU and masks the prompt and padding afterwards; training
    # asks it to score the labelled ones only, which must leave losses and weights bit for bit
    import contextlib

    from trl.trainer import utils as trl_utils

    from peft_audit.training import train as train_module

    rows = []
    real = trl_utils._ChunkedLogProbFunction

    class Spy:
        @staticmethod
        def apply(hidden, *args):
            rows.append(hidden.shape[0])
            return real.apply(hidden, *args)

    monkeypatch.setattr(trl_utils, "_ChunkedLogProbFunction", Spy)
    compact = _train(tiny_model_dir, tmp_path / "compact", algo=algo)
    compact_rows, rows[:] = list(rows), []
    with monkeypatch.context() as m:
        m.setattr(train_module, "labelled_positions_only", contextlib.nullcontext)
        every = _train(tiny_model_dir, tmp_path / "every", algo=algo)
    weights = lambda r: (r.adapter_dir / "adapter_model.safetensors").read_bytes()  # noqa: E731
    assert weights(compact) == weights(every)
    assert compact.losses == every.losses
    assert len(compact_rows) == len(rows) > 0
    assert all(c < e for c, e in zip(compact_rows, rows))  # prompts and padding were not scored
    assert trl_utils._use_triton(torch.device("cpu")) is False  # restored after training


def test_labelled_positions_only_leaves_other_devices_to_trl():
    from trl.trainer import utils as trl_utils

    from peft_audit.training.train import labelled_positions_only

    with labelled_positions_only():
        assert trl_utils._use_triton(torch.device("cpu")) is True
        assert trl_utils._use_triton(torch.device("xla")) is False  # XLA would recompile per shape
    assert trl_utils._use_triton(torch.device("cpu")) is False


needs_trl_reference = pytest.mark.skipif(reference._trl_dpo_module() is None,
                                         reason="this TRL computes the DPO reference otherwise")


def _adapter_bytes(result) -> bytes:
    return (result.adapter_dir / "adapter_model.safetensors").read_bytes()


class _CountingCache(OrderedDict):
    """The reference cache, counting the reference passes that ran (each stores its result)."""

    stores = 0

    def __setitem__(self, key, value):
        self.stores += 1
        super().__setitem__(key, value)


@pytest.fixture
def fresh_cache(monkeypatch):
    monkeypatch.setattr(reference, "_cache", _CountingCache())
    return reference


@needs_trl_reference
def test_shared_reference_gives_the_adapter_each_variant_gets_alone(fresh_cache, tiny_model_dir, tmp_path,
                                                                    monkeypatch):
    lora = _train(tiny_model_dir, tmp_path / "lora", method="lora", algo="dpo")
    ran = fresh_cache._cache.stores
    assert ran == len(fresh_cache._cache) == 3  # one reference pass per batch (max_steps 3)
    # other methods on the same base and batches run none of their own
    ia3 = _train(tiny_model_dir, tmp_path / "ia3", method="ia3", algo="dpo")
    prompt = _train(tiny_model_dir, tmp_path / "pt", method="prompt-tuning", algo="dpo")
    assert fresh_cache._cache.stores == ran
    with monkeypatch.context() as m:  # the same variants with TRL's own reference passes
        m.setattr(reference, "_trl_dpo_module", lambda: None)
        alone = {name: _train(tiny_model_dir, tmp_path / f"{name}-alone", method=name, algo="dpo")
                 for name in ("lora", "ia3", "prompt-tuning")}
    assert fresh_cache._cache.stores == ran
    for name, shared in (("lora", lora), ("ia3", ia3), ("prompt-tuning", prompt)):
        assert _adapter_bytes(shared) == _adapter_bytes(alone[name]), name
        assert shared.losses == alone[name].losses, name


@needs_trl_reference
def test_other_batches_are_not_served_from_the_cache(fresh_cache, tiny_model_dir, tmp_path):
    _train(tiny_model_dir, tmp_path / "a", algo="dpo")
    _train(tiny_model_dir, tmp_path / "b", algo="dpo", seed=1)  # other batches
    assert fresh_cache._cache.stores == len(fresh_cache._cache) == 6


class _DropoutModel(torch.nn.Module):
    """A stand-in PEFT model whose reference pass draws random numbers."""

    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Embedding(4, 2)

    def get_input_embeddings(self):
        return self.embed

    def disable_adapter(self):
        import contextlib

        return contextlib.nullcontext()

    def forward(self, input_ids):
        return SimpleNamespace(log_probs=torch.nn.functional.dropout(input_ids.float(), 0.5, training=True))


@needs_trl_reference
def test_a_reference_that_draws_random_numbers_is_never_reused(fresh_cache):
    dpo_trainer = fresh_cache._trl_dpo_module()
    model, ids = _DropoutModel(), torch.ones(2, 8, dtype=torch.long)
    torch.manual_seed(0)
    with fresh_cache.shared_reference(model, "base", dropout_disabled=False):
        for _ in range(3):
            with dpo_trainer.use_adapter(model, None):
                model(input_ids=ids)
        after_shared = torch.rand(1)
    torch.manual_seed(0)
    for _ in range(3):
        model(input_ids=ids)
    assert torch.equal(after_shared, torch.rand(1))  # every pass ran, every draw happened
    assert len(fresh_cache._cache) == 0
    assert "forward" not in vars(model)
