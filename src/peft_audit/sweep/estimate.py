"""How long a sweep will take: measured rates on this machine, and a study-scale estimate on a GPU.

**This machine** (:func:`calibrate`, :func:`estimate_wall`). A short calibration loads the base
model on the sweep's device and times the project's own code paths at the sweep's settings:
greedy generation of a batch of the sweep's safety prompts (seconds per prompt per new token),
log-likelihood scoring of BBQ items (seconds per item), and LoRA training steps at the sweep's
batch size on its training rows (seconds per optimizer step; the second step, after warm-up).
The result is cached in ``$PEFT_AUDIT_CACHE/calibration.json`` under the model's fingerprint,
the device, torch's thread count and the settings that change the rates, so it runs once.
The estimate multiplies the plan's counts (:mod:`peft_audit.sweep.cost`: every enabled
benchmark's workload, plug-ins included) by those rates: generation assumes every answer runs to
its benchmark's ``max_new_tokens`` (an upper bound: answers that stop early cost less, though a
long answer's later tokens attend over a longer cache than the calibration's), log-likelihood
items cost what a BBQ item does, judges that run a model of their own (a guard classifier, an
LLM endpoint) are named but not timed, and ``--jobs N`` on one machine is assumed to share it
(no speed-up on CPU, where the jobs split the cores; N GPUs divide the time by N).

**The original study** (:func:`study_estimate`): Taraghi et al. (2025) evaluated 235 variants of
7-8B models on 330 HEx-PHI prompts and the full BBQ (58,492 items) each. The estimate for one
GPU comes from the GPU's published peak rates (dense bf16 FLOP/s and memory bandwidth, from the
vendor's datasheet) and stated utilisations, on the roofline model (Williams et al. 2009):
a decoding step reads every weight once (memory-bound below a large batch), prefill, scoring and
training are compute-bound at ``2N`` FLOP per token forward and ``6N`` forward+backward
(Kaplan et al. 2020, sec. 2.1). Every assumption is printed with the result.
"""

from __future__ import annotations

import contextlib
import io
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .logs import describe_seconds

CALIBRATION_FILE = "calibration.json"
#: Part of the calibration's cache key: raised when the code's own rates change, so an estimate
#: never uses a calibration of slower code (2: packed CPU weights and the shared DPO reference;
#: 3: decoding streams on a CPU; 4: the bfloat16-screened greedy head on a CPU; 5: the lean
#: Llama forward on a CPU).
CALIBRATION_VERSION = 5
GEN_TOKENS = 16  # new tokens per prompt while calibrating
GEN_PROMPTS = 256  # at most this many prompts (one batch at the sweep's batch size)
BBQ_ITEMS = 24


@dataclass(frozen=True)
class Rates:
    """Seconds per unit of work of one base model on one device (see module docstring)."""

    generate_s_per_prompt_token: float  # per prompt, per new token, at the calibration batch
    score_s_per_item: float  # one BBQ item, log-likelihood of its three answers
    train_s_per_step: float | None  # one LoRA optimizer step at the sweep's training batch
    load_s: float  # loading the base model (once per variant and stage that needs it)
    batch: int
    device: str
    threads: int
    measured_at: float = field(default_factory=time.time)


def calibration_key(fingerprint: str, device: str, threads: int, cfg) -> str:
    """What the cached rates depend on: the model, the device, torch's threads and the settings
    that change the cost of a unit (generation batch, training batch and sequence length, and an
    ``eval_dtype`` or ``kernels`` other than auto)."""
    import torch

    t = cfg.training
    dtype = "" if cfg.eval_dtype == "auto" else f"|eval_dtype={cfg.eval_dtype}"
    dtype += "" if cfg.kernels == "auto" else f"|kernels={cfg.kernels}"
    return (f"v{CALIBRATION_VERSION}|{fingerprint}|{device}|threads={threads}|torch={torch.__version__}|"
            f"gen_batch={cfg.safety.batch_size}|train={t.batch_size}x{t.max_seq_len}|bbq_batch={cfg.fairness.batch_size}"
            f"{dtype}")


def _cache_path() -> Path:
    from ..models.resolve import cache_dir

    return cache_dir() / CALIBRATION_FILE


def cached_rates(key: str) -> Rates | None:
    """The cached calibration under ``key``; None when there is none (or the file is unreadable,
    in which case it is measured again)."""
    from ..textio import read_json_entry

    try:
        return Rates(**read_json_entry(_cache_path(), key))
    except TypeError:  # no entry, or one of another shape
        return None


def _store(key: str, rates: Rates) -> None:
    from ..textio import write_json_entry

    write_json_entry(_cache_path(), key, asdict(rates))


def calibrate(cfg, base_model: str, *, use_cache: bool = True) -> tuple[Rates, bool]:
    """Rates of ``base_model`` on the sweep's device at its settings; ``(rates, from_cache)``.
    Loads the model (the only part of ``plan`` that does) unless a cached calibration fits."""
    import torch

    from ..models import load_base
    from ..models.device import default_dtype, select_device
    from ..models.kernels import configure
    from ..models.resolve import resolve_model

    configure(cfg.kernels)
    resolved = resolve_model(base_model)
    device = select_device(cfg.device)
    threads = torch.get_num_threads()
    key = calibration_key(resolved.fingerprint, str(device), threads, cfg)
    if use_cache and (hit := cached_rates(key)) is not None:
        return hit, True
    # Loading bars and library warnings are not this command's output.
    with contextlib.redirect_stderr(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        loaded = load_base(base_model, device=cfg.device, dtype=cfg.eval_dtype, trust_remote_code=cfg.trust_remote_code)
        load_s = time.perf_counter() - t0
        gen, batch = _time_generation(cfg, loaded)
        score = _time_bbq(cfg, loaded)
        loaded.model.to(default_dtype(device))  # training keeps its own dtype whatever eval_dtype says
        train = _time_training(cfg, loaded)
    rates = Rates(gen, score, train, load_s, batch, str(device), threads)
    _store(key, rates)
    return rates, False


def _time_generation(cfg, loaded) -> tuple[float, int]:
    from ..benchmarks.safety import load_safety_prompts
    from ..benchmarks.safety.prompts import over_refusal_prompts
    from ..models.batching import generation_batch_size
    from ..models.generate import chat_input_ids, generate

    prompts = [p.prompt for p in load_safety_prompts(cfg.safety, seed=0)] if cfg.safety.enabled else []
    prompts = prompts + [p.prompt for p in over_refusal_prompts()]
    batch = cfg.safety.batch_size
    if batch == "auto":  # the batch the sweep will run, sized for these prompts on this device
        longest = max(len(chat_input_ids(loaded.tokenizer, p, cfg.safety.system_prompt)) for p in prompts)
        batch = generation_batch_size(loaded.model, batch, prompt_tokens=longest,
                                      max_new_tokens=cfg.safety.max_new_tokens, rows=GEN_PROMPTS)
    prompts = prompts[:min(GEN_PROMPTS, batch)]
    generate(loaded.model, loaded.tokenizer, prompts[:2], max_new_tokens=2, batch_size=2)  # warm-up
    t0 = time.perf_counter()
    out = generate(loaded.model, loaded.tokenizer, prompts, system_prompt=cfg.safety.system_prompt,
                   max_new_tokens=GEN_TOKENS, batch_size=len(prompts))
    seconds = time.perf_counter() - t0
    # per prompt per new token; rows that stopped early made fewer tokens, so count the rows'
    # longest answer as the steps this batch took
    steps = max(1, max(g.n_new_tokens for g in out))
    return seconds / len(prompts) / steps, len(prompts)


def _time_bbq(cfg, loaded) -> float:
    from ..benchmarks.fairness import load_bbq, score_bbq
    from ..models.backends.transformers import TransformersModel

    fc = cfg.fairness
    items = load_bbq("builtin", seed=0).items[:BBQ_ITEMS]
    t0 = time.perf_counter()
    score_bbq(TransformersModel(loaded.model, loaded.tokenizer), items, mode=fc.mode, prompt_format=fc.prompt_format,
              batch_size=fc.batch_size, length_normalise=fc.length_normalise)
    return (time.perf_counter() - t0) / len(items)


def _time_training(cfg, loaded) -> float | None:
    """Seconds of the second LoRA optimizer step on the sweep's first training rows (the first
    step allocates optimizer state); None when the training data cannot be read here."""
    import copy

    import torch
    from peft import get_peft_model

    from ..methods import build_peft_config
    from ..training.data import load_training_data
    from ..training.sft import to_trl_rows

    t = cfg.training
    try:
        rows = load_training_data(t, "sft", seed=0).rows[: t.batch_size]
    except (ValueError, FileNotFoundError, OSError):
        return None
    tok = loaded.tokenizer
    # as the SFT trainer sees them (training.sft.to_trl_rows), cut at max_seq_len
    conversational = bool(getattr(tok, "chat_template", None))
    texts = [tok.apply_chat_template(r["prompt"] + r["completion"], tokenize=False) if conversational
             else r["prompt"] + r["completion"] for r in to_trl_rows(rows, conversational)]
    enc = tok(texts, return_tensors="pt", padding=True, truncation=True, max_length=t.max_seq_len).to(loaded.device)
    model = get_peft_model(copy.deepcopy(loaded.model), build_peft_config("lora", loaded.model, {}, tokenizer=tok))
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    seconds = 0.0
    for step in range(2):
        t0 = time.perf_counter()
        for _ in range(t.grad_accum):
            loss = model(**enc, labels=enc["input_ids"]).loss
            loss.backward()
        opt.step()
        opt.zero_grad()
        seconds = time.perf_counter() - t0
    del model, opt
    return seconds


def estimate_wall(cfg, plan, cost, rates: Rates, groups: list[list] | None = None) -> dict[str, float]:
    """Seconds per stage (``total`` included) of the variants in ``plan`` (e.g. those of one base
    model) from ``rates`` and the counts in ``cost``, one variant after another. ``groups``: the
    run's jobs (:func:`~peft_audit.sweep.groups.take_group`); a group loads its base once for
    evaluation (each trained member still loads one to train), and without them every variant
    loads its own. Mixed generation batches are not counted: the estimate stays an upper bound.
    Unknown counts (a Hub dataset not downloaded) count as zero; the caller says so. The stages
    are named as a run's summary line names them."""
    steps = [cost.train_steps[pv.id] for pv in plan if pv.id in cost.train_steps]
    out = {
        "train": sum(s or 0 for s in steps) * (rates.train_s_per_step or 0.0),
        "generate": len(plan) * cost.generated_tokens() * rates.generate_s_per_prompt_token,
        "score": len(plan) * cost.scored_items() * rates.score_s_per_item,
        "load": (_evaluation_loads(plan, groups) + len(steps)) * rates.load_s,  # to evaluate, and to train
    }
    out["total"] = sum(out.values())
    return out


def _evaluation_loads(plan, groups: list[list] | None) -> int:
    """Base loads to evaluate ``plan``'s variants: one per job of ``groups`` holding any of them
    (one per variant without ``groups``)."""
    if groups is None:
        return len(plan)
    ids = {pv.id for pv in plan}
    return sum(1 for group in groups if any(pv.id in ids for pv in group))


def render_estimate(cfg, plan, cost, console, *, jobs: int = 1, use_cache: bool = True,
                    groups: list[list] | None = None) -> None:
    """Calibrate (or reuse the cached rates of) each base model and print the sweep's estimated
    wall time on this machine, per stage, with what it assumes (``groups``: the run's jobs)."""
    from ..models.device import select_device

    total: dict[str, float] = {}
    for base in dict.fromkeys(pv.spec.base_model for pv in plan):
        rates, cached = calibrate(cfg, base, use_cache=use_cache)
        console.print(f"calibration of {base} on {rates.device} ({rates.threads} threads)"
                      f"{' (cached)' if cached else ''}: generation {1 / rates.generate_s_per_prompt_token:.0f} "
                      f"new tokens/s at batch {rates.batch}; BBQ {1 / rates.score_s_per_item:.1f} items/s; "
                      + (f"training {rates.train_s_per_step:.2f} s/step; " if rates.train_s_per_step else "")
                      + f"load {rates.load_s:.1f} s", soft_wrap=True, highlight=False)
        for k, v in estimate_wall(cfg, [pv for pv in plan if pv.spec.base_model == base], cost, rates,
                                  groups).items():
            total[k] = total.get(k, 0.0) + v
    gpus = 0
    if select_device(cfg.device).type == "cuda":
        import torch

        gpus = torch.cuda.device_count()
    parallel = min(jobs, gpus) if gpus > 1 else 1
    stages = " · ".join(f"{k} {describe_seconds(v, estimate=True)}" for k, v in total.items()
                        if k != "total" and v >= 0.5)
    console.print(f"estimated wall time: {describe_seconds(total['total'] / parallel, estimate=True)} ({stages}"
                  + (f"; over {parallel} GPUs" if parallel > 1 else "") + f"; benchmarks: {', '.join(cost.workloads) or 'none'}"
                  "); generation counted at max_new_tokens for every answer and without the batches a share_base "
                  "group shares (an upper bound); on CPU, --jobs splits the cores and saves little",
                  soft_wrap=True, highlight=False)
    unknown = (["training steps"] if cost.total_train_steps is None else []) + cost.unknown()
    if unknown:
        console.print(f"not counted (a Hub dataset that is not downloaded): {', '.join(unknown)}", highlight=False)
    if cost.uncounted:
        console.print(f"not counted (the benchmark declares no workload): {', '.join(cost.uncounted)}", highlight=False)
    if judges := cost.model_judges():
        console.print(f"not timed: judges that run a model of their own: {', '.join(judges)}", highlight=False)


def render_study(gpu_name: str, console) -> None:
    """Print :func:`study_estimate` for ``gpu_name`` (a key of :data:`GPUS`) with its assumptions."""
    if gpu_name not in GPUS:
        raise ValueError(f"unknown GPU {gpu_name!r}; valid: {', '.join(GPUS)}")
    est = study_estimate(GPUS[gpu_name])
    h = est["hours"]
    console.print(f"The original study (Taraghi et al. 2025) on one {est['gpu']}: ~{h['total']:.0f} GPU-hours "
                  f"(generation {h['generate']:.0f} h, BBQ {h['BBQ']:.0f} h, training {h['train']:.0f} h). Assumptions:",
                  soft_wrap=True, highlight=False)
    for a in est["assumptions"]:
        console.print(f"  - {a}", soft_wrap=True, highlight=False)


# ---------------------------------------------------------------------------------------------
# The original study on one GPU
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Gpu:
    name: str
    bf16_flops: float  # dense, FLOP/s (vendor datasheet)
    bandwidth: float  # bytes/s (vendor datasheet)
    source: str


#: Published peak rates (dense bf16 tensor-core FLOP/s, memory bandwidth).
GPUS = {
    "h100": Gpu("NVIDIA H100 SXM 80GB", 989e12, 3.35e12, "NVIDIA H100 datasheet: 989 TFLOP/s dense BF16, 3.35 TB/s HBM3"),
    "a100": Gpu("NVIDIA A100 SXM 80GB", 312e12, 2.039e12, "NVIDIA A100 datasheet: 312 TFLOP/s dense BF16, 2.039 TB/s HBM2e"),
    "l40s": Gpu("NVIDIA L40S 48GB", 362e12, 0.864e12, "NVIDIA L40S datasheet: 362 TFLOP/s dense BF16, 864 GB/s GDDR6"),
}


@dataclass(frozen=True)
class StudyWorkload:
    """The original study's work (Taraghi et al. 2025) and the assumptions that size it."""

    variants: int = 235
    base_evaluations: int = 4  # one per base model family
    params: float = 8.0e9  # Llama-3-8B, Qwen2.5-7B, Mistral-7B, Gemma-7B: ~7-8.5B; the largest sets the cost
    hexphi_prompts: int = 330
    prompt_tokens: int = 60  # a HEx-PHI instruction in a chat template
    new_tokens: int = 256  # answer length budget (greedy, up to this)
    bbq_items: int = 58_492
    bbq_tokens: int = 3 * 90  # three answers, each scored with its ~90-token context (no prefix sharing)
    train_examples: int = 5_000  # SFT/DPO examples per variant (assumed; DPO counted as SFT x 2 below)
    train_tokens_per_example: int = 300
    epochs: float = 2.0  # the study swept 1-3 epochs
    dpo_share: float = 0.5  # half the variants trained with DPO (chosen + rejected, policy + reference)
    decode_batch: int = 64
    mfu: float = 0.40  # model FLOP utilisation of compute-bound work (prefill, scoring, training)
    bandwidth_use: float = 0.60  # share of peak bandwidth a decoding step reaches
    bytes_per_param: int = 2  # bf16 weights


def study_estimate(gpu: Gpu, w: StudyWorkload = StudyWorkload()) -> dict[str, Any]:
    """Hours per stage of the original study on one ``gpu`` under workload ``w`` (roofline; see
    the module docstring); ``assumptions`` lists what the numbers rest on."""
    flops = gpu.bf16_flops * w.mfu
    evals = w.variants + w.base_evaluations
    # decoding: one step reads every weight once for the whole batch, or is compute-bound at 2N per row
    step_s = max(w.params * w.bytes_per_param / (gpu.bandwidth * w.bandwidth_use),
                 2 * w.params * w.decode_batch / flops)
    decode_s = evals * (w.hexphi_prompts / w.decode_batch) * w.new_tokens * step_s
    prefill_s = evals * w.hexphi_prompts * w.prompt_tokens * 2 * w.params / flops
    bbq_s = evals * w.bbq_items * w.bbq_tokens * 2 * w.params / flops
    tokens = w.variants * w.train_examples * w.train_tokens_per_example * w.epochs
    # DPO: chosen and rejected through the policy (6N) and the frozen reference (2N) each
    train_s = tokens * ((1 - w.dpo_share) * 6 * w.params + w.dpo_share * 2 * (6 + 2) * w.params) / flops
    hours = {"generate": (decode_s + prefill_s) / 3600, "BBQ": bbq_s / 3600, "train": train_s / 3600}
    hours["total"] = sum(hours.values())
    assumptions = [
        f"GPU: {gpu.name}; {gpu.source}",
        f"{w.variants} variants + {w.base_evaluations} base evaluations of a {w.params / 1e9:.0f}B model in bf16",
        f"safety: {w.hexphi_prompts} HEx-PHI prompts, ~{w.prompt_tokens} prompt tokens, up to {w.new_tokens} new "
        f"tokens each, decoding batch {w.decode_batch}",
        f"BBQ: {w.bbq_items:,} items x ~{w.bbq_tokens} scored tokens (three answers with their context)",
        f"training: {w.train_examples:,} examples x {w.train_tokens_per_example} tokens x {w.epochs:g} epochs per "
        f"variant, {w.dpo_share:.0%} DPO (policy and reference on chosen and rejected)",
        f"utilisation: {w.mfu:.0%} of peak FLOP/s for prefill, scoring and training; {w.bandwidth_use:.0%} of "
        "peak bandwidth per decoding step (typical of a well-batched serving engine; Hugging Face eager "
        "generation reaches less)",
        "roofline model: FLOP per token 2N forward, 6N forward+backward (Kaplan et al. 2020)",
    ]
    return {"gpu": gpu.name, "hours": hours, "assumptions": assumptions}
