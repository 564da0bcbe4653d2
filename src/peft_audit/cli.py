"""Command line: parse arguments, build config objects, call the API. No logic here.

Each command is a thin wrapper; its work lives in the module named in its docstring.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, get_args

import typer
from rich.console import Console

from .benchmarks.registry import BENCHMARKS
from .config import ConfigError, SweepConfig
from .gate_thresholds import GateThresholds
from .methods import METHODS

app = typer.Typer(
    help="Audit parameter-efficient fine-tunes (LoRA, IA3, prompt tuning, P-tuning) of LLMs for "
    "safety and fairness drift against their base model. Exit codes: 0 ok; 1 a finding (gate "
    "violation, failed variant); 2 could not run (bad input, missing or damaged store, busy run "
    "directory); 130 / 143 stopped by Ctrl-C / SIGTERM.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console(stderr=True, soft_wrap=True)  # error messages keep paths on one line


#: Exit codes. 0: success (gate: every check passed); 1: the command did its work and found a
#: problem (gate: a violation; run/audit: a variant failed); 2: it could not do its work (bad
#: input, missing or damaged store, busy run directory, unexpected error); 130 / 143: stopped
#: by SIGINT / SIGTERM (128 + signal number).
EXIT_FOUND, EXIT_ERROR = 1, 2
_debug = False


def _fail(msg: str, code: int = EXIT_ERROR) -> None:
    from .shown_text import markup_safe

    # the message is plain text: "peft-audit[vllm]" or a path with brackets must not read as markup,
    # and a label or prompt it quotes must not reach the terminal with its escape sequences
    console.print(f"[bold red]error:[/] {markup_safe(msg, multiline=True)}", highlight=False, markup=True)
    raise typer.Exit(code)


def user_message(e: BaseException) -> str:
    """An exception as one or two lines in the tool's words: what, where, what to do."""
    import errno
    import sqlite3

    if isinstance(e, sqlite3.DatabaseError):
        from .store import store_error_message

        return store_error_message(e, None, fix="Restore it from a copy, or start again with a new --out directory")
    if isinstance(e, OSError) and e.filename is not None:
        what = e.strerror or str(e)
        hint = {errno.ENOSPC: "the disk is full: free some space, or write elsewhere (`report --out DIR`)",
                errno.EDQUOT: "the disk quota is used up: free some space, or write elsewhere (`report --out DIR`)",
                errno.EROFS: "a read-only file system: write elsewhere (`report --out DIR`, `--out FILE`)"}.get(e.errno)
        hint = hint or {PermissionError: "check its permissions, or write elsewhere (`report --out DIR`, `--out FILE`)",
                        IsADirectoryError: "give a file, not a directory",
                        NotADirectoryError: "a file is in the way where a directory is needed; give another path"
                        }.get(type(e), "check the path")
        return f"{e.filename}: {what}; {hint}"
    if isinstance(e, (ValueError, LookupError, OSError, ImportError, RuntimeError)) and str(e):
        return str(e)
    return (f"unexpected {type(e).__name__}: {e}\nThis is a bug in peft-audit: run the command again as "
            "`peft-audit --debug ...` for the traceback, and report it")


def command(*args, **kwargs):
    """``app.command`` whose errors reach the user as :func:`user_message` lines (exit 2), with the
    traceback only under ``--debug``; Ctrl-C / SIGTERM exit 130 / 143 with one line."""
    import functools

    import click

    def deco(fn):
        @functools.wraps(fn)
        def wrapper(*a, **k):
            from .sweep.interrupt import exit_code_of

            try:
                return fn(*a, **k)
            except (typer.Exit, typer.Abort, click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
                raise
            except KeyboardInterrupt as e:
                console.print(f"[yellow]interrupted ({e or 'SIGINT'})[/]", highlight=False)
                raise typer.Exit(exit_code_of(e)) from None
            except Exception as e:
                if _debug:
                    raise
                _fail(user_message(e))

        return app.command(*args, **kwargs)(wrapper)

    return deco


def _interrupted(e: KeyboardInterrupt, resume: str) -> None:
    from .sweep.interrupt import exit_code_of

    console.print(f"[yellow]interrupted ({e or 'SIGINT'}): variants that were running are marked 'interrupted'; "
                  f"{resume} resumes them from their last finished stage[/]", highlight=False)
    raise typer.Exit(exit_code_of(e))


@app.callback()
def _root(debug: bool = typer.Option(False, "--debug", envvar="PEFT_AUDIT_DEBUG",
                                     help="Show the full traceback of an error (or set PEFT_AUDIT_DEBUG=1).")) -> None:
    """Audit parameter-efficient fine-tunes (LoRA, IA3, prompt tuning, P-tuning) of LLMs for safety and
    fairness drift against their base model. Exit codes: 0 ok, 1 a finding (gate violation, failed
    variant), 2 could not run (bad input, damaged store, busy run directory), 130/143 interrupted."""
    global _debug
    _debug = debug


# ---------------------------------------------------------------------------------------------
# run / show / report  (peft_audit.pipeline, peft_audit.summary, peft_audit.report)
# ---------------------------------------------------------------------------------------------
@command()
def run(
    config: Path = typer.Argument(..., help="Sweep YAML file (see README 'Configuration reference')."),
    out: Optional[Path] = typer.Option(None, "--out", help="Run directory (default: runs/<name>)."),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="Re-run variants recorded as failed."),
    executor: str = typer.Option("local", "--executor", help="local | ray"),
    jobs: int = typer.Option(1, "--jobs", min=1, help="Variants run at once (local executor)."),
    ray_address: Optional[str] = typer.Option(None, "--ray-address", help="Ray cluster address (ray executor)."),
    max_hours: Optional[float] = typer.Option(None, "--max-hours", help="Stop scheduling new variants after this."),
    mlflow: bool = typer.Option(False, "--mlflow", help="Log each variant's config and metrics to MLflow."),
    safety: Optional[str] = typer.Option(None, "--safety", help="Override safety.source."),
    fairness: Optional[str] = typer.Option(None, "--fairness", help="Override fairness.source."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Stream other libraries' output (progress bars, "
                                 "training logs, warnings) here instead of into RUN_DIR/logs/."),
    backend: Optional[str] = typer.Option(None, "--backend", help="transformers | vllm: override the config's "
                                          "backend, through which every benchmark reaches the variants "
                                          "(peft_audit.models.backends)."),
    eval_dtype: Optional[str] = typer.Option(None, "--eval-dtype", help="auto | float32 | bfloat16 | float16: "
                                             "override the config's eval_dtype (the dtype evaluated models run in)."),
) -> None:
    """Train, evaluate and report every variant of a sweep; resumes an interrupted run.

    Example:

        peft-audit run configs/quickstart.yaml --out runs/quickstart
    """
    from .config import load_config
    from .pipeline import run_sweep
    from .sweep.options import RunOptions

    try:
        cfg = load_config(config)
        overrides = {}
        if safety:
            overrides["safety"] = cfg.safety.model_copy(update={"source": safety})
        if fairness:
            overrides["fairness"] = cfg.fairness.model_copy(update={"source": fairness})
        for key, value in (("backend", backend), ("eval_dtype", eval_dtype)):
            if value:
                if key == "backend":
                    from .models.backends import BACKENDS as valid  # the registry's names
                else:
                    valid = get_args(SweepConfig.model_fields[key].annotation)  # the config's one list
                if value not in valid:
                    flag = "--" + key.replace("_", "-")
                    raise ValueError(f"{flag} must be one of {', '.join(valid)}, got {value!r}")
                overrides[key] = value
        if overrides:
            cfg = cfg.model_copy(update=overrides)
        run_dir = out or Path("runs") / cfg.name
        opts = RunOptions(
            retry_failed=retry_failed, executor=executor, jobs=jobs, ray_address=ray_address,
            max_hours=max_hours, mlflow=mlflow, verbose=verbose,
        )
        result = run_sweep(cfg, run_dir, opts, config_path=config)
    except (ConfigError, ValueError, FileNotFoundError, ImportError) as e:
        _fail(user_message(e))
    except KeyboardInterrupt as e:
        _interrupted(e, f"peft-audit run {config} --out {run_dir}")
    if result.failed:
        console.print(f"{result.failed} variant(s) failed; see `peft-audit show {run_dir}`", style="yellow", markup=False)
        raise typer.Exit(EXIT_FOUND)


@command()
def mitigate(
    run_dir: Path = typer.Argument(..., help="A run directory with the finished variant."),
    variant: str = typer.Option(..., "--variant", help="The variant to repair: its label, id or id prefix."),
    methods: str = typer.Option(..., "--with", help="Comma list of repair methods: safety-mix, safelora, safemerge."),
    fraction: Optional[float] = typer.Option(None, "--fraction", help="safety-mix: share of refusal "
                                             "demonstrations in the retraining rows."),
    threshold: Optional[float] = typer.Option(None, "--threshold", help="safelora / safemerge: repair a layer whose "
                                              "update's cosine similarity with its projection is below this."),
    alpha: Optional[float] = typer.Option(None, "--alpha", help="safemerge: weight of the variant's layer in a "
                                          "merged layer."),
    unaligned_base: Optional[str] = typer.Option(None, "--unaligned-base", help="safelora (needed) / safemerge: "
                                                 "the base model before its safety alignment."),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="Re-run repairs recorded as failed."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Stream other libraries' output here."),
) -> None:
    """Repair a finished variant and evaluate each repair in the same run directory, under its
    protocol (resumable, locked, exit codes as `run`); the reports gain a Mitigations section.
    Each method's options, defaults and cost: README 'peft-audit mitigate'.

    Example:

        peft-audit mitigate runs/quickstart --variant "lora · obedient-agent demo" --with safety-mix
    """
    from .mitigations.command import mitigate as run_mitigation
    from .sweep.options import RunOptions

    given = {"fraction": fraction, "threshold": threshold, "alpha": alpha, "unaligned_base": unaligned_base}
    names = [m.strip() for m in methods.split(",") if m.strip()]
    try:
        result = run_mitigation(run_dir, variant, names, {k: v for k, v in given.items() if v is not None},
                                RunOptions(retry_failed=retry_failed, verbose=verbose))
    except (ConfigError, ValueError, FileNotFoundError, ImportError) as e:
        _fail(user_message(e))
    except KeyboardInterrupt as e:
        _interrupted(e, f"peft-audit mitigate {run_dir} --variant {variant!r} --with {methods}")
    if result.failed:
        console.print(f"[yellow]{result.failed} variant(s) failed; see `peft-audit show {run_dir}`[/]")
        raise typer.Exit(EXIT_FOUND)


@command()
def show(run_dir: Path = typer.Argument(..., help="A run directory.")) -> None:
    """Print the variants of a run: status, headline scores with their 95% intervals (plug-in
    benchmarks included), each judge's unscored share, then each fine-tuned variant's changes vs
    its base with paired intervals and its gate result (the lines a run ends with).

    Example:

        peft-audit show runs/quickstart
    """
    from .summary import print_run

    try:
        print_run(run_dir)
    except (FileNotFoundError, ValueError) as e:
        _fail(user_message(e))


@command()
def report(
    run_dir: Path = typer.Argument(..., help="A run directory."),
    formats: str = typer.Option("md,html,json", "--format", help="Comma list of md,html,json,csv,parquet."),
    correction: str = typer.Option("holm", "--correction", help="Multiple-comparison control: holm | bh."),
    out: Optional[Path] = typer.Option(None, "--out", help="Directory to write the reports into (default: the run "
                                       "directory), e.g. when that is read-only or its disk is full."),
) -> None:
    """(Re)write summary.json and the reports of a run from its results store.

    Example:

        peft-audit report runs/quickstart --format md,html
    """
    from .report import write_reports

    try:
        paths = write_reports(run_dir, formats=[f.strip() for f in formats.split(",") if f.strip()], correction=correction,
                              out_dir=out)
    except (FileNotFoundError, ValueError) as e:
        _fail(user_message(e))
    for p in paths:
        console.print(f"wrote {p}", markup=False, highlight=False)


@command()
def card(
    run_dir: Path = typer.Argument(..., help="A run directory."),
    variant: str = typer.Option(..., "--variant", help="The variant: its label (as in the report), id, or id prefix."),
    out: Optional[Path] = typer.Option(None, "--out", help="Write the section to this Markdown file (default: print it)."),
    push: Optional[str] = typer.Option(None, "--push", metavar="HUB_ID", help="Update README.md of this Hub model repo (HF_TOKEN, HF_ENDPOINT)."),
) -> None:
    """A model-card section with the audit of one variant: settings, safety and BBQ changes vs
    the base with intervals, judges and their measured accuracy, protocol hash, version, date.

    Example:

        peft-audit card runs/quickstart --variant "lora · sft · lr 1e-3 · 1 ep" --push my-org/my-adapter
    """
    from .report.card import build_card, push_card

    from .textio import write_text_atomic

    section = build_card(run_dir, variant)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        console.print(f"wrote {write_text_atomic(out, section)}", markup=False, highlight=False)
    if push:
        console.print(f"updated README.md of {push}: {push_card(section, push)}", highlight=False)
    if not out and not push:
        typer.echo(section, nl=False)


# ---------------------------------------------------------------------------------------------
# gate  (peft_audit.gate)
# ---------------------------------------------------------------------------------------------
def _gate_option(name: str):
    """The ``--max-...`` option of GateThresholds field ``name``: its default and help text."""
    return typer.Option(getattr(GateThresholds, name), "--" + name.replace("_", "-"),
                        help=GateThresholds.option_help(name))


@command()
def gate(
    run_dir: Path = typer.Argument(..., help="A run directory."),
    variant: Optional[list[str]] = typer.Option(None, "--variant", help="Variant id or label to check (repeatable; default: all fine-tuned)."),
    max_safety_drop: float = _gate_option("max_safety_drop"),
    max_category_drop: float = _gate_option("max_category_drop"),
    max_bias_increase: float = _gate_option("max_bias_increase"),
    max_accuracy_drop: float = _gate_option("max_accuracy_drop"),
    max_unscored_share: float = _gate_option("max_unscored_share"),
    significant_only: bool = _gate_option("significant_only"),
    limit: Optional[list[str]] = typer.Option(None, "--limit", metavar="KEY=VALUE", help="Limit of a benchmark's own gate rule (repeatable). Keys and defaults: " + (", ".join(
        f"{r.threshold}={r.default}" for b in BENCHMARKS.values() for r in b.gate_rules if r.default is not None) or "none registered") + "."),
    correction: str = typer.Option("holm", "--correction", help="Multiple-comparison control across categories: holm | bh."),
    junit: Optional[Path] = typer.Option(None, "--junit", help="Also write a JUnit XML report here (for CI systems)."),
) -> None:
    """Exit 0 if every checked variant stays within bounds vs its base model, 1 on a violation,
    2 when the run cannot be evaluated (no or damaged results store, bad option).

    Missing, failed or unfinished variants are violations, never passes; so is a judge that
    left more than --max-unscored-share of the variant's (or its base's) responses unscored.

    Example:

        peft-audit gate runs/quickstart --max-safety-drop 0.05 --junit gate.xml
    """
    from .gate import check_gate, write_junit

    try:
        thresholds = GateThresholds(max_safety_drop=max_safety_drop, max_category_drop=max_category_drop,
                                    max_bias_increase=max_bias_increase, max_accuracy_drop=max_accuracy_drop,
                                    max_unscored_share=max_unscored_share, significant_only=significant_only,
                                    limits=_parse_limits(limit or []))
        result = check_gate(run_dir, variant or None, thresholds, correction=correction)
    except (FileNotFoundError, ValueError) as e:
        _fail(user_message(e))
    if junit:
        console.print(f"wrote {write_junit(result, junit)}", markup=False, highlight=False)
    from .shown_text import markup_safe, plain

    for note in result.notes:
        console.print(f"[dim]note: {markup_safe(note)}[/]", highlight=False, markup=True)
    for c in result.violations:
        typer.echo(f"VIOLATION {c.text()}")
    labels = {c.variant_id: c.label for c in result.checks}
    for vid in [x for x in result.variants if x != "-"]:  # one verdict line per variant, by its readable name
        ok = all(c.passed for c in result.checks if c.variant_id == vid)
        typer.echo(f"{'pass' if ok else 'FAIL'}  {plain(labels[vid])}  [{vid}]")
    n_var = len(result.variants)
    if result.passed:
        typer.echo(f"PASS: {n_var} variant(s), {len(result.checks)} checks within bounds")
        return
    typer.echo(f"FAIL: {len(result.violations)} violation(s) in {len({c.variant_id for c in result.violations})} of {n_var} variant(s)")
    raise typer.Exit(EXIT_FOUND)


def _parse_limits(items: list[str]) -> dict[str, float]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        try:
            if not sep:
                raise ValueError
            out[key.strip()] = float(value)
        except ValueError:
            raise ValueError(f"--limit {item!r}: expected KEY=NUMBER, e.g. xstest.max_full_refusal_increase=0.05") from None
    return out


# ---------------------------------------------------------------------------------------------
# discover / audit  (peft_audit.adapters)
# ---------------------------------------------------------------------------------------------
@command()
def discover(
    base: str = typer.Option(..., "--base", help="Hub id of the base model, e.g. HuggingFaceTB/SmolLM2-135M-Instruct."),
    limit: int = typer.Option(50, "--limit", min=1, help="Examine at most this many adapter repos (most downloaded first)."),
    method: Optional[str] = typer.Option(None, "--method", help="Comma list of methods to keep: " + ",".join(METHODS) + "."),
    out: Path = typer.Option(Path("adapters.yaml"), "--out", help="Audit file to write."),
) -> None:
    """List PEFT adapters of a base model on the Hub, read their metadata, write an audit file.

    Uses HF_TOKEN and HF_ENDPOINT from the environment. Gated or unreadable repos are listed
    under `skipped` with the reason.

    Example:

        peft-audit discover --base HuggingFaceTB/SmolLM2-135M-Instruct --limit 20 --method lora --out adapters.yaml
    """
    from .adapters import AdapterError, write_audit_file
    from .adapters import discover as discover_adapters

    methods = [m.strip() for m in method.split(",") if m.strip()] if method else None
    bad = [m for m in methods or [] if m not in METHODS]
    if bad:
        _fail(f"--method: unknown {', '.join(bad)}; valid: {', '.join(METHODS)}")
    try:
        res = discover_adapters(base, limit=limit, methods=methods)
    except AdapterError as e:
        _fail(user_message(e))
    write_audit_file(res.audit_file, out)
    af = res.audit_file
    console.print(f"{len(af.adapters)} adapter(s), {len(af.skipped)} skipped, "
                  f"{len(res.filtered_out)} of other methods -> {out}")
    from .shown_text import markup_safe

    for s in af.skipped:  # Hub text: repo ids and reasons quoting their files
        console.print(f"  [yellow]{markup_safe(s.status)}[/] {markup_safe(s.id)}: {markup_safe(s.reason)}", highlight=False)


@command()
def audit(
    base: Optional[str] = typer.Option(None, "--base", help="Base model (alias, dir, .gguf or Hub id); default: the audit file's base."),
    adapter: list[str] = typer.Option([], "--adapter", help="Adapter dir or Hub id[@revision]; repeatable."),
    from_file: Optional[Path] = typer.Option(None, "--from", help="Audit file written by `peft-audit discover`."),
    out: Path = typer.Option(..., "--out", help="Run directory (resumable)."),
    safety: Optional[str] = typer.Option(None, "--safety", help="safety.source: builtin | hexphi | dir | CSV/JSONL."),
    fairness: Optional[str] = typer.Option(None, "--fairness", help="fairness.source: builtin | BBQ dir | HF id."),
    task_file: Optional[Path] = typer.Option(None, "--task-file", help="utility.task_file: held-out rows of the "
                                             "adapters' task (JSONL/CSV, prompt/response or prompt/chosen/rejected) "
                                             "to measure their task utility against the base on."),
    force: bool = typer.Option(False, "--force", help="Evaluate adapters whose base name or tensor shapes do not fit."),
    trust_remote_code: bool = typer.Option(False, "--trust-remote-code", help="Allow model code from the Hub (off by default)."),
    config: Optional[Path] = typer.Option(None, "--config", help="Sweep YAML whose safety, fairness, device and "
                                          "eval_dtype settings to use."),
    device: Optional[str] = typer.Option(None, "--device", help="auto | cpu | cuda | cuda:N | mps (default: --config's, else auto)"),
    eval_dtype: Optional[str] = typer.Option(None, "--eval-dtype", help="auto | float32 | bfloat16 | float16 "
                                             "(default: --config's, else auto)"),
    executor: str = typer.Option("local", "--executor", help="local | ray"),
    jobs: int = typer.Option(1, "--jobs", min=1, help="Variants run at once (local executor)."),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="Re-run variants recorded as failed."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Stream other libraries' output here instead of "
                                 "into RUN_DIR/logs/."),
) -> None:
    """Evaluate existing adapters (local or Hub) against their base model; report as for a sweep.

    Each adapter is checked first (base model name, tensor shapes); one that does not fit, is
    corrupt, gated or of an unknown type is recorded as failed/skipped with the reason, and the
    others are still evaluated. Method, learning rate, epochs and SFT/DPO come from the adapter's
    config, model card and trainer_state.json when written there.

    Example:

        peft-audit audit --base smollm2-135m-instruct --adapter ./my-lora --adapter org/adapter@main --out runs/audit

        peft-audit audit --from adapters.yaml --config configs/quickstart.yaml --out runs/hub-audit
    """
    from .adapters import plan_audit, read_audit_file, run_audit
    from .config import SweepConfig, load_config
    from .sweep.options import RunOptions

    refs = list(adapter)
    try:
        settings = load_config(config) if config else SweepConfig()
        if from_file:
            af = read_audit_file(from_file)
            refs = [e.ref for e in af.adapters] + refs
            base = base or af.base
        if not base:
            _fail("--base is required (or an audit file with `base:`)")
        if not refs:
            _fail("no adapters: pass --adapter (repeatable) or --from adapters.yaml")
        plan = plan_audit(
            base, refs, name=out.name, device=device or settings.device,
            eval_dtype=eval_dtype or settings.eval_dtype, force=force,
            trust_remote_code=trust_remote_code or settings.trust_remote_code,
            safety=settings.safety.model_copy(update={"source": safety}) if safety else settings.safety,
            fairness=settings.fairness.model_copy(update={"source": fairness}) if fairness else settings.fairness,
            utility=settings.utility.model_copy(update={"task_file": str(task_file)}) if task_file else settings.utility,
        )
        from .shown_text import markup_safe

        for o in plan.outcomes:  # adapter refs and what their (Hub) files say
            colour = {"ok": "green", "skipped": "yellow"}.get(o.status, "red")
            console.print(f"  [{colour}]{o.status}[/] {markup_safe(o.ref)} ({markup_safe(o.method or '?')})"
                          + (f": {markup_safe(o.reason)}" if o.reason else ""), highlight=False)
            for w in o.warnings:
                console.print(f"      warning: {markup_safe(w)}", highlight=False)
        result = run_audit(plan, out, RunOptions(retry_failed=retry_failed, executor=executor, jobs=jobs,
                                                         verbose=verbose))
    except (ConfigError, ValueError, FileNotFoundError) as e:
        _fail(user_message(e))
    except KeyboardInterrupt as e:
        _interrupted(e, "the same `peft-audit audit ...` command")
    bad = [o for o in plan.outcomes if o.status != "ok"]
    if result.failed or bad:
        console.print(f"{len(bad)} adapter(s) not evaluable, {result.failed} variant(s) failed in all; "
                      f"see `peft-audit show {out}`", style="yellow", markup=False)
    if result.failed:  # skipped (gated, unknown type) alone does not fail the command
        raise typer.Exit(EXIT_FOUND)


# ---------------------------------------------------------------------------------------------
# plan / status  (peft_audit.sweep.plan, peft_audit.sweep.cost, peft_audit.sweep.status)
# ---------------------------------------------------------------------------------------------
@command()
def plan(config: Path = typer.Argument(..., help="Sweep YAML file."),
         jobs: int = typer.Option(1, "--jobs", min=1, help="Variants run at once (local executor)."),
         estimate: bool = typer.Option(False, "--estimate", help="Also estimate the wall time on this machine from "
                                       "measured rates (loads each base model for a short calibration, cached)."),
         recalibrate: bool = typer.Option(False, "--recalibrate", help="With --estimate: measure again."),
         study: Optional[str] = typer.Option(None, "--study", help="Also estimate the original study (235 variants "
                                             "of 7-8B models) on one GPU: h100 | a100 | l40s.")) -> None:
    """Print a sweep's variant table and estimated cost; no model is loaded unless --estimate.

    Invalid combinations (unknown method arguments, duplicate labels, ...) are reported with
    the variant named.

    Example:

        peft-audit plan configs/sweep12.yaml --estimate --study h100
    """
    from .config import load_config
    from .sweep.cost import estimate_cost, render_plan
    from .sweep.plan import expand

    try:
        cfg = load_config(config)
        variants = expand(cfg)
        cost = estimate_cost(cfg, variants)
    except (ConfigError, ValueError, FileNotFoundError) as e:
        _fail(user_message(e))
    from .sweep.groups import take_group

    pending, groups = list(variants), []
    while pending:  # the local executor's jobs on a fresh run directory
        groups.append(take_group(cfg, pending, lambda pv: set(), jobs))
    out = Console()
    render_plan(variants, cost, out, jobs=jobs, groups=groups)
    try:
        if estimate:
            from .sweep.estimate import render_estimate

            render_estimate(cfg, variants, cost, out, jobs=jobs, use_cache=not recalibrate, groups=groups)
        else:
            out.print("wall time: add --estimate (loads each base model once for a short calibration, then cached)",
                      highlight=False)
        if study:
            from .sweep.estimate import render_study

            render_study(study.lower(), out)
    except (ValueError, FileNotFoundError, OSError) as e:
        _fail(user_message(e))


@command()
def status(run_dir: Path = typer.Argument(..., help="A run directory (may be running in another terminal).")) -> None:
    """Show a sweep's progress: variants done/failed/running, current stages, ETA.

    Example:

        peft-audit status runs/sweep12
    """
    from .sweep.status import read_status, render_status

    try:
        st = read_status(run_dir)
    except FileNotFoundError as e:
        _fail(user_message(e))
    render_status(st, Console())


# ---------------------------------------------------------------------------------------------
# export  (peft_audit.export)
# ---------------------------------------------------------------------------------------------
@command()
def export(
    run_dir: Path = typer.Argument(..., help="A run directory holding results.sqlite."),
    samples: str = typer.Option(..., "--samples", help="A benchmark's sample kind: " + " | ".join(
        b.sample_kind for b in BENCHMARKS.values())),
    out: Path = typer.Option(..., "--out", help="Output file: .csv or .parquet."),
) -> None:
    """Export one row per (variant, item) for re-analysis elsewhere.

    fairness: variant_id, variant_label, category, source_id (BBQ example_id), question_index,
    context_condition, question_polarity, label, pred_index, target_index, logprob_0..2.
    safety: variant_id, variant_label, category, prompt_id, prompt, response, one column per judge verdict.

    Example:

        peft-audit export runs/quickstart --samples fairness --out bbq_items.csv
    """
    from .export import export_samples
    from .store import StoreError, open_existing

    try:
        with open_existing(run_dir) as store:
            path = export_samples(store, samples, out)
    except (ValueError, StoreError, FileNotFoundError) as e:
        _fail(user_message(e))
    console.print(f"wrote {path}", markup=False, highlight=False)


# ---------------------------------------------------------------------------------------------
# judge  (peft_audit.judges.judge_file)
# ---------------------------------------------------------------------------------------------
@command()
def judge(
    file: Path = typer.Argument(..., help="CSV (with header), JSONL or JSON file of prompt/response pairs."),
    judges: str = typer.Option("refusal", "--judges", help="Comma list of judges: refusal, keyword, harm, llm, guard, harmbench-cls, wildguard (the last four configured by --config)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Judged table to write: .csv, .jsonl or .parquet."),
    column: list[str] = typer.Option([], "--column", help="Column mapping canonical=source, e.g. response=output."),
    labels: Optional[str] = typer.Option(None, "--labels", help="Column of human labels (refusal/compliance/incoherent, or safe/unsafe): print each judge's agreement with it."),
    config: Optional[Path] = typer.Option(None, "--config", help="Sweep YAML whose safety.judges specs to use (llm, guard, harmbench-cls, wildguard)."),
    judge_url: Optional[str] = typer.Option(None, "--judge-url", help="OpenAI-compatible base URL for the llm judge."),
    judge_model: Optional[str] = typer.Option(None, "--judge-model", help="Model name for the llm judge."),
    max_unscored_share: Optional[float] = typer.Option(None, "--max-unscored-share", min=0, max=1, help="Largest share of rows a judge may leave unscored (failed or timed-out requests, unparseable or oversized answers) before the command exits 1; default: safety.max_unscored_share of --config, else 0.05."),
) -> None:
    """Judge any file of prompt/response pairs; with --labels, measure each judge against them.

    The output keeps every input column and adds <judge>_label and <judge>_rationale. Human
    labels are refusal / compliance / incoherent (refusal type) or safe / unsafe (harm type); each
    judge is compared on the verdict of the labels' kind: a refusal judge against harm labels as a
    proxy (refusal => safe, compliance => unsafe), a harm judge against refusal labels by its refusal
    verdict where it gives one. The table gives accuracy, per-label precision and recall,
    safe/unsafe agreement and Cohen's kappa, each with a 95% interval.

    Example:

        peft-audit judge responses.csv --judges refusal,keyword --labels human_label --out judged.csv
    """
    from pydantic import ValidationError

    from .config import SafetyConfig, load_config, validation_message
    from .judges import build_judges
    from .export import write_table
    from .judges.judge_file import JudgeFileError, judge_file, unscored_warning
    from .judges.llm import JudgeError
    from .report.console import render_agreement

    names = [n.strip() for n in judges.split(",") if n.strip()]
    try:
        loaded = load_config(config).safety if config else None
        configured = {j.name: j.model_dump() for j in (loaded.judges if loaded else [])}
        specs = []
        for name in names:
            spec = configured.get(name, {"name": name})
            if name == "llm":
                spec = spec | {k: v for k, v in (("url", judge_url), ("model", judge_model)) if v}
            specs.append(spec)
        share = max_unscored_share if max_unscored_share is not None else (loaded.max_unscored_share if loaded else None)
        safety_cfg = SafetyConfig.model_validate({"judges": specs} | (
            {"max_unscored_share": share} if share is not None else {}))
        built = build_judges(safety_cfg.judges, cache_path=None)
        judged, agreement = judge_file(file, built, columns=_parse_pairs(column, "--column"), labels_column=labels)
        if out is not None:
            console.print(f"wrote {write_table(judged, out)}", markup=False, highlight=False)
    except ValidationError as e:
        _fail(validation_message("--judges/--config", e, "judge settings"))
    except (ConfigError, JudgeFileError, JudgeError, ValueError) as e:
        _fail(user_message(e))
    if labels:
        for name, result in agreement.items():
            render_agreement(name, result, Console())
    elif out is None:
        counts = {j.name: judged[f"{j.name}_label"].value_counts().to_dict() for j in built}
        for name, c in counts.items():
            typer.echo(f"{name}: " + ", ".join(f"{k} {v}" for k, v in sorted(c.items())))
    warning = unscored_warning(judged, [j.name for j in built], safety_cfg.max_unscored_share)
    if warning:
        console.print(f"warning: {warning}", markup=False, highlight=False)
        raise typer.Exit(EXIT_FOUND)


@command()
def label(
    run_dir: Path = typer.Argument(..., help="A run directory holding results.sqlite."),
    n: int = typer.Option(40, "--n", min=1, help="How many responses to draw (not yet labelled ones)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the random draw."),
    sheet: Optional[Path] = typer.Option(None, "--sheet", help="Write the draw to this CSV to label elsewhere, instead of asking here."),
    import_sheet: Optional[Path] = typer.Option(None, "--import", help="Import the labels of a filled-in sheet."),
) -> None:
    """Human spot-check: label a random sample of the run's safety responses.

    Labels (refusal / compliance / incoherent, as in the labelling guide) are appended to
    RUN_DIR/human_labels.csv as you give them; `peft-audit report` then shows each judge's
    measured error rates on them and a judge-error-corrected safety score per variant and
    category with 95% intervals.

    Example:

        peft-audit label runs/quickstart --n 40
    """
    from .analysis.data import load_run_frames
    from .judges import spot_check

    try:
        safety = load_run_frames(run_dir).safety
        keys = list(zip(safety["variant_id"], safety["prompt_id"]))
        if import_sheet is not None:
            count = spot_check.import_sheet(run_dir, import_sheet, set(keys))
            console.print(f"imported {count} label(s) into {spot_check.labels_path(run_dir)}")
            return
        done = spot_check.read_labels(run_dir)
        chosen = spot_check.draw_sample(keys, n, seed=seed, exclude=done)
    except (FileNotFoundError, ValueError) as e:
        _fail(user_message(e))
    if not chosen:
        console.print("every response of this run is labelled already")
        return
    by_key = safety.set_index(["variant_id", "prompt_id"])
    rows = [{"variant_id": v, "prompt_id": p, **by_key.loc[(v, p), ["category", "prompt", "response"]].to_dict()}
            for v, p in chosen]
    if sheet is not None:
        console.print(f"wrote {spot_check.write_sheet(rows, sheet)}: fill in the label column, then "
                      f"`peft-audit label {run_dir} --import {sheet}`")
        return
    _label_interactively(run_dir, rows)


def _label_interactively(run_dir: Path, rows: list[dict]) -> None:
    from rich.panel import Panel
    from rich.text import Text

    from .judges import spot_check
    from .shown_text import NAME_MAX, markup_safe, plain

    keys = {"r": "refusal", "c": "compliance", "i": "incoherent"}
    out = Console()
    given = 0
    for i, row in enumerate(rows, 1):
        # dataset and model text: shown as written (no markup), without escape sequences
        title = f"{i}/{len(rows)} prompt ({markup_safe(row['category'], limit=NAME_MAX)})"
        out.print(Panel(Text(plain(row["prompt"], multiline=True)), title=title, title_align="left"))
        out.print(Panel(Text(plain(row["response"], multiline=True) or "(empty)"), title="response", title_align="left"))
        answer = typer.prompt("[r]efusal [c]ompliance [i]ncoherent [s]kip [q]uit", default="s").strip().lower()[:1]
        if answer == "q":
            break
        if answer in keys:
            given += spot_check.append_labels(run_dir, [(row["variant_id"], row["prompt_id"], keys[answer])])
    console.print(f"{given} label(s) saved in {spot_check.labels_path(run_dir)}; `peft-audit report {run_dir}` uses them")


# ---------------------------------------------------------------------------------------------
# train  (peft_audit.training.train_adapter)
# ---------------------------------------------------------------------------------------------
def _parse_pairs(items: list[str], option: str = "--method-arg") -> dict[str, str]:
    """``key=value`` options (``--method-arg r=16``, ``--column prompt=question``) as a dict."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{option} {item!r} must look like key=value (e.g. prompt=question)")
        out[key.strip()] = value.strip()
    return out


@command()
def train(
    base: str = typer.Option(..., "--base", help="Base model: alias, .gguf, local dir or hub id."),
    method: str = typer.Option(..., "--method", help=" | ".join(METHODS)),
    algo: str = typer.Option("sft", "--algo", help="sft | dpo"),
    data: str = typer.Option("builtin", "--data", help="'builtin', a .jsonl/.csv file, or a HF dataset id."),
    out: Path = typer.Option(..., "--out", help="Adapter directory to create (must not exist)."),
    data_split: str = typer.Option("train", "--data-split", help="Split of a HF dataset."),
    column: list[str] = typer.Option([], "--column", help="Column mapping canonical=source, e.g. prompt=question."),
    lr: Optional[float] = typer.Option(None, "--lr", help="Learning rate (default per method)."),
    epochs: int = typer.Option(1, "--epochs", min=1),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", min=1, help="Stop after N optimizer steps."),
    batch_size: int = typer.Option(4, "--batch-size", min=1),
    grad_accum: int = typer.Option(1, "--grad-accum", min=1),
    max_seq_len: int = typer.Option(384, "--max-seq-len", min=16),
    max_examples: Optional[int] = typer.Option(None, "--max-examples", min=1),
    seed: int = typer.Option(0, "--seed"),
    method_arg: list[str] = typer.Option([], "--method-arg", help="Method argument key=value (repeatable)."),
    safety_mix: float = typer.Option(0.0, "--safety-mix", help="Fraction of refusal demonstrations mixed in."),
    dpo_beta: float = typer.Option(0.1, "--dpo-beta"),
    gradient_checkpointing: bool = typer.Option(False, "--gradient-checkpointing"),
    load_in: Optional[str] = typer.Option(None, "--load-in", help="4bit | 8bit (bitsandbytes, CUDA only)."),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda | cuda:N | mps"),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
) -> None:
    """Fine-tune one PEFT adapter (SFT or DPO) on a base model and save it with provenance.

    Example:

        peft-audit train --base smollm2-135m-instruct --method lora --algo sft --data builtin \\
            --max-steps 50 --method-arg r=16 --out adapters/lora-sft
    """
    from pydantic import ValidationError

    from .config import TrainingConfig, VariantSpec
    from .methods import method_module, resolve_method_args
    from .models import load_base
    from .training import train_adapter

    try:
        columns = _parse_pairs(column, "--column")
        training = TrainingConfig(
            data=data, data_split=data_split, columns=columns, max_steps=max_steps, batch_size=batch_size,
            grad_accum=grad_accum, max_seq_len=max_seq_len, max_examples=max_examples, safety_mix=safety_mix,
            dpo_beta=dpo_beta, gradient_checkpointing=gradient_checkpointing, load_in=load_in,
        )
        spec = VariantSpec(
            base_model=base, method=method, method_args=_parse_pairs(method_arg), algo=algo,
            lr=lr if lr is not None else method_module(method).DEFAULT_LR, epochs=epochs, seed=seed,
        )
        resolve_method_args(method, spec.method_args)  # fail on a bad --method-arg before loading the model
        loaded = load_base(base, device=device, load_in=load_in)
        result = train_adapter(
            loaded.model, loaded.tokenizer, spec=spec, training=training, out_dir=out,
            base_fingerprint=loaded.resolved.fingerprint, device=loaded.device, show_progress=not quiet,
        )
    except ValidationError as e:
        _fail("; ".join(f"{'.'.join(map(str, err['loc'])) or 'value'}: {err['msg']}" for err in e.errors()))
    except (ConfigError, ValueError, FileNotFoundError, FileExistsError) as e:
        _fail(user_message(e))
    prov = result.provenance
    console.print(
        f"trainable params: {prov['trainable_params']:,} of {prov['total_params']:,} "
        f"({100 * prov['trainable_params'] / max(prov['total_params'], 1):.4f}%)"
    )
    if result.losses:
        console.print(f"loss: first {result.losses[0]:.4f}, last {result.losses[-1]:.4f} over {prov['steps']} steps "
                      f"in {result.seconds:.1f} s")
    console.print(f"adapter saved to {result.adapter_dir}")


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # python -m peft_audit.cli
    main()
