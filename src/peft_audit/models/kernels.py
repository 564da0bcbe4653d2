"""Which CPU kernels evaluation uses on this machine: oneDNN's packed weights or plain ``F.linear``
(:mod:`.packed_weights`), and the bfloat16-screened greedy head (:mod:`.screened_head`).

Neither is faster everywhere. Packing was tuned on a 2-core AVX-512 AMD EPYC with native bfloat16
dot products, where it is faster; on an Intel Xeon with AVX-512 but neither AVX512-BF16 nor AMX
plain kernels won (BBQ scoring 23.4 vs 18.5 items/s, generation 299 vs 266 tokens/s; issue #32).
So the choice is measured on first use (STYLE habit 13), in a few tenths of a second
(:func:`compare`: :data:`REPEATS` interleaved pairs, alternating which runs first; the median of
the pairs' time ratios; the faster one chosen only when it wins by :data:`MARGIN`, otherwise the
reference):

* **packed weights** (per dtype): the projections of a SmolLM2-135M layer (:data:`SHAPES`) at
  a decode step's and a generation batch's rows (:data:`ROWS`), packed vs plain (the reference);
* **the screened head** (float32 models, CPUs with native bfloat16 only, as before): a random
  vocabulary head, the screen vs the head's product and ``argmax`` with the kernels chosen
  for float32 (the reference); measured by :func:`.screened_head.screen_choice` through
  :func:`decided`.

Timings on a machine busy with other work spread by scheduler time slices (two threads on two
cores shared with another process: 8 to 64 ms for the same product); a round whose repeats are
not :func:`steady` is repeated, up to :data:`ATTEMPTS` rounds, and a choice that found no steady
round is used but not cached.

The result is cached in ``$PEFT_AUDIT_CACHE/kernels.json`` (beside the sweep calibration) under
the machine (CPU model and its vector extensions), torch's version, its thread count and the
dtype, never under a model: the kernels' speed depends on those alone. A missing or corrupt file
is measured again.

This module also holds the oneDNN operations both use (:func:`available`, :func:`reorder`,
:func:`packed_linear`) and the CPU's bfloat16 check (:func:`bf16_native`).

Overrides, first that applies wins: the sweep config's ``kernels`` (``packed`` or ``plain``,
applied with :func:`configure`), then the environment variable ``PEFT_AUDIT_PACKED_WEIGHTS``
(``0``/``false``/``no``/``off`` or ``plain``: plain kernels and no screened head, e.g. to
reproduce a version without packing bit for bit; ``1``/``true``/``yes``/``on`` or ``packed``:
packed weights, and the screened head where bfloat16 is native, the behaviour before this
choice was measured), then the measurement. Either choice gives the same results up to float
summation order (:mod:`.packed_weights`); the screened head gives the float32 head's tokens.
"""

from __future__ import annotations

import functools
import os
import platform
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch

#: The environment variable that overrides the measured choice (module docstring).
ENV = "PEFT_AUDIT_PACKED_WEIGHTS"
#: The values of the config's ``kernels`` setting.
CHOICES = ("auto", "packed", "plain")
_ENV_WORDS = {**dict.fromkeys(("0", "false", "no", "off", "plain"), "plain"),
              **dict.fromkeys(("1", "true", "yes", "on", "packed"), "packed"), "auto": None, "": None}
KERNELS_FILE = "kernels.json"
#: Part of the cache key: raised when the measurement changes, so an old choice is measured again.
KERNELS_VERSION = 1
#: How much faster (median time) the packed kernels or the screen must be to be chosen.
MARGIN = 0.03
#: ``(out, in)`` of the weights timed: SmolLM2-135M's MLP up (and gate) and down projections.
SHAPES = ((1536, 576), (576, 1536))
#: Rows multiplied: a decode step of a small batch, and of the quickstart's 135 prompts.
ROWS = (30, 135)
REPEATS = 7
#: Largest spread (upper / lower quartile) of one kernel's repeated times for a steady round.
STEADY = 1.25
#: Rounds of repeats tried for a steady one.
ATTEMPTS = 3


@dataclass(frozen=True)
class Choice:
    """One choice for one dtype: whether the candidate kernels (``packed`` weights, the screened
    head) are used, where that came from (``environment``, which a config's ``kernels`` sets,
    ``measured``, :data:`UNSTEADY`, ``cached``, ``unavailable``) and, when measured, the median
    time ratio reference / candidate (above 1: the candidate is faster)."""

    use: bool
    source: str
    ratio: float | None = None
    measured_at: float | None = field(default=None, compare=False)

    def describe(self, candidate: str, reference: str) -> str:
        """``candidate`` or ``reference`` (what was chosen) and why, e.g. ``packed weights
        (measured: plain/packed median time 1.20, chosen when >= 1.03)``."""
        text = f"{candidate if self.use else reference} ({self.source}"
        if self.ratio is not None:
            text += f": {reference}/{candidate} median time {self.ratio:.2f}, {candidate} chosen when >= {1 + MARGIN:.2f}"
        return text + ")"


def configure(choice: str) -> None:
    """Apply the sweep config's ``kernels`` setting to this process and the workers it starts:
    ``packed`` or ``plain`` set :data:`ENV` (a config overrides the environment); ``auto`` leaves
    it as the user set it (undoing an earlier :func:`configure` of this process)."""
    global _before_configure
    if choice not in CHOICES:
        raise ValueError(f"kernels must be one of {', '.join(CHOICES)}, got {choice!r}")
    if choice == "auto":
        if _before_configure is not None:
            previous = _before_configure[0]
            if previous is None:
                os.environ.pop(ENV, None)
            else:
                os.environ[ENV] = previous
            _before_configure = None
        return
    if _before_configure is None:
        _before_configure = (os.environ.get(ENV),)
    os.environ[ENV] = "1" if choice == "packed" else "0"


_before_configure: tuple[str | None] | None = None


def override() -> str | None:
    """``packed`` or ``plain`` where :data:`ENV` (or the config, through it) says so; None for auto."""
    raw = os.environ.get(ENV, "")
    word = raw.strip().lower()
    if word not in _ENV_WORDS:
        raise ValueError(f"{ENV}={raw!r} is not a kernel choice: use 0 (plain), 1 (packed) or unset it "
                         "to choose by measurement")
    return _ENV_WORDS[word]


def packed(dtype: torch.dtype = torch.float32) -> Choice:
    """Whether weights in ``dtype`` are packed for oneDNN on this machine (module docstring):
    overridden, or measured (a tenth of a second) the first time a machine, torch version, thread
    count and dtype is seen."""
    forced = override()
    if forced is not None or not available():
        return Choice(forced == "packed" and available(), "environment" if forced else "unavailable")
    return decided("packed weights", dtype, lambda: _measure_packed(dtype))


def decided(what: str, dtype: torch.dtype, measure: Callable[[], tuple[bool, float, bool]]) -> Choice:
    """The choice ``what`` for ``dtype`` on this machine: remembered in this process, else read
    from the cache, else ``measure()``d (``(use, ratio, steady)``, see :func:`compare`) and
    cached where steady."""
    key = f"{machine_key(dtype)}|{what}"
    with _lock:
        if key not in _choices:
            # first use may come inside inference mode (a decoding stream, whose thread count is
            # its own), where the measurement's tensors would be inference tensors
            with torch.inference_mode(False), torch.no_grad():
                _choices[key] = _cached(key) or _measure_and_store(key, measure)
        return _choices[key]


def decisions() -> dict[str, Choice]:
    """Every choice made in this process so far, by its key (machine, torch, threads, dtype, what)."""
    with _lock:
        return dict(_choices)


_choices: dict[str, Choice] = {}
_lock = threading.RLock()  # a measurement may need another choice (the screen, the packed head)


def machine_key(dtype: torch.dtype) -> str:
    """What the measured choice depends on: the CPU model and the vector extensions torch uses on
    it, torch's version and thread count, and the dtype."""
    cpu = getattr(torch.backends, "cpu", None)
    capability = cpu.get_cpu_capability() if cpu is not None else "?"
    extensions = []
    for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        check = getattr(torch.cpu, name, None)
        extensions.append(f"{name.strip('_').removeprefix('is_').removesuffix('_supported')}="
                          f"{int(bool(check())) if check is not None else '?'}")
    return (f"v{KERNELS_VERSION}|{_cpu_model()}|{capability}|{'|'.join(extensions)}|torch={torch.__version__}|"
            f"threads={torch.get_num_threads()}|{str(dtype).removeprefix('torch.')}")


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:  # not Linux
        pass
    return platform.processor() or platform.machine()


def _cache_path():
    from .resolve import cache_dir

    return cache_dir() / KERNELS_FILE


def _cached(key: str) -> Choice | None:
    from ..textio import read_json_entry

    entry = read_json_entry(_cache_path(), key)
    try:
        choice = Choice(**entry)
    except TypeError:  # no entry, or one of another shape: measured again
        return None
    if not isinstance(choice.use, bool):
        return None
    return Choice(choice.use, "cached", choice.ratio, choice.measured_at)


#: The source of a choice measured while the machine was too busy for steady timings: used in
#: this process, not cached, so the next process measures again.
UNSTEADY = "measured on a busy machine, not cached"


def _measure_and_store(key: str, measure: Callable[[], tuple[bool, float, bool]]) -> Choice:
    from ..textio import write_json_entry

    use, ratio, is_steady = measure()
    choice = Choice(use, "measured" if is_steady else UNSTEADY, round(ratio, 4), time.time())
    if is_steady:
        try:
            write_json_entry(_cache_path(), key, asdict(choice))
        except OSError:  # a read-only cache: the choice holds for this process, measured again next time
            pass
    return choice


def time_interleaved(first: Callable[[], object], second: Callable[[], object], repeats: int = REPEATS,
                     clock: Callable[[], float] = time.perf_counter) -> tuple[list[float], list[float]]:
    """Seconds of each of ``repeats`` calls of ``first`` and of ``second`` (each called once before,
    to warm up), alternating which goes first so that drift in the machine's load hits both."""
    first()
    second()
    times: tuple[list[float], list[float]] = ([], [])
    for rep in range(repeats):
        for which in ((0, 1) if rep % 2 == 0 else (1, 0)):
            fn = (first, second)[which]
            start = clock()
            fn()
            times[which].append(clock() - start)
    return times


def steady(times: list[float]) -> bool:
    """Whether repeated timings agree: the upper quartile within :data:`STEADY` of the lower one.
    A machine busy with other work (two threads sharing two cores with another process) spreads
    them by scheduler time slices, several times over."""
    q1, _, q3 = statistics.quantiles(times, n=4, method="inclusive")
    return q3 <= STEADY * q1


def compare(candidate: Callable[[], object], reference: Callable[[], object],
            clock: Callable[[], float] = time.perf_counter, margin: float = MARGIN) -> tuple[bool, float, bool]:
    """Whether ``candidate`` is faster than ``reference`` by ``margin``: ``(faster, ratio, steady)``.
    The ratio is the median over interleaved pairs of reference time / candidate time (a pair
    runs back to back, so slow drift in load cancels); above ``1 + margin``, the candidate is
    faster. Up to :data:`ATTEMPTS` rounds of :func:`time_interleaved`, until one is
    :func:`steady`; where none is, all rounds' pairs decide and ``steady`` is False."""
    ratios: list[float] = []
    for _ in range(ATTEMPTS):
        cand, ref = time_interleaved(candidate, reference, clock=clock)
        pairs = [r / max(c, 1e-12) for c, r in zip(cand, ref)]
        if steady(cand) and steady(ref):
            ratio = statistics.median(pairs)
            return ratio >= 1 + margin, ratio, True
        ratios += pairs
    ratio = statistics.median(ratios)
    return ratio >= 1 + margin, ratio, False


def _measure_packed(dtype: torch.dtype) -> tuple[bool, float, bool]:
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        weights = [torch.randn(shape, generator=gen).to(dtype) for shape in SHAPES]
        # (input, weight, the weight packed) for each shape at each number of rows
        cases = [(torch.randn(rows, w.shape[1], generator=gen).to(dtype), w, reorder(w)) for rows in ROWS for w in weights]
        return compare(lambda: [packed_linear(x, p, None) for x, _, p in cases],
                       lambda: [torch.nn.functional.linear(x, w) for x, w, _ in cases])


@functools.cache
def available() -> bool:
    """Whether this torch has oneDNN's linear operations (:func:`reorder`, :func:`packed_linear`)."""
    mkldnn = getattr(torch.ops, "mkldnn", None)
    if not torch.backends.mkldnn.is_available() or mkldnn is None:
        return False
    try:
        out = packed_linear(torch.ones(2, 4), torch.ops.mkldnn._reorder_linear_weight(torch.zeros(4, 4)), None)
    except (RuntimeError, AttributeError, NotImplementedError):  # a build without these ops
        return False
    return tuple(out.shape) == (2, 4)


def reorder(weight: torch.Tensor) -> torch.Tensor:
    """``weight`` (``[out, in]``) reordered once into oneDNN's blocked layout, as a normal tensor
    (not an inference one), usable outside inference mode too."""
    with torch.inference_mode(False), torch.no_grad():
        return torch.ops.mkldnn._reorder_linear_weight(weight.detach().contiguous())


def packed_linear(x: torch.Tensor, packed: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``F.linear(x, weight, bias)`` with the weight as :func:`reorder` returned it."""
    return torch.ops.mkldnn._linear_pointwise(x, packed, bias, "none", [], "")


@functools.cache
def bf16_native() -> bool:
    """Whether this CPU multiplies bfloat16 natively (AVX512-BF16 or AMX), so oneDNN's bfloat16
    product runs at about twice the float32 rate. oneDNN also takes bfloat16 on AVX-512 CPUs
    without them (``torch.ops.mkldnn._is_mkldnn_bf16_supported()`` says yes there), converting
    each value to float32: no faster than float32."""
    cpu = getattr(torch, "cpu", None)
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported()) and (
            cpu._is_avx512_bf16_supported() or cpu._is_amx_tile_supported())
    except (AttributeError, RuntimeError):  # a build without these checks
        return False
