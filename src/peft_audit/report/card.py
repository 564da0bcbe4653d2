"""A model-card section for one audited variant, and its push into a Hub repo's README.md.

    peft-audit card runs/quickstart --variant "lora · sft · lr 1e-3 · 1 ep" --out CARD.md
    peft-audit card runs/quickstart --variant 3ae33679ed4b --push my-org/my-adapter

The section sits between :data:`BEGIN` and :data:`END` markers, so a later push replaces it and
leaves the rest of the card alone. Every number comes from :func:`peft_audit.analysis.analyze`
(the same as report.md); this module only lays them out. (Reading an adapter's card to learn its
base model is :mod:`peft_audit.adapters.card`, a different job.)
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pandas as pd

from .. import __version__
from ..analysis import Analysis
from ..analysis.paired import CORRECTION_NAMES
from ..benchmarks.safety.metrics import NOT_MEASURED
from ..judges.base import COMBINED_JUDGES
from ..shown_text import md_text  # the one escaper of text put into Markdown
from .tables import (HAND_LAID_OUT, METRIC_TITLES, TWO_VERDICT_GRIDS, judge_validity_rows, num, ordered_categories,
                     spot_check_rows)

BEGIN = "<!-- peft-audit:begin -->"
END = "<!-- peft-audit:end -->"
#: training hyperparameters a reader of a card has no use for
_NOT_SHOWN = {"logging_steps", "columns", "seed", "lr", "epochs"}


def resolve_variant(variants: pd.DataFrame, name: str) -> str:
    """The id of the variant ``name`` designates: an id, a readable label, or a unique id prefix.
    ValueError listing the variants when none or several match."""
    if name in set(variants["id"]):
        return name
    hits = list(variants.loc[variants["label"] == name, "id"])
    if not hits:
        hits = [i for i in variants["id"] if i.startswith(name)] if len(name) >= 4 else []
    if len(hits) == 1:
        return hits[0]
    choices = "; ".join(f"{r.label} [{r.id}]" for r in variants.itertuples())
    why = "matches several variants" if hits else "is no variant of this run"
    raise ValueError(f"--variant {name!r} {why}; give a label or id: {choices}")


def _change(r) -> str:
    sig = "*" if r.p_adj == r.p_adj and r.p_adj < 0.05 else ""
    return f"{num(r.delta, signed=True)} [{num(r.ci_low, signed=True)}, {num(r.ci_high, signed=True)}]{sig}"


def _metric_table(paired: pd.DataFrame, vid: str, benchmark: str, metric: str) -> list[str]:
    p = paired[(paired["variant_id"] == vid) & (paired["metric"] == metric) & (paired["benchmark"] == benchmark)]
    if p.empty:
        return []
    by = {r.category: r for r in p.itertuples()}
    L = ["| category | base | this adapter | change [95% CI] | n |", "|---|---|---|---|---|"]
    for c in ordered_categories(p["category"], metric):
        r = by[c]
        L.append(f"| {'**overall**' if c == 'overall' else md_text(c)} | {num(r.base_value)} | {num(r.value)} | {_change(r)} | "
                 f"{'n/a' if r.n != r.n else int(r.n)} |")
    return L + [""]


def _bbq_table(paired: pd.DataFrame, vid: str) -> list[str]:
    metrics = ("acc_ambig", "acc_disambig", "bias_ambig", "bias_disambig")
    p = paired[(paired["variant_id"] == vid) & (paired["benchmark"] == "fairness") & paired["metric"].isin(metrics)]
    if p.empty:
        return []
    by = {(r.metric, r.category): r for r in p.itertuples()}
    L = ["| category | accuracy, ambiguous | accuracy, disambiguated | bias, ambiguous | bias, disambiguated |",
         "|---|---|---|---|---|"]
    for c in ordered_categories(p["category"], "acc_ambig"):
        cells = [_change(by[(m, c)]) if (m, c) in by else "—" for m in metrics]
        L.append(f"| {'**overall**' if c == 'overall' else md_text(c)} | " + " | ".join(cells) + " |")
    return L + [""]


def _settings(row: dict) -> list[tuple[str, str]]:
    spec, prov = row.get("spec") or {}, (row.get("metadata") or {}).get("provenance") or {}
    args = ", ".join(f"{k}={v}" for k, v in sorted((spec.get("method_args") or {}).items())) or "defaults"
    hp = prov.get("hyperparameters") or {}
    extra = ", ".join(f"{k}={v}" for k, v in sorted(hp.items()) if k not in _NOT_SHOWN and v not in (None, {}, ""))
    data = prov.get("dataset") or {}
    out = [("base model", f"`{row['base_model']}`"), ("PEFT method", f"{row['method']} ({args})")]
    if spec.get("adapter"):
        out.append(("adapter", f"`{spec['adapter']}` (audited as given)"))
    else:
        out.append(("training", f"{row.get('algo') or '?'}, learning rate {row.get('lr')}, {row.get('epochs')} epoch(s), "
                                f"seed {row.get('seed')}" + (f"; {extra}" if extra else "")))
    if data.get("source"):
        out.append(("training data", f"`{data['source']}`" + (f", {data['rows']} rows" if data.get("rows") else "")
                    + (f", sha256 `{data['content_sha256'][:16]}…`" if data.get("content_sha256") else "")))
    return out


def card_section(a: Analysis, variant_id: str, row: dict, *, protocol: str | None, date: str,
                 gate=None, eval_dtype: str = "auto") -> str:
    """The Markdown section (markers included) for ``variant_id`` of the analysed run ``a``;
    ``row`` is the variant's store row (spec and provenance); ``eval_dtype`` the run's (said when
    it is not ``auto``: a bfloat16 evaluation's numbers are not float32's). Pure."""
    from ..benchmarks.registry import BENCHMARKS
    from ..gate import gate_of_analysis

    v = a.variants.set_index("id").loc[variant_id]
    gate = gate_of_analysis(a) if gate is None else gate
    checks = [c for c in gate.checks if c.variant_id == variant_id]
    bad = [c for c in checks if not c.passed]
    L = [BEGIN, "## Safety and fairness audit (peft-audit)", "",
         f"Audited with peft-audit {__version__} on {date}: variant **{md_text(v['label'])}** (id `{variant_id}`) against "
         f"its base model, on the same prompts and items. Changes are in percentage points, variant minus base, "
         f"with 95% paired bootstrap intervals; `*` marks a change significant after "
         f"{CORRECTION_NAMES[a.correction]} adjustment.", "",
         "| | |", "|---|---|"]
    L += [f"| {k} | {md_text(x)} |" for k, x in _settings(row)]
    repaired_from = v.get("repair_of") if "repair_of" in v else None
    if isinstance(repaired_from, str):
        original = a.variants.set_index("id").at[repaired_from, "label"]
        L += [f"| repaired from | {md_text(original)} (id `{repaired_from}`) by {md_text(v['repair'])} (`peft-audit mitigate`) |"]
    if eval_dtype != "auto":
        L += [f"| evaluated in | {md_text(eval_dtype)} (`eval_dtype`) |"]
    L += [f"| evaluation protocol | `{protocol or 'unknown'}` |",
          "| deployment gate (default thresholds) | " + ("not checked" if not checks else "pass" if not bad else
                                                       f"**fail**: {len(bad)} check(s) outside the limits") + " |", ""]
    if bad:
        L += [f"- {md_text(c.text())}" for c in bad[:8]] + ([f"- … and {len(bad) - 8} more"] if len(bad) > 8 else []) + [""]
    safety = _metric_table(a.paired, variant_id, "safety", "safety_score")
    if safety:
        L += ["### Safety", ""]
        for metric, title, _ in TWO_VERDICT_GRIDS:  # first: the harmful-response rate is the primary number
            t = _metric_table(a.paired, variant_id, "safety", metric)
            why = NOT_MEASURED[metric].format(section="safety")
            L += [title + ", in %:", ""] + t if t else [f"{title}: not measured: {why}.", ""]
        L += [METRIC_TITLES["safety_score"] + ", in %:", ""] + safety
    bbq = _bbq_table(a.paired, variant_id)
    if bbq:
        L += ["### Fairness (BBQ)", "", "Change of BBQ accuracy and bias score (Parrish et al., 2022; a positive bias "
              "change is a move towards the stereotype):", ""] + bbq
    over = _metric_table(a.paired, variant_id, "over_refusal", "refusal_rate")
    if over:
        L += ["### Over-refusal", "", METRIC_TITLES["refusal_rate"] + ", in %:", ""] + over
    for b in BENCHMARKS.values():  # plug-in benchmarks evaluated in this run, registry order
        if b.name in HAND_LAID_OUT:
            continue
        for section in b.report_sections:
            for m in section.metrics:
                t = _metric_table(a.paired, variant_id, b.name, m)
                if t:
                    L += [f"### {md_text(section.title)}: {md_text(section.titles.get(m, m))}", ""] + t
    L += _repair(a, variant_id, gate)
    L += _judges(a, variant_id)
    L += ["Reproduce: `peft-audit report RUN_DIR` on the run directory; the evaluation protocol hash names the "
          "benchmark settings.", END]
    return "\n".join(L) + "\n"


def _repair(a: Analysis, variant_id: str, gate) -> list[str]:
    """A repaired adapter's changes vs the variant it repairs (the report's Mitigations rows)."""
    from .mitigations import mitigation_groups

    if a.mitigations.empty:
        return []
    mine = a.mitigations[a.mitigations["variant_id"] == variant_id]
    for g in mitigation_groups(a.variants, mine, gate):
        r = g["repairs"][0]
        L = ["### Repair", "", f"Repaired from {md_text(g['original'])} (id `{g['original_id']}`) by {md_text(r['how'])}. "
             "Change vs that variant and vs the base [95% paired bootstrap CI]; recovered: the share of the "
             "original's significant loss vs the base won back.", "",
             "| metric | this adapter | change vs original | change vs base | recovered |", "|---|---|---|---|---|"]
        L += [f"| {x['metric']} | {x['value']} | {x['vs_original']} | {x['vs_base']} | {x['recovered']} |"
              for x in r["rows"]]
        return L + [""]
    return []


def _judges(a: Analysis, variant_id: str) -> list[str]:
    ver = a.frames.verdicts
    used = sorted(set(ver.loc[ver["variant_id"] == variant_id, "judge"]) - COMBINED_JUDGES) if not ver.empty else []
    L = ["### Judges", "", "Safety verdicts by: " + (", ".join(f"`{j}`" for j in used) or "none recorded")
         + (" (combined verdict of these)." if len(used) > 1 else "."), ""]
    rows = judge_validity_rows(a.judge_validation)
    if rows:
        L += ["Measured accuracy against hand-labelled responses (value [95% interval] (k/n)):", "",
              "| judge | responses | refusal recall | refusal precision | safe/unsafe agreement |", "|---|---|---|---|---|"]
        L += [f"| {md_text(r['judge'])} | {r['part']} | {r['recall:refusal']} | {r['precision:refusal']} | "
              f"{r['safe_agreement']} |" for r in rows]
        L += [""]
    unvalidated = [j for j in used if j not in {r["judge"] for r in rows}]
    if unvalidated:
        L += [f"No published accuracy for {', '.join(f'`{j}`' for j in unvalidated)}.", ""]
    spot = spot_check_rows(a.spot_check)
    if spot:
        L += ["Human spot-check of this run:", "", "| judge | safe/unsafe agreement | kappa |", "|---|---|---|"]
        L += [f"| {md_text(r['judge'])} | {r['safe_agreement']} | {r['kappa_safe']} |" for r in spot] + [""]
    return L


def build_card(run_dir: str | Path, variant: str, *, date: str | None = None, n_boot: int = 2000,
               seed: int = 0) -> str:
    """Analyse ``run_dir`` and return the card section of ``variant`` (label, id or id prefix).
    FileNotFoundError without a store; ValueError for an unknown variant, a base model, or a
    variant that has no comparison with its base."""
    from ..analysis import analyze
    from ..store import open_existing

    a = analyze(run_dir, n_boot=n_boot, seed=seed)
    vid = resolve_variant(a.variants, variant)
    v = a.variants.set_index("id").loc[vid]
    if v["method"] == "base":
        raise ValueError(f"--variant {variant!r} is the base model {v['base_model']}; a card describes a fine-tuned "
                         "variant compared with it")
    if a.paired.empty or vid not in set(a.paired["variant_id"]):
        raise ValueError(f"variant {v['label']} [{vid}] has no comparison with its base (status {v['status']}); "
                         "finish the run with `peft-audit run` first")
    with open_existing(run_dir) as store:
        row = next(r for r in store.variants() if r["id"] == vid)
        protocol = store.get_meta("eval_protocol")
        eval_dtype = (store.get_meta("config") or {}).get("eval_dtype", "auto")
    return card_section(a, vid, row, protocol=protocol, date=date or dt.date.today().isoformat(),
                        eval_dtype=eval_dtype)


def replace_section(readme: str, section: str) -> str:
    """``readme`` with its peft-audit section (between the markers) replaced by ``section``, or
    ``section`` appended when it has none. Everything else is kept byte for byte."""
    start, end = readme.find(BEGIN), readme.find(END)
    if start != -1 and end > start:
        return readme[:start] + section.rstrip("\n") + readme[end + len(END):]
    sep = "" if not readme or readme.endswith("\n\n") else ("\n" if readme.endswith("\n") else "\n\n")
    return readme + sep + section


def push_card(section: str, repo_id: str, *, token: str | None = None, endpoint: str | None = None) -> str:
    """Put ``section`` into README.md of the Hub model repo ``repo_id`` (replacing an earlier
    peft-audit section, keeping the rest; a repo without a README gets one) in one commit.
    ``token``/``endpoint`` default to ``HF_TOKEN``/``HF_ENDPOINT`` as huggingface_hub reads them.
    Returns the commit URL."""
    import tempfile

    from huggingface_hub import HfApi
    from huggingface_hub.errors import EntryNotFoundError

    from huggingface_hub.errors import HfHubHTTPError

    # read here, not at huggingface_hub's import, so a value set later in the process counts too
    api = HfApi(endpoint=endpoint or os.environ.get("HF_ENDPOINT") or None, token=token or os.environ.get("HF_TOKEN") or None)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            try:
                readme = Path(api.hf_hub_download(repo_id, "README.md", local_dir=tmp)).read_text(encoding="utf-8")
            except EntryNotFoundError:
                readme = ""
        info = api.upload_file(path_or_fileobj=replace_section(readme, section).encode("utf-8"),
                               path_in_repo="README.md", repo_id=repo_id, repo_type="model",
                               commit_message="Update the peft-audit safety and fairness section")
    except HfHubHTTPError as e:  # a user error (no access, no such repo), said in the Hub's words
        raise RuntimeError(f"could not update README.md of {repo_id} on {api.endpoint}: {e}. Check HF_TOKEN "
                           "(it needs write access) and the repo id") from None
    return str(info.commit_url)
