"""Does a saved adapter fit the base model we audit? :func:`check_compatibility`.

Three checks, all before any weight is loaded:

0. **The config against its own tensors** (:mod:`peft_audit.adapters.config_check`): every key
   that sizes what PEFT allocates (``r``, ``rank_pattern``, ``num_virtual_tokens``, ``token_dim``,
   ...) is a sane number and agrees with the tensors in the file; ``--force`` cannot override it.
1. **Base model name.** The adapter's ``base_model_name_or_path`` (or the card's ``base_model``) is
   compared with the audit's base model after normalisation: case-folded, ``@revision`` and
   trailing ``/`` dropped, then the *last path component* compared, so ``org/Name``, a local
   directory ``/models/Name`` and ``org2/name`` (a mirror) all match ``Name`` (a differing org is a
   warning). The bundled alias ``smollm2-135m-instruct`` stands for
   ``HuggingFaceTB/SmolLM2-135M-Instruct``. A different name fails unless ``force``; an adapter
   that names no base model gets a warning and the shape check decides. Names are not compared
   at all when the adapter provably was trained on this base (:func:`same_base_model`: the
   fingerprint in its peft-audit provenance, or the very checkpoint directory).
2. **Tensor shapes.** The header of ``adapter_model.safetensors`` (``safe_open``, no tensor data
   read; a truncated file fails here) is compared with the base model's modules, built from its
   ``config.json`` on the ``meta`` device (no weights, no memory):
   LoRA ``lora_A`` = [r, in_features], ``lora_B`` = [out_features, r] (Hu et al., 2021,
   arXiv:2106.09685, eq. 3: W0 + BA with B in R^{d x r}, A in R^{r x k}); IA3 ``ia3_l`` = [out, 1],
   or [1, in] for feed-forward modules (Liu et al., 2022, arXiv:2205.05638, sec. 3.3);
   ``prompt_embeddings`` = [virtual tokens, hidden size] for prompt tuning (Lester et al., 2021)
   and P-tuning (Liu et al., 2021), and [virtual tokens, layers x 2 x key/value size] for prefix
   tuning (Li & Liang, 2021) -- the sizes PEFT itself derives
   (``peft.utils.other._prepare_prompt_learning_config``).

A ``.bin``-only adapter is skipped: its pickle is never opened. ``trust_remote_code`` is off
unless the caller passes it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from ..methods import METHODS, is_prompt_learning
from .config_check import check_adapter_config, prompt_dims
from .errors import AdapterError, CorruptAdapter, UnsafeAdapter
from .metadata import PEFT_TYPE_TO_METHOD, PICKLE_WEIGHTS, SAFETENSORS, extract_metadata, read_adapter_config

#: Bundled aliases (peft_audit.models.resolve.ALIASES) -> the Hub id adapters name.
ALIAS_HUB_IDS = {"smollm2-135m-instruct": "HuggingFaceTB/SmolLM2-135M-Instruct"}

_PREFIX = "base_model.model."
_MAX_LISTED = 4


@dataclass
class CompatResult:
    """Outcome of :func:`check_compatibility`.

    ``ok`` -- the adapter may be evaluated; ``status`` -- ``ok`` | ``failed`` | ``skipped``;
    ``reasons`` -- each mismatch, "expected ... found ..."; ``warnings`` -- things that do not block
    (or that ``force`` overrode).
    """

    ok: bool
    status: str
    reasons: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def message(self) -> str:
        return "; ".join(self.reasons) if self.reasons else "compatible"


# ---------------------------------------------------------------------------------------------
# Names
# ---------------------------------------------------------------------------------------------
def _norm(name: str) -> tuple[str, str]:
    """(org or parent dir, last component), case-folded, without @revision and trailing '/'."""
    n = ALIAS_HUB_IDS.get(name, name).strip().rstrip("/\\")
    if "@" in n and "/" in n.split("@", 1)[0]:
        n = n.rsplit("@", 1)[0]
    parts = re.split(r"[/\\]", n.casefold())
    return (parts[-2] if len(parts) > 1 else "", parts[-1])


def compare_base_names(adapter_base: str | None, our_names: list[str]) -> tuple[bool, str | None]:
    """(names fit, message). ``our_names``: every name the audit base is known by."""
    if not adapter_base:
        return True, "the adapter does not name its base model; only tensor shapes were checked"
    a_org, a_name = _norm(adapter_base)
    for ours in our_names:
        o_org, o_name = _norm(ours)
        if a_name == o_name:
            if a_org and o_org and a_org != o_org and "/" in ours and not Path(ours).exists():
                return True, f"adapter base {adapter_base!r} and audit base {ours!r} differ only in owner"
            return True, None
    return False, (f"base model name: the adapter was trained on {adapter_base!r}, "
                   f"the audit base is {our_names[0]!r}")


# ---------------------------------------------------------------------------------------------
# Tensor shapes
# ---------------------------------------------------------------------------------------------
def read_tensor_shapes(adapter_dir: str | Path) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape from the adapter's weights file, reading no tensor data.

    Raises :class:`CorruptAdapter` for an unreadable/truncated file or a header whose sizes the
    file does not hold (safetensors checks every offset against the file size, and the header
    against its 100 MB limit), :class:`UnsafeAdapter` for pickled ``adapter_model.bin`` weights
    (never unpickled) and :class:`AdapterError` when there is no weights file.
    """
    d = Path(adapter_dir)
    st = d / SAFETENSORS
    if st.is_file():
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(st), framework="pt") as f:
                return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
        except (SafetensorError, OSError, RuntimeError) as e:  # RuntimeError: a file too large to map
            raise CorruptAdapter(
                f"{st}: cannot read safetensors ({e}); the file is truncated, corrupt or claims sizes it does not "
                "hold -- download it again"
            ) from None
    if (d / PICKLE_WEIGHTS).is_file():
        raise UnsafeAdapter(
            f"{d / PICKLE_WEIGHTS}: pickled weights, which peft-audit never loads (unpickling can run code and "
            f"allocate whatever the file claims); ask for a {SAFETENSORS} version of the adapter"
        )
    raise AdapterError(f"{d}: no {SAFETENSORS}; the adapter has no weights")


@lru_cache(maxsize=4)
def _meta_model(config_dir: str, trust_remote_code: bool):
    """The base model's module tree on the meta device (no weights allocated)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    cfg = AutoConfig.from_pretrained(config_dir, trust_remote_code=trust_remote_code)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(cfg, trust_remote_code=trust_remote_code)
    return cfg, model


def _in_out(module: Any) -> tuple[int, int] | None:
    """(in_features, out_features) of a Linear / HF Conv1D / Embedding (num_embeddings, dim)."""
    w = getattr(module, "weight", None)
    if w is None or w.dim() != 2:
        return None
    if type(module).__name__ == "Conv1D":  # GPT-2 style: weight is [in, out]
        return int(w.shape[0]), int(w.shape[1])
    if type(module).__name__ == "Embedding" or hasattr(module, "num_embeddings"):
        return int(w.shape[0]), int(w.shape[1])
    return int(w.shape[1]), int(w.shape[0])


_LORA = re.compile(r"^(?P<mod>.+)\.(?P<kind>lora_A|lora_B|lora_embedding_A|lora_embedding_B|lora_magnitude_vector)"
                   r"(?:\.[^.]+)?(?:\.weight)?$")
_IA3 = re.compile(r"^(?P<mod>.+)\.ia3_l(?:\.[^.]+)?$")


def _is_feedforward(module_name: str, ff: Any) -> bool:
    if isinstance(ff, str):
        try:
            return re.fullmatch(ff, module_name) is not None
        except (re.error, RecursionError):  # config_check reports it
            return False
    names = ff if isinstance(ff, list) else []  # anything else is config_check's to report
    return any(isinstance(f, str) and (module_name == f or module_name.endswith("." + f)) for f in names)


def compare_shapes(method: str, acfg: dict[str, Any], shapes: dict[str, tuple[int, ...]],
                   base_cfg: Any, base_model: Any) -> tuple[list[str], list[str]]:
    """(mismatches, warnings) of adapter tensors against the base model (see module docstring)."""
    problems: list[str] = []
    warnings: list[str] = []
    if method in METHODS and is_prompt_learning(method):
        # the rows are num_virtual_tokens' (config_check compares those); the width is the base model's
        dims = prompt_dims(str(acfg["peft_type"]).upper(), base_cfg)
        width = dims["token_dim"] * (dims["num_layers"] * 2 if method == "prefix-tuning" else 1)
        found = shapes.get("prompt_embeddings")
        expected = (found[0] if found else 0, width)
        if found is None:
            problems.append("tensor prompt_embeddings: expected in the weights file, not found")
        elif tuple(found) != expected:
            problems.append(f"tensor prompt_embeddings: expected shape {list(expected)}, found {list(found)}")
        return problems, warnings

    modules = dict(base_model.named_modules())
    params = {k: tuple(v.shape) for k, v in base_model.named_parameters()}
    lora_r: dict[str, dict[str, int]] = {}
    for key, shape in shapes.items():
        name = key[len(_PREFIX):] if key.startswith(_PREFIX) else key
        m = _LORA.match(name) if method == "lora" else _IA3.match(name) if method == "ia3" else None
        if m is None:
            plain = re.sub(r"\.modules_to_save(\.[^.]+)?", "", name)
            if plain in params:
                if params[plain] != tuple(shape):
                    problems.append(f"tensor {key}: expected shape {list(params[plain])} (base {plain}), found {list(shape)}")
            else:
                warnings.append(f"tensor {key}: not a {method} weight of a known base module; not checked")
            continue
        mod_name = m.group("mod")
        module = modules.get(mod_name)
        io = _in_out(module) if module is not None else None
        if module is None or io is None:
            problems.append(f"tensor {key}: targets module {mod_name!r}, which the base model does not have")
            continue
        fan_in, fan_out = io
        if method == "ia3":
            ff = _is_feedforward(mod_name, acfg.get("feedforward_modules"))
            exp = (1, fan_in) if ff else (fan_out, 1)
        else:
            kind = m.group("kind")
            r = (shape[0] if kind in ("lora_A", "lora_embedding_A") else shape[-1]) if shape else 0
            lora_r.setdefault(mod_name, {})[kind] = r
            exp = {"lora_A": (r, fan_in), "lora_B": (fan_out, r), "lora_embedding_A": (r, fan_in),
                   "lora_embedding_B": (fan_out, r), "lora_magnitude_vector": (fan_out,)}[kind]
        if tuple(shape) != exp:
            problems.append(f"tensor {key}: expected shape {list(exp)} for base module {mod_name}, found {list(shape)}")
    for mod_name, ranks in lora_r.items():
        if len({v for k, v in ranks.items() if k != "lora_magnitude_vector"}) > 1:
            problems.append(f"module {mod_name}: LoRA A and B ranks differ ({ranks})")
    if not shapes:
        problems.append("the weights file holds no tensors")
    if len(problems) > _MAX_LISTED:  # one line per tensor of a 7B model would bury the point
        problems = problems[:_MAX_LISTED] + [f"... and {len(problems) - _MAX_LISTED} more tensor mismatches"]
    return problems, warnings


# ---------------------------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------------------------
def _base_dir_and_names(base: str | Path) -> tuple[Path, list[str], str | None]:
    """(checkpoint directory, names it goes by, fingerprint) of the audited base model."""
    from ..models import resolve_model

    names = [str(base)]
    resolved = resolve_model(str(base))  # a directory: only its fingerprint (no download, no load)
    p, fingerprint = resolved.path, resolved.fingerprint
    cfg_file = p / "config.json"
    if cfg_file.is_file():
        import json

        try:
            n = json.loads(cfg_file.read_text()).get("_name_or_path")
        except ValueError:
            n = None
        if n:
            names.append(n)
    return p, names, fingerprint


def same_base_model(adapter_dir: Path, recorded: str | None, base_dir: Path, base_fingerprint: str | None) -> bool:
    """True when the adapter was trained on this very base model, however either is spelled: its
    peft-audit provenance records the base's fingerprint, or the base path it records is the
    base's resolved checkpoint directory (an alias, a .gguf file and the cached conversion of that
    file are one model)."""
    import json

    from ..training.provenance import PROVENANCE_FILE

    prov = adapter_dir / PROVENANCE_FILE
    if base_fingerprint and prov.is_file():
        try:
            recorded_fp = (json.loads(prov.read_text(encoding="utf-8")).get("base_model") or {}).get("fingerprint")
        except (ValueError, AttributeError):
            recorded_fp = None
        if recorded_fp == base_fingerprint:
            return True
    if recorded:
        try:
            return Path(recorded).expanduser().resolve() == Path(base_dir).resolve()
        except OSError:
            return False
    return False


def check_compatibility(adapter_dir: str | Path, base: str | Path, *, force: bool = False,
                        trust_remote_code: bool = False) -> CompatResult:
    """Check that the adapter in ``adapter_dir`` fits ``base`` (a checkpoint dir or a model name
    that :func:`peft_audit.models.resolve_model` accepts). See the module docstring.

    Never raises for a bad adapter: unknown ``peft_type`` or pickled weights -> ``status="skipped"``;
    corrupt file, missing config, a config that does not describe its own tensors
    (:func:`~peft_audit.adapters.config_check.check_adapter_config`), name or shape mismatch ->
    ``status="failed"`` with the reason. With ``force`` a mismatch with the base model becomes a
    warning; a corrupt, unsupported or self-contradicting adapter still fails (its config would
    make PEFT allocate what its tensors do not hold). Nothing is allocated beyond the base
    model's module tree on the ``meta`` device.
    """
    d = Path(adapter_dir)
    try:
        meta = extract_metadata(d)
        acfg = read_adapter_config(d)
    except AdapterError as e:
        return CompatResult(False, e.status, [str(e)])
    if meta.method is None:
        return CompatResult(False, "skipped", [
            f"adapter type {meta.value('peft_type')!r} cannot be evaluated; supported: "
            + ", ".join(f"{t} ({m})" for t, m in PEFT_TYPE_TO_METHOD.items())
        ])
    try:
        shapes = read_tensor_shapes(d)
    except AdapterError as e:
        return CompatResult(False, e.status, [str(e)])

    base_dir, names, fingerprint = _base_dir_and_names(base)
    base_cfg, base_model = _meta_model(str(base_dir), trust_remote_code)
    invalid, problems, warnings = check_adapter_config(meta.method, acfg, shapes, base_cfg, base_model)
    p, w = compare_shapes(meta.method, acfg, shapes, base_cfg, base_model)
    problems += p
    warnings += w
    if invalid:  # the config contradicts its own tensors: PEFT would allocate what the file does not hold
        return CompatResult(False, "failed", invalid + problems, warnings)
    if not same_base_model(d, meta.value("base_model"), base_dir, fingerprint):
        fits, msg = compare_base_names(meta.value("base_model"), names)
        (problems if not fits else warnings)[:0] = [msg] if msg else []
    if problems and force:
        return CompatResult(True, "ok", [], warnings + [f"--force: ignored {x}" for x in problems])
    if problems:
        problems.append("if you are sure it fits, --force (force_adapters: true in a sweep file) evaluates it anyway")
    return CompatResult(not problems, "ok" if not problems else "failed", problems, warnings)
