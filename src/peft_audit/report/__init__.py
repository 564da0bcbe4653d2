"""Reports of a run: report.md, self-contained report.html, and json/csv/parquet exports.

Rendering only; every number comes from :func:`peft_audit.analysis.analyze`.
"""

from __future__ import annotations

from pathlib import Path

from .. import faults
from ..analysis import Analysis, analyze
from ..store import open_existing
from ..summary import SUMMARY_FILE, write_summary
from ..textio import write_text_atomic
from .exports import write_csv, write_json, write_parquet
from .html import render_html
from .markdown import render_markdown

FORMATS = ("md", "html", "json", "csv", "parquet")

__all__ = ["FORMATS", "finish_run", "write_reports"]


def finish_run(run_dir: str | Path) -> list[str]:
    """What the end of ``peft-audit run`` writes and says: report.md and report.html from one
    analysis of the run, and the verdict lines for the terminal (:mod:`peft_audit.report.verdict`),
    all three with one evaluation of the gate under its default thresholds."""
    from ..gate import gate_of_analysis
    from .verdict import verdict_lines

    run_dir = Path(run_dir)
    a = analyze(run_dir)
    gate = gate_of_analysis(a)
    write_reports(run_dir, formats=["md", "html"], analysis=a, gate=gate)
    return verdict_lines(a, run_dir / "report.html", gate)


def write_reports(run_dir: str | Path, formats: list[str] | tuple[str, ...] = ("md", "html", "json"),
                  correction: str = "holm", *, n_boot: int = 2000, seed: int = 0,
                  analysis: Analysis | None = None, gate=None, out_dir: str | Path | None = None) -> list[Path]:
    """Analyse ``RUN_DIR/results.sqlite`` and write the requested formats into ``RUN_DIR``, or
    into ``out_dir`` (created if needed) when given: a read-only or full run directory, an archive.

    md -> report.md; html -> report.html; json -> analysis.json and summary.json
    (:func:`peft_audit.summary.write_summary`); csv/parquet -> analysis/<table>.<ext>.
    ``analysis`` is the run's analysis when the caller already made it (same ``correction``);
    it is made here otherwise. ``gate``: the overview's gate result over it (default: evaluated
    here, once for both reports).
    Raises ValueError for an unknown format or correction, FileNotFoundError without a store,
    NotADirectoryError when ``out_dir`` is a file; a failed write raises an OSError naming the
    file and leaves no temporary file behind (:func:`peft_audit.textio.atomic_output`).
    """
    bad = [f for f in formats if f not in FORMATS]
    if bad:
        raise ValueError(f"unknown report format(s) {bad}; choose from {', '.join(FORMATS)}")
    if correction not in ("holm", "bh"):
        raise ValueError(f"unknown --correction {correction!r}; choose holm or bh")
    run_dir = Path(run_dir)
    dest = run_dir if out_dir is None else Path(out_dir)
    if dest.exists() and not dest.is_dir():
        raise NotADirectoryError(f"{dest}: is a file; --out takes the directory to write the reports into")
    a = analysis if analysis is not None else analyze(run_dir, correction=correction, n_boot=n_boot, seed=seed)
    title = run_dir.resolve().name
    if gate is None and {"md", "html"} <= set(formats):
        from ..gate import gate_of_analysis

        gate = gate_of_analysis(a)
    out: list[Path] = []
    dest.mkdir(parents=True, exist_ok=True)
    if "md" in formats:
        p = dest / "report.md"
        write_text_atomic(p, render_markdown(a, title, gate))
        out.append(p)
        faults.point("report.markdown_written")
    if "html" in formats:
        p = dest / "report.html"
        write_text_atomic(p, render_html(a, title, gate))
        out.append(p)
    if "json" in formats:
        out.append(write_json(a, dest / "analysis.json"))
        with open_existing(run_dir) as store:  # the one summary.json writer (peft_audit.summary)
            out.append(write_summary(store, dest / SUMMARY_FILE))
    if "csv" in formats:
        out += write_csv(a, dest / "analysis")
    if "parquet" in formats:
        out += write_parquet(a, dest / "analysis")
    return out
