"""The per-machine choice of CPU kernels (peft_audit.models.kernels): the decision rule on a fake
clock, its cache, the overrides and their precedence, and that either choice gives the same
results."""

import json
import os

import pytest
import torch

from peft_audit.config import SweepConfig
from peft_audit.models import kernels, packed_weights, screened_head
from peft_audit.models.generate import generate
from peft_audit.models.scoring import score_continuations
from peft_audit.sweep.estimate import calibration_key
from peft_audit.sweep.plan import eval_protocol_hash, expand
from tiny_models import make_tiny_model


@pytest.fixture
def auto(monkeypatch, tmp_path):
    """No override (conftest forces packed kernels), an empty cache under tmp_path, nothing
    remembered in this process; a configure() of the test undone afterwards."""
    monkeypatch.delenv(kernels.ENV, raising=False)
    monkeypatch.setenv("PEFT_AUDIT_CACHE", str(tmp_path))
    monkeypatch.setattr(kernels, "_choices", {})
    monkeypatch.setattr(kernels, "_before_configure", None)
    return tmp_path / kernels.KERNELS_FILE


class FakeClock:
    """A clock that only the timed work moves: each call of a job made by :meth:`job` advances it
    by that job's next duration."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def job(self, *durations: float):
        seconds = iter(durations)
        last = [durations[-1]]

        def run():
            last[0] = next(seconds, last[0])
            self.now += last[0]
        return run


@pytest.mark.parametrize(("candidate", "reference", "expected"), [
    (1.0, 1.25, True),  # 25% faster: chosen
    (1.0, 1.02, False),  # within the margin: the reference
    (1.0, 1.0, False),
    (1.3, 1.0, False),  # slower
])
def test_the_faster_kernel_is_chosen_only_beyond_the_margin(candidate, reference, expected):
    clock = FakeClock()
    faster, ratio, steady = kernels.compare(clock.job(candidate), clock.job(reference), clock=clock)
    assert (faster, steady) == (expected, True)
    assert ratio == pytest.approx(reference / candidate)


def test_a_busy_machine_is_measured_again_and_its_pairs_decide_together():
    clock = FakeClock()
    calls = []
    # every other repeat hit by a time slice of another process: never a steady round
    spread = [0.001, 0.008] * 20

    def candidate():
        calls.append(1)
        clock.now += spread[len(calls) % len(spread)]
    faster, ratio, steady = kernels.compare(candidate, clock.job(0.01), clock=clock)
    assert not steady
    assert len(calls) == kernels.ATTEMPTS * (kernels.REPEATS + 1)  # every round, warm-up included
    assert ratio == pytest.approx(0.01 / 0.001) and faster  # the median pair over all rounds
    assert kernels.steady([0.010, 0.011, 0.010, 0.012, 0.010])
    assert not kernels.steady([0.008, 0.064, 0.008, 0.064, 0.064])


def _counting_measure(monkeypatch, use: bool, steady: bool = True) -> list:
    """The packed-weights measurement replaced by one that returns ``use`` and counts its calls."""
    calls = []

    def fake(dtype):
        calls.append(dtype)
        return use, 1.3 if use else 0.8, steady
    monkeypatch.setattr(kernels, "_measure_packed", fake)
    return calls


def test_the_choice_is_measured_once_per_machine_and_dtype_then_read_from_the_cache(auto, monkeypatch):
    calls = _counting_measure(monkeypatch, False)
    first = kernels.packed(torch.float32)
    assert (first.use, first.source, calls) == (False, "measured", [torch.float32])
    assert kernels.packed(torch.float32) is first and len(calls) == 1  # remembered in the process
    stored = json.loads(auto.read_text())
    assert list(stored) == [kernels.machine_key(torch.float32) + "|packed weights"]
    assert "threads=" in next(iter(stored)) and "torch=" in next(iter(stored))
    monkeypatch.setattr(kernels, "_choices", {})  # a new process
    again = kernels.packed(torch.float32)
    assert (again.use, again.ratio, again.source, len(calls)) == (False, 0.8, "cached", 1)
    kernels.packed(torch.bfloat16)
    assert calls == [torch.float32, torch.bfloat16]  # a dtype of its own
    assert packed_weights.enabled(torch.float32) is False


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", '{"%s": {"use": "yes", "source": "x"}}', '{"%s": 3}'])
def test_a_corrupt_cache_is_measured_again(auto, monkeypatch, content):
    key = kernels.machine_key(torch.float32) + "|packed weights"
    auto.write_text(content.replace("%s", key))
    calls = _counting_measure(monkeypatch, True)
    assert kernels.packed(torch.float32).use and len(calls) == 1
    assert json.loads(auto.read_text())[key]["use"] is True


def test_a_choice_measured_on_a_busy_machine_is_used_but_not_cached(auto, monkeypatch):
    calls = _counting_measure(monkeypatch, True, steady=False)
    choice = kernels.packed(torch.float32)
    assert choice.use and choice.source == kernels.UNSTEADY
    assert not auto.exists()
    monkeypatch.setattr(kernels, "_choices", {})
    kernels.packed(torch.float32)
    assert len(calls) == 2


def test_precedence_config_then_environment_then_measurement(auto, monkeypatch):
    calls = _counting_measure(monkeypatch, True)
    monkeypatch.setenv(kernels.ENV, "0")
    assert kernels.packed() == kernels.Choice(False, "environment")
    assert not screened_head.screen_choice().use
    kernels.configure("packed")  # the config overrides the environment
    assert kernels.packed() == kernels.Choice(True, "environment")
    assert screened_head.screen_choice().use == kernels.bf16_native()  # as before the choice was measured
    kernels.configure("plain")
    assert not kernels.packed().use
    kernels.configure("auto")  # the user's own setting again
    assert kernels.override() == "plain"
    monkeypatch.delenv(kernels.ENV)
    assert kernels.packed().source == "measured" and calls == [torch.float32]
    kernels.configure("plain")
    kernels.configure("auto")
    assert kernels.ENV not in os.environ  # unset, as it was
    monkeypatch.setenv(kernels.ENV, "fast")
    with pytest.raises(ValueError, match=f"{kernels.ENV}='fast'.*0 \\(plain\\), 1 \\(packed\\)"):
        kernels.packed()
    with pytest.raises(ValueError, match="kernels must be one of auto, packed, plain"):
        kernels.configure("fast")


@pytest.mark.skipif(not kernels.bf16_native(), reason="this CPU has no native bfloat16 products")
def test_the_screen_is_measured_against_the_head_with_the_kernels_chosen(auto, monkeypatch):
    """Shapes shrunk for speed; what is chosen depends on the machine, so only its form is checked."""
    _counting_measure(monkeypatch, False)
    monkeypatch.setattr(screened_head, "TIMED_HEAD", (2048, 64))
    monkeypatch.setattr(kernels, "REPEATS", 3)
    screen = screened_head.screen_choice()
    assert screen.source in ("measured", kernels.UNSTEADY) and screen.use == (screen.ratio >= 1 + kernels.MARGIN)
    keys = {k.rpartition("|")[2] for k in kernels._choices}
    assert keys == {"packed weights", "screened head"}  # the head it was timed against: plain here


@pytest.mark.skipif(not kernels.available(), reason="this torch has no oneDNN linear ops")
def test_a_real_measurement_gives_a_choice_and_its_ratio(auto, monkeypatch):
    """Shapes shrunk for speed; what is chosen depends on the machine, so only its form is checked."""
    monkeypatch.setattr(kernels, "SHAPES", ((64, 32),))
    monkeypatch.setattr(kernels, "REPEATS", 3)
    for dtype in (torch.float32, torch.bfloat16):
        choice = kernels.packed(dtype)
        assert choice.source in ("measured", kernels.UNSTEADY) and choice.use == (choice.ratio >= 1 + kernels.MARGIN)
        assert "plain/packed median time" in choice.describe("packed", "plain")


@pytest.mark.skipif(not kernels.available(), reason="this torch has no oneDNN linear ops")
def test_either_choice_gives_the_same_answers(auto):
    """Greedy answers equal and log-likelihoods within 1e-4 (packed_weights: float summation order)."""
    model, tok = make_tiny_model("llama")
    prompts = ["hello there", "fox", "Who was forgetful in the story?", "sky"]
    options = [[" yes", " no"], [" four", " five"], [" no"], [" blue", " grey"]]
    results = {}
    for choice in ("packed", "plain"):
        kernels.configure(choice)
        results[choice] = (generate(model, tok, prompts, max_new_tokens=6, batch_size=3),
                           score_continuations(model, tok, prompts, options, batch_size=2))
    kernels.configure("auto")
    (packed, packed_scores), (plain, plain_scores) = results["packed"], results["plain"]
    assert [g.text for g in packed] == [g.text for g in plain]
    for a, b in zip(packed_scores, plain_scores):
        assert a == pytest.approx(b, abs=1e-4)


@pytest.mark.skipif(not kernels.available(), reason="this torch has no oneDNN linear ops")
def test_weights_are_packed_only_in_the_dtypes_chosen(auto, monkeypatch):
    monkeypatch.setattr(kernels, "packed", lambda dtype=torch.float32: kernels.Choice(dtype == torch.float32, "measured"))
    model = make_tiny_model("llama")[0]
    for dtype, expected in ((torch.float32, True), (torch.bfloat16, False)):
        model.to(dtype)
        with packed_weights.packed_linears(model):
            patched = [m for m in model.modules() if "forward" in vars(m)]
        assert bool(patched) == expected


def test_the_config_setting_is_speed_only():
    """Not in any identity: the protocol hash and variant ids are those of the default."""
    default = SweepConfig()
    for choice in ("packed", "plain"):
        cfg = SweepConfig(kernels=choice)
        assert eval_protocol_hash(cfg) == eval_protocol_hash(default)
        assert [pv.id for pv in expand(cfg)] == [pv.id for pv in expand(default)]
        # a forced choice has rates of its own
        assert calibration_key("fp", "cpu", 2, cfg) != calibration_key("fp", "cpu", 2, default)
    with pytest.raises(ValueError, match="kernels"):
        SweepConfig(kernels="fast")


@pytest.mark.skipif(not kernels.bf16_native(), reason="this CPU has no native bfloat16 products")
def test_a_first_use_inside_inference_mode_measures_all_the_same(auto, monkeypatch):
    """Generation asks for the screen inside inference mode, in a decoding stream."""
    _counting_measure(monkeypatch, False)
    monkeypatch.setattr(screened_head, "TIMED_HEAD", (2048, 64))
    monkeypatch.setattr(kernels, "REPEATS", 3)
    with torch.inference_mode():
        assert screened_head.screen_choice().source in ("measured", kernels.UNSTEADY)
    assert any(k.endswith("|screened head") for k in kernels.decisions())
