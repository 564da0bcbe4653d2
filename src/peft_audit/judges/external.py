"""The judges measured on human-labelled sets written and labelled by others, beside field references.

    python -m peft_audit.judges.external --xstest xstest.jsonl --gptfuzz gptfuzz_eval.jsonl \
        --harmbench harmbench_val.jsonl [--judges refusal,keyword,harm] [--out FILE]

The project's own labelled set (:mod:`.validate`) was labelled by the judge's author; these sets
were not (STYLE 11: a judge is validated on data labelled by others too). Each named judge is
built from the registry by name (so a judge added there, such as ``harm``, is measured without
this module importing it); by default ``refusal``, ``keyword`` and ``harm`` when registered.

Sets (converted to one JSONL row per response; their rows are third-party text and never enter
the repository, so their paths are arguments):

* ``xstest``: XSTest v2 completions of five models with adjudicated labels (Röttger et al.,
  NAACL 2024), ``label`` refusal/compliance (partial refusal counted as compliance). Also shown
  in two halves split by prompt (:func:`xstest_half`): the refusal judge's rules were tuned on
  the ``dev`` half only, so the ``heldout`` half is the honest figure.
* ``gptfuzz``: GPTFuzz jailbreak responses (Yu et al. 2023), ``label`` safe/unsafe.
* ``harmbench``: HarmBench's classifier validation set (Mazeika et al., ICML 2024), request in
  ``behavior``, ``label`` safe/unsafe by majority of three annotators. Test only: nothing is
  tuned on it. Its rows carry the verdicts of HarmBench's classifiers and Llama Guard, whose
  agreement is computed here from those columns next to the figures HarmBench published.

Each cell: safe/unsafe agreement with its Wilson 95% interval, Cohen's kappa with its interval,
n, and how the judge was read (:func:`.validation.verdict_agreement`: directly, or a refusal
judge against harm labels as a proxy). Output: :data:`EXTERNAL_FILE` (JSON) and a Markdown
table on stdout.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from .validation import agreement_table, verdict_agreement

#: The published external figures (written by this module's ``main``).
EXTERNAL_FILE = "data/external_validation.json"
DEFAULT_JUDGES = ("refusal", "keyword", "harm")  # harm only when the registry has it
#: The set parts a report shows (the XSTest dev half is left out: the refusal rules were tuned on it).
REPORTED_PARTS = {"xstest": "XSTest (all)", "xstest_heldout": "XSTest held-out half", "gptfuzz": "GPTFuzz",
                  "harmbench": "HarmBench val (test only)"}


@dataclass(frozen=True)
class ExternalSet:
    """How to read one external set: its request and label columns, and where it comes from."""

    prompt_column: str
    label_column: str
    source: str


SETS: dict[str, ExternalSet] = {
    "xstest": ExternalSet("prompt", "label", "XSTest v2 completions (Röttger et al., NAACL 2024), CC BY 4.0"),
    "gptfuzz": ExternalSet("prompt", "label", "GPTFuzz responses_labeled/evaluate.csv (Yu et al. 2023), MIT"),
    "harmbench": ExternalSet("behavior", "label", "HarmBench text_behaviors_val_set (Mazeika et al., ICML 2024), MIT; "
                                                  "test only"),
}
#: Field references: (name, figure published on the set, column of the set holding its verdicts
#: (1 = unsafe) or None, citation).
REFERENCES: dict[str, list[tuple[str, float, str | None, str]]] = {
    "harmbench": [
        ("HarmBench-Llama-2-13b-cls", 0.909, "cls_llama2_13b", "Mazeika et al. 2024"),
        ("HarmBench-Mistral-7b-val-cls", 0.905, "cls_mistral_7b", "Mazeika et al. 2024"),
        ("Llama Guard (v1)", 0.673, "llama_guard", "Mazeika et al. 2024"),
    ],
    "xstest": [
        ("GPT-4 auto-evaluation", 0.851, None, "Röttger et al. 2024"),
        ("XSTest string match", 0.871, None, "Röttger et al. 2024"),
    ],
}


def xstest_half(prompt: str) -> str:
    """``"dev"`` when the SHA-256 of the prompt's UTF-8 text is even, else ``"heldout"``: a split
    by prompt, so the five models' answers to one prompt sit on one side."""
    return "dev" if int(hashlib.sha256(prompt.encode("utf-8")).hexdigest(), 16) % 2 == 0 else "heldout"


def cell(agreement: dict) -> dict:
    """The figures of one (judge, set) cell from :func:`.validation.verdict_agreement`'s output."""
    if agreement["rows"] is None:
        return {"basis": agreement["basis"], "note": agreement["note"], "n": 0}
    by = {r["metric"]: r for r in agreement["rows"]}
    safe, kappa = by["safe_agreement"], by["kappa_safe"]
    return {"basis": agreement["basis"], "n": safe["n"],
            "safe_agreement": {k: safe[k] for k in ("value", "ci_low", "ci_high", "k", "n")},
            "kappa": {k: kappa[k] for k in ("value", "ci_low", "ci_high")}}


def set_parts(name: str, rows: list[dict]) -> dict[str, list[dict]]:
    """The parts of a set that get a column: the whole set, and for XSTest its two halves."""
    if name != "xstest":
        return {name: rows}
    column = SETS[name].prompt_column
    return {name: rows, **{f"xstest_{half}": [r for r in rows if xstest_half(r[column]) == half]
                           for half in ("dev", "heldout")}}


def measure(judges: list, tables: dict[str, list[dict]]) -> dict:
    """Each judge's cell per set part, and the reference classifiers' cells where the set holds
    their verdicts. ``tables``: set name -> rows (dicts of strings)."""
    doc: dict = {"sets": {}, "judges": {j.name: {} for j in judges}, "references": {}}
    for name, rows in tables.items():
        spec = SETS[name]
        for part, part_rows in set_parts(name, rows).items():
            doc["sets"][part] = {"n": len(part_rows), "source": spec.source}
            human = [r[spec.label_column] for r in part_rows]
            pairs = [(r[spec.prompt_column], r["response"]) for r in part_rows]
            for judge in judges:
                # a judge trained on this set publishes its figure with the set left out instead
                held = getattr(judge, "held_out_agreement", lambda _: None)(part)
                doc["judges"][judge.name][part] = cell(held or verdict_agreement(human, judge.judge_batch(pairs)))
        for ref, published, column, cite in REFERENCES.get(name, []):
            entry = {"set": name, "published_safe_agreement": published, "citation": cite}
            if column is not None and rows and column in rows[0]:
                verdicts = ["unsafe" if str(r[column]).strip() == "1" else "safe" for r in rows]
                labels = [r[spec.label_column] for r in rows]
                entry["computed"] = cell({"basis": "direct", "rows": agreement_table(labels, verdicts), "note": ""})
            doc["references"][ref] = entry
    return doc


def cell_text(c: dict | None) -> str:
    """``0.917 [0.899, 0.931], κ 0.83 [0.80, 0.87], n=1115`` for one cell, ``(proxy)`` appended
    when a refusal judge was read against harm labels; the note (or n/a) when there is no figure."""
    if not c or "safe_agreement" not in c:
        return "n/a" if not c else c.get("note") or "n/a"
    s, k = c["safe_agreement"], c["kappa"]
    text = f"{s['value']:.3f} [{s['ci_low']:.3f}, {s['ci_high']:.3f}]"
    if k["value"] is not None:
        text += f", κ {k['value']:.2f} [{k['ci_low']:.2f}, {k['ci_high']:.2f}]"
    text += f", n={s['n']}"
    if c["basis"].startswith("held out"):
        text += " (held out: trained without this set)"
    return text + (" (proxy)" if c["basis"].startswith("proxy") else "")


def table_rows(doc: dict, parts: list[str], judges: list[str] | None = None) -> list[dict]:
    """Rows of the external table, ``{"name", "cells": [text per part]}``: one per judge of
    ``judges`` (default: every judge measured) then one per field reference (the figure it
    published, and the one computed from its verdicts on the set where the set holds them)."""
    rows = [{"name": j, "cells": [cell_text(doc["judges"][j].get(p)) for p in parts]}
            for j in (doc["judges"] if judges is None else judges)]
    for ref, entry in doc["references"].items():
        computed = f"; on these rows {cell_text(entry['computed'])}" if "computed" in entry else ""
        published = f"{entry['published_safe_agreement']:.3f} published{computed}"
        rows.append({"name": f"{ref} ({entry['citation']}, reference)",
                     "cells": [published if p == entry["set"] else "" for p in parts]})
    return rows


def markdown(doc: dict) -> str:
    """The Markdown table of :func:`measure`'s output: judges and references × set parts."""
    parts = list(doc["sets"])
    lines = ["| judge | " + " | ".join(parts) + " |", "|---" * (len(parts) + 1) + "|"]
    lines += [f"| {r['name']} | " + " | ".join(r["cells"]) + " |" for r in table_rows(doc, parts)]
    lines += ["", "Safe/unsafe agreement with the human labels [Wilson 95% interval], Cohen's κ [95% interval], n. "
              "(proxy): a refusal judge read against safe/unsafe labels as refusal ⇒ safe, compliance ⇒ unsafe. "
              "XSTest labels are refusal vs compliance (partial refusal counted as compliance)."]
    return "\n".join(lines)


def published_external() -> dict | None:
    """The shipped external figures (:data:`EXTERNAL_FILE`), or None."""
    path = resources.files("peft_audit.judges").joinpath(EXTERNAL_FILE)
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def default_judge_names() -> list[str]:
    """:data:`DEFAULT_JUDGES` that the registry has."""
    from .registry import JUDGES

    return [n for n in DEFAULT_JUDGES if n in JUDGES]


def build_named(names: list[str]) -> list:
    """The judges of ``names`` from the registry, through the same spec validation as a config."""
    from ..config import SafetyConfig
    from .registry import build_judges

    return build_judges(SafetyConfig.model_validate({"judges": [{"name": n} for n in names]}).judges)


def main(argv: list[str] | None = None) -> int:
    from .judge_file import read_table

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name in SETS:
        parser.add_argument(f"--{name}", type=Path, help=f"path of the {SETS[name].source} JSONL")
    parser.add_argument("--judges", help="comma list of registered judges (default: refusal, keyword, harm if "
                                         "registered)")
    parser.add_argument("--out", type=Path, help=f"JSON to write (default: the package's {EXTERNAL_FILE})")
    args = parser.parse_args(argv)
    paths = {name: getattr(args, name) for name in SETS if getattr(args, name) is not None}
    if not paths:
        parser.error("give at least one of " + ", ".join(f"--{n}" for n in SETS))
    names = [n.strip() for n in args.judges.split(",") if n.strip()] if args.judges else default_judge_names()
    judges = build_named(names)
    tables = {name: read_table(path).to_dict("records") for name, path in paths.items()}
    doc = measure(judges, tables)
    doc["inputs"] = {name: path.name for name, path in paths.items()}
    out = args.out or Path(str(resources.files("peft_audit.judges").joinpath(EXTERNAL_FILE)))
    out.write_text(json.dumps(doc, indent=1, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")
    print(markdown(doc))
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
