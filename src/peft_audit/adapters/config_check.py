"""Does ``adapter_config.json`` describe its own tensors and the base model? :func:`check_adapter_config`.

PEFT builds every adapter layer at the size ``adapter_config.json`` states *before* it reads a
weight: ``r: 100000000`` over rank-8 LoRA tensors asks for ~230 GB, ``num_virtual_tokens: 10**9``
for a prompt table as large. Adapters come from the Hub, so every key that sizes an allocation is
checked here, from the config, the safetensors header (shapes only) and the base model's module
tree on the ``meta`` device (its ``config.json``; no weights):

* **type**: sizing keys (``r``, ``num_virtual_tokens``, ``token_dim``, ``num_layers``,
  ``num_attention_heads``, ``num_transformer_submodules``, ``encoder_hidden_size``,
  ``encoder_num_layers``, ``rank_pattern`` values) are whole numbers >= 1 -- not a bool, float,
  string or null where PEFT needs a number; ``lora_alpha`` and ``alpha_pattern`` values are
  finite numbers > 0; module lists are text; then PEFT's own config class must accept the file;
* **against the tensors** (*invalid*; ``--force`` cannot override it): each LoRA module's rank
  in the file is the ``r`` (or ``rank_pattern`` entry) the config gives it; the modules the config
  selects (PEFT's own matching, :func:`peft.tuners.tuners_utils.check_target_module_exists`)
  are exactly those the file holds LoRA/IA3 tensors for (PEFT builds a selected module at the
  configured rank whether or not the file has its tensors); the prompt table has
  ``num_virtual_tokens x num_transformer_submodules`` rows of ``token_dim`` (prefix tuning:
  ``num_layers x 2 x token_dim``); a prompt encoder (``encoder_hidden_size``,
  ``encoder_num_layers``) is not larger than the base model; ``layer_replication`` builds no
  more layers than the file holds tensors for; ``trainable_token_indices`` are distinct ids of
  the base vocabulary; ``megatron_config`` (PEFT would import the module it names) is refused;
  and the file holds fewer values than the base model has parameters (PEFT reads it whole, a
  sparse file can claim terabytes);
* **against the base model** (*misfit*; ``--force`` turns it into a warning): ``target_modules``
  and ``modules_to_save`` name modules it has; ``token_dim``, ``num_layers``,
  ``num_attention_heads`` are the values PEFT derives from its config
  (``peft.utils.other._prepare_prompt_learning_config``); a causal LM has one transformer
  submodule.

Each problem is one line naming the key and both values.
"""

from __future__ import annotations

import math
import re
import warnings
from typing import Any

from .metadata import CONFIG, PEFT_TYPE_TO_METHOD

#: Keys that size an allocation, by method; each must be a whole number >= 1 when present.
SIZING_KEYS = {
    "lora": ("r",),
    "ia3": (),
    "prompt-tuning": ("num_virtual_tokens", "token_dim", "num_transformer_submodules", "num_layers",
                      "num_attention_heads"),
    "p-tuning": ("num_virtual_tokens", "token_dim", "num_transformer_submodules", "num_layers",
                 "num_attention_heads", "encoder_hidden_size", "encoder_num_layers"),
    "prefix-tuning": ("num_virtual_tokens", "token_dim", "num_transformer_submodules", "num_layers",
                      "num_attention_heads", "encoder_hidden_size"),
}
#: Keys naming base modules: null, a text (a regular expression for target_modules) or a list of texts.
MODULE_KEYS = ("target_modules", "modules_to_save", "feedforward_modules", "exclude_modules")

#: Switches that PEFT reads as true/false; a number or text there fails inside PEFT's loader.
FLAGS = ("use_dora", "use_rslora", "fan_in_fan_out", "lora_bias", "prefix_projection", "inference_mode")
LORA_BIAS = ("none", "all", "lora_only")

_PREFIX = "base_model.model."
_TENSOR = re.compile(r"^(?P<mod>.+)\.(?P<kind>lora_A|lora_B|lora_embedding_A|lora_embedding_B|ia3_l)(?:\.[^.]+)?$")


def _show(value: Any) -> str:
    """``repr`` cut to 40 characters: a hostile config can hold a megabyte in one value."""
    s = repr(value)
    return s if len(s) <= 40 else s[:37] + "..."


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _positive_number(value: Any) -> bool:
    """A number > 0 that stays finite as a float (PEFT computes lora_alpha / r in floats)."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(float(value)) and value > 0
    except OverflowError:  # an int of hundreds of digits
        return False


def _count(n: int) -> str:
    """``n`` in 3 significant digits, also beyond a float's range."""
    return f"{n:.3g}" if n < 1e300 else f"~1e{len(str(n)) - 1}"


def check_types(method: str, acfg: dict[str, Any]) -> list[str]:
    """Problems with the *types* of ``acfg``'s sizing and module keys (see module docstring)."""
    bad: list[str] = []
    for key in SIZING_KEYS.get(method, ()):
        v = acfg.get(key)
        if v is None and key == "num_virtual_tokens":
            bad.append(f"{CONFIG} num_virtual_tokens: missing; expected a whole number >= 1")
        elif v is not None and not (_whole(v) and v >= 1):
            bad.append(f"{CONFIG} {key}: expected a whole number >= 1, found {_show(v)}")
    if method == "lora":
        if "lora_alpha" in acfg and not _positive_number(acfg["lora_alpha"]):
            bad.append(f"{CONFIG} lora_alpha: expected a finite number > 0, found {_show(acfg['lora_alpha'])}")
        for key, ok, what in (("rank_pattern", lambda v: _whole(v) and v >= 1, "a whole number >= 1"),
                              ("alpha_pattern", _positive_number, "a finite number > 0")):
            if key not in acfg:
                continue
            pattern = acfg[key]
            if not isinstance(pattern, dict):
                bad.append(f"{CONFIG} {key}: expected an object {{module pattern: value}}, found {_show(pattern)}")
                continue
            for name, v in pattern.items():
                if not ok(v):
                    bad.append(f"{CONFIG} {key}[{_show(name)}]: expected {what}, found {_show(v)}")
                elif _regex_error(name):
                    bad.append(f"{CONFIG} {key}: key {_show(name)} is not a regular expression ({_regex_error(name)})")
        bias = acfg.get("bias", "none")
        if bias not in LORA_BIAS:
            bad.append(f"{CONFIG} bias: expected one of {', '.join(LORA_BIAS)}, found {_show(bias)}")
        init = acfg.get("init_lora_weights", True)
        if not isinstance(init, (bool, str)):
            bad.append(f"{CONFIG} init_lora_weights: expected true, false or an initialisation's name, found {_show(init)}")
    for key in FLAGS:
        if acfg.get(key) is not None and not isinstance(acfg[key], bool):
            bad.append(f"{CONFIG} {key}: expected true or false, found {_show(acfg[key])}")
    for key in MODULE_KEYS:
        v = acfg.get(key)
        if v is None:
            continue
        if isinstance(v, str):
            if _regex_error(v):
                bad.append(f"{CONFIG} {key}: {_show(v)} is not a regular expression ({_regex_error(v)})")
        elif not (isinstance(v, list) and all(isinstance(x, str) for x in v)):
            bad.append(f"{CONFIG} {key}: expected a list of module names, found {_show(v)}")
    base = acfg.get("base_model_name_or_path")
    if base is not None and not isinstance(base, str):
        bad.append(f"{CONFIG} base_model_name_or_path: expected a model name, found {_show(base)}")
    layers = acfg.get("layers_to_transform")
    if layers is not None and not ((_whole(layers) and layers >= 0)
                                   or (isinstance(layers, list) and all(_whole(i) and i >= 0 for i in layers))):
        bad.append(f"{CONFIG} layers_to_transform: expected a layer index or a list of them, found {_show(layers)}")
    tokens = acfg.get("trainable_token_indices")
    if tokens is not None:
        lists = list(tokens.values()) if isinstance(tokens, dict) else [tokens]
        if not all(isinstance(ix, list) and all(_whole(i) and i >= 0 for i in ix) for ix in lists):
            bad.append(f"{CONFIG} trainable_token_indices: expected a list of token ids (or an object of them), "
                       f"found {_show(tokens)}")
    return bad


def _regex_error(pattern: str) -> str | None:
    try:
        re.compile(pattern)
    except (re.error, RecursionError, OverflowError) as e:
        return str(e) or type(e).__name__
    return None


def peft_config(acfg: dict[str, Any]) -> Any:
    """PEFT's config object for ``acfg``, built the way ``PeftConfig.from_pretrained`` builds it
    (unknown keys dropped); raises ``ValueError`` with PEFT's reason when PEFT rejects it."""
    from peft.config import PeftConfig

    kwargs = {**acfg, "inference_mode": True}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return PeftConfig.from_peft_type(**kwargs)
    except Exception as e:  # noqa: BLE001 -- whatever PEFT raises on a hostile file becomes one line
        why = (str(e).splitlines() or [""])[0][:160]
        raise ValueError(f"{CONFIG}: PEFT rejects it ({type(e).__name__}: {why})") from None


def prompt_dims(peft_type: str, base_cfg: Any) -> dict[str, int]:
    """token_dim, num_layers, num_attention_heads as PEFT derives them from the base model's config
    for ``peft_type`` (for prefix tuning: the key/value width and the key/value heads)."""
    from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING
    from peft.utils.other import _prepare_prompt_learning_config

    fresh = PEFT_TYPE_TO_CONFIG_MAPPING[peft_type](task_type="CAUSAL_LM", num_virtual_tokens=1)
    fresh = _prepare_prompt_learning_config(fresh, base_cfg)
    return {"token_dim": fresh.token_dim, "num_layers": fresh.num_layers,
            "num_attention_heads": fresh.num_attention_heads}


def _encoder_parameters(method: str, cfg: Any, token_dim: int) -> tuple[int, str]:
    """(parameters, the keys that size it) of the prompt encoder PEFT builds for training:
    p-tuning's MLP or LSTM head, prefix tuning's projection; (0, "") where there is none."""
    if method not in ("p-tuning", "prefix-tuning"):
        return 0, ""
    h = int(cfg.encoder_hidden_size or token_dim)
    keys = f"encoder_hidden_size: {cfg.encoder_hidden_size}"
    if method == "p-tuning":
        if str(getattr(cfg.encoder_reparameterization_type, "value", cfg.encoder_reparameterization_type)) == "LSTM":
            layers = int(cfg.encoder_num_layers or 1)
            return (8 * layers * h * (token_dim + h) + 4 * h * h + 2 * h * token_dim,
                    f"{keys}, encoder_num_layers: {cfg.encoder_num_layers} (LSTM)")
        return 2 * token_dim * h + h * h, keys
    if cfg.prefix_projection:
        return token_dim * h + h * int(cfg.num_layers) * 2 * token_dim, keys
    return 0, ""


def _check_prompt(method: str, cfg: Any, shapes: dict[str, tuple[int, ...]], base_cfg: Any,
                  base_model: Any) -> tuple[list[str], list[str]]:
    invalid: list[str] = []
    misfit: list[str] = []
    base = prompt_dims(cfg.peft_type, base_cfg)
    token_dim = cfg.token_dim if cfg.token_dim is not None else base["token_dim"]
    num_layers = cfg.num_layers if cfg.num_layers is not None else base["num_layers"]
    submodules = cfg.num_transformer_submodules if cfg.num_transformer_submodules is not None else 1
    found = shapes.get("prompt_embeddings")
    if found is not None and len(found) == 2:
        rows, width = found
        if cfg.num_virtual_tokens * submodules != rows:
            what = (f"num_virtual_tokens {cfg.num_virtual_tokens} x num_transformer_submodules {submodules}"
                    if submodules != 1 else f"num_virtual_tokens: {cfg.num_virtual_tokens}")
            invalid.append(f"{CONFIG} {what}, but tensor prompt_embeddings has {rows} rows")
        want = token_dim * (num_layers * 2 if method == "prefix-tuning" else 1)
        if want != width:
            what = (f"num_layers {num_layers} x 2 x token_dim {token_dim} = {want}" if method == "prefix-tuning"
                    else f"token_dim: {token_dim}")
            invalid.append(f"{CONFIG} {what}, but tensor prompt_embeddings is {width} wide")
    elif found is not None:
        invalid.append(f"tensor prompt_embeddings: expected 2 dimensions, found shape {list(found)}")
    heads = cfg.num_attention_heads
    if method == "prefix-tuning" and heads is not None and token_dim % heads:
        invalid.append(f"{CONFIG} num_attention_heads: {heads} does not divide token_dim {token_dim}")
    for key, value in (("token_dim", cfg.token_dim), ("num_layers", cfg.num_layers), ("num_attention_heads", heads)):
        if value is not None and value != base[key]:
            misfit.append(f"{CONFIG} {key}: {value}, but the base model has {base[key]}")
    if submodules != 1:
        misfit.append(f"{CONFIG} num_transformer_submodules: {submodules}, but a causal LM has 1")
    encoder, keys = _encoder_parameters(method, cfg, token_dim)
    base_params = sum(p.numel() for p in base_model.parameters())
    if encoder > base_params:  # an encoder larger than the model it prompts is no prompt encoder
        invalid.append(f"{CONFIG} {keys} makes a prompt encoder of {_count(encoder)} parameters, but the base model "
                       f"has {_count(base_params)}")
    return invalid, misfit


def _targeted(method: str, cfg: Any, base_model: Any) -> set[str]:
    """Names of the base modules PEFT would wrap for ``cfg``; with no ``target_modules``, PEFT's
    defaults for the architecture (``ValueError`` when it has none, as PEFT would raise)."""
    from peft.tuners.tuners_utils import _maybe_include_all_linear_layers, check_target_module_exists
    from peft.utils import TRANSFORMERS_MODELS_TO_IA3_TARGET_MODULES_MAPPING, TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING

    if cfg.target_modules is None:
        defaults = (TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING if method == "lora"
                    else TRANSFORMERS_MODELS_TO_IA3_TARGET_MODULES_MAPPING)
        model_type = base_model.config.model_type
        if model_type not in defaults:
            raise ValueError(f"{CONFIG} target_modules: missing, and PEFT has no default for model type {model_type!r}")
        cfg.target_modules = set(defaults[model_type])
    cfg = _maybe_include_all_linear_layers(cfg, base_model)
    return {name for name, _ in base_model.named_modules() if name and check_target_module_exists(cfg, name)}


def _module_names_match(names: Any, module_names: list[str]) -> list[str]:
    """The entries of ``names`` (a list, or one regular expression) that match no module in ``module_names``."""
    if isinstance(names, str):
        return [] if any(re.fullmatch(names, m) for m in module_names) else [names]
    return [n for n in names if not any(m == n or m.endswith("." + n) for m in module_names)]


def _check_modules(method: str, cfg: Any, shapes: dict[str, tuple[int, ...]],
                   base_model: Any) -> tuple[list[str], list[str], list[str]]:
    invalid: list[str] = []
    misfit: list[str] = []
    warn: list[str] = []
    module_names = [n for n, _ in base_model.named_modules() if n]
    known = set(module_names)
    if getattr(cfg, "target_parameters", None):  # LoRA on bare parameters (MoE experts): sized by r, not checked here
        return [f"{CONFIG} target_parameters: set, but peft-audit cannot check adapters on parameters; not loaded"], [], []
    written = cfg.target_modules
    try:
        targeted = _targeted(method, cfg, base_model)  # fills in PEFT's defaults, expands 'all-linear'
    except ValueError as e:
        return [str(e)], [], []
    targets = _show(_listed(written)) if written is not None else f"(not set; PEFT's default {_show(_listed(cfg.target_modules))})"
    if not targeted:
        misfit.append(f"{CONFIG} target_modules: {targets} matches no module of the base model (it has e.g. "
                      f"{', '.join(_examples(base_model))})")
    elif isinstance(cfg.target_modules, (list, set)) and targeted:
        unmatched = _module_names_match(sorted(cfg.target_modules), module_names)
        if unmatched:
            warn.append(f"{CONFIG} target_modules: {_show(unmatched)} match no module of the base model; ignored")
    names = getattr(cfg, "modules_to_save", None)
    if names:
        unmatched = _module_names_match([names] if isinstance(names, str) else list(names), module_names)
        if unmatched:
            misfit.append(f"{CONFIG} modules_to_save: {_show(unmatched)} matches no module of the base model")
    rank: dict[tuple[str, int, int], list[str]] = {}
    with_tensors: set[str] = set()
    for key, shape in shapes.items():
        m = _TENSOR.match(key[len(_PREFIX):] if key.startswith(_PREFIX) else key)
        if m is None:
            continue
        mod, kind = m.group("mod"), m.group("kind")
        with_tensors.add(mod)
        if method == "lora" and kind != "ia3_l" and shape:
            found = shape[0] if kind.endswith("_A") else shape[-1]
            configured, source = _configured_rank(cfg, mod)
            if found != configured:
                rank.setdefault((source, configured, found), []).append(key)
    for (source, configured, found), keys in rank.items():
        more = f" (and {len(keys) - 1} more tensors)" if len(keys) > 1 else ""
        invalid.append(f"{CONFIG} {source}: {configured}, but tensor {keys[0]} has rank {found}{more}")
    # an unknown module is compat's misfit; a known one the config does not select would not be loaded
    unselected = sorted(m for m in with_tensors - targeted if m in known)
    if unselected:
        invalid.append(f"{CONFIG} target_modules: {targets} does not select module {unselected[0]}"
                       f"{_and_more(unselected)}, but the weights file holds its tensors")
    # PEFT builds every selected module at the configured size whether or not the file has its tensors
    bare = sorted(targeted - with_tensors)
    if bare:
        invalid.append(f"{CONFIG} target_modules: {targets} selects module {bare[0]}{_and_more(bare)}, but the "
                       "weights file holds no tensors for it")
    invalid += _check_extras(cfg, shapes, base_model) + _check_saved_modules(cfg, shapes, base_model)
    return invalid, misfit, warn


def _check_saved_modules(cfg: Any, shapes: dict[str, tuple[int, ...]], base_model: Any) -> list[str]:
    """Every base module ``modules_to_save`` selects (PEFT copies it whole) has its tensors in the file."""
    names = getattr(cfg, "modules_to_save", None)
    if not names:
        return []
    names = [names] if isinstance(names, str) else names
    # saved under the PeftModel's names: base_model.model.<module> (LoRA, IA3), base_model.<module> (prompts)
    saved = {k.removeprefix(p) for k in shapes for p in ("base_model.model.", "base_model.")}
    selected = [m for m, _ in base_model.named_modules()
                if m and any(m == n or m.endswith("." + n) for n in names)]
    bare = [m for m in selected if not any(k.startswith(m + ".") for k in saved)]
    if not bare:
        return []
    return [f"{CONFIG} modules_to_save: {_show(_listed(names))} selects module {bare[0]}{_and_more(bare)}, but the "
            "weights file holds no tensors for it"]


def _and_more(items: list[str]) -> str:
    return f" (and {len(items) - 1} more modules)" if len(items) > 1 else ""


def _check_extras(cfg: Any, shapes: dict[str, tuple[int, ...]], base_model: Any) -> list[str]:
    """LoRA keys that make PEFT build or import more than the adapter's own layers."""
    invalid: list[str] = []
    if getattr(cfg, "megatron_config", None):
        invalid.append(f"{CONFIG} megatron_config: set, but peft-audit does not load Megatron adapters (PEFT would "
                       f"import the module megatron_core names, {_show(cfg.megatron_core)})")
    replication = getattr(cfg, "layer_replication", None)
    if replication:
        n_layers = base_model.config.num_hidden_layers
        pairs_ok = isinstance(replication, list) and all(
            isinstance(p, list) and len(p) == 2 and all(_whole(i) for i in p) and 0 <= p[0] < p[1] <= n_layers
            for p in replication)
        if not pairs_ok:
            invalid.append(f"{CONFIG} layer_replication: expected [start, end] pairs within the base model's "
                           f"{n_layers} layers, found {_show(replication)}")
        else:
            built = sum(end - start for start, end in replication)
            held = 1 + max((int(m.group(1)) for k in shapes if (m := re.search(r"\.(\d+)\.", k))), default=-1)
            if built > held:
                invalid.append(f"{CONFIG} layer_replication: builds {built} layers, but the weights file holds "
                               f"tensors of {held}")
    tokens = getattr(cfg, "trainable_token_indices", None)
    if tokens is not None:
        invalid += _check_trainable_tokens(tokens, shapes, base_model.config.vocab_size)
    return invalid


def _check_trainable_tokens(tokens: list | dict, shapes: dict[str, tuple[int, ...]], vocab: int) -> list[str]:
    """``trainable_token_indices`` (a list for the input embedding, or {module: list}): distinct ids
    of the vocabulary, as many as each ``trainable_tokens_delta`` tensor has rows."""
    by_module = tokens if isinstance(tokens, dict) else {"": tokens}
    ids = [i for ix in by_module.values() for i in ix]
    if not ids:
        return [f"{CONFIG} trainable_token_indices: no ids; expected null or a list of token ids"]
    outside = [i for i in ids if i >= vocab]
    if outside:
        return [f"{CONFIG} trainable_token_indices: {_show(outside)}, but the base model has {vocab} tokens"]
    if any(len(set(ix)) != len(ix) for ix in by_module.values()):
        return [f"{CONFIG} trainable_token_indices: {len(ids)} ids, but only {len(set(ids))} distinct"]
    deltas = {k: v for k, v in shapes.items() if k.endswith(".token_adapter.trainable_tokens_delta")}
    if not deltas:
        return [f"{CONFIG} trainable_token_indices: {len(ids)} ids, but the weights file holds no "
                "trainable_tokens_delta tensor"]
    for key, shape in deltas.items():
        module = key[: -len(".token_adapter.trainable_tokens_delta")]
        wanted = next((ix for name, ix in by_module.items() if not name or module.endswith("." + name)), None)
        if wanted is not None and (not shape or shape[0] != len(wanted)):
            return [f"{CONFIG} trainable_token_indices: {len(wanted)} ids, but tensor {key} has shape {list(shape)}"]
    return []


def _configured_rank(cfg: Any, module_name: str) -> tuple[int, str]:
    """(rank PEFT gives ``module_name``, the config key it comes from): a ``rank_pattern`` entry
    matched the way PEFT matches it (:func:`peft.utils.other.get_pattern_key`), else ``r``."""
    from peft.utils.other import get_pattern_key

    patterns = cfg.rank_pattern or {}
    key = get_pattern_key(list(patterns), module_name)
    if key in patterns:
        return patterns[key], f"rank_pattern[{key!r}]"
    return cfg.r, "r"


def _listed(names: Any) -> Any:
    return sorted(names) if isinstance(names, (set, list)) else names


def _examples(base_model: Any) -> list[str]:
    """A few distinct names of the base model's leaf modules, for a message."""
    leaves = (n.rsplit(".", 1)[-1] for n, m in base_model.named_modules() if n and not any(True for _ in m.children()))
    return list(dict.fromkeys(leaves))[:6]


def check_adapter_config(method: str, acfg: dict[str, Any], shapes: dict[str, tuple[int, ...]], base_cfg: Any,
                         base_model: Any) -> tuple[list[str], list[str], list[str]]:
    """(invalid, misfit, warnings) of ``acfg`` against the adapter's tensor ``shapes`` (names as
    saved, from the weights file's header) and the base model (its transformers config and its
    module tree on the meta device). See the module docstring for which is which; ``invalid``
    stops at the first kind of problem found (types, then PEFT's own check, then sizes)."""
    held = sum(math.prod(shape) for shape in shapes.values())
    base_params = sum(p.numel() for p in base_model.parameters())
    if held > base_params:  # PEFT reads the whole weights file into memory, ignored tensors too
        return [f"the weights file holds {_count(held)} values, but the base model has only {_count(base_params)} "
                "parameters; an adapter is smaller than its model"], [], []
    invalid = check_types(method, acfg)
    if acfg.get("peft_type") not in PEFT_TYPE_TO_METHOD:  # PEFT looks the type up as spelt
        invalid.insert(0, f"{CONFIG} peft_type: {_show(acfg.get('peft_type'))}, but PEFT reads only "
                          f"{str(acfg.get('peft_type')).upper()!r}")
    if invalid:
        return invalid, [], []
    try:
        cfg = peft_config(acfg)
    except ValueError as e:
        return [str(e)], [], []
    if cfg.is_prompt_learning:
        invalid, misfit = _check_prompt(method, cfg, shapes, base_cfg, base_model)
        return invalid + _check_saved_modules(cfg, shapes, base_model), misfit, []
    return _check_modules(method, cfg, shapes, base_model)
