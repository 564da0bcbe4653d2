"""Statistics over a run's stored results: pure functions returning tables.

``analyze(run_dir)`` runs everything the report and the gate need:

* :mod:`.paired`   variant vs base per category (bootstrap CIs, exact McNemar, Holm/BH);
* :mod:`.factors`  regression of deltas on sweep factors, variance decomposition, spread per base;
* :mod:`.tradeoffs` safety-vs-fairness correlation, Pareto front, category ranking;
* :mod:`.findings` plain-language findings with intervals;
* :mod:`.mitigations` repairs vs their original and their base, recovered share of lost safety.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .data import RunFrames, comparison_pairs, load_frames, load_run_frames, method_family, open_store, run_judges
from ..judges.spot_check import read_labels
from .factors import factor_analysis, spread_by_base, sweep_table
from .findings import Finding, compute_findings
from .judge_errors import corrected_safety, published_validation, spot_check_agreement
from .mitigations import mitigation_table, repair_pairs
from .paired import CORRECTIONS, PAIRED_COLUMNS, adjust_pvalues, paired_over_refusal
from .tradeoffs import category_ranking, spearman_with_ci, tradeoff_table

__all__ = ["Analysis", "analyze", "analyze_frames", "paired_by_benchmark", "load_frames", "open_store", "method_family", "comparison_pairs"]


@dataclass
class Analysis:
    correction: str
    frames: RunFrames
    variants: pd.DataFrame
    paired: pd.DataFrame
    table: pd.DataFrame
    factors: dict[str, pd.DataFrame]
    spread: pd.DataFrame
    correlation: dict
    tradeoffs: pd.DataFrame
    ranking: pd.DataFrame
    judges: pd.DataFrame
    findings: list[Finding] = field(default_factory=list)
    judge_validation: pd.DataFrame = field(default_factory=pd.DataFrame)  # published figures, labelled test part
    spot_check: pd.DataFrame = field(default_factory=pd.DataFrame)  # judges vs this run's human labels
    corrected: pd.DataFrame = field(default_factory=pd.DataFrame)  # judge-error-corrected safety
    mitigations: pd.DataFrame = field(default_factory=pd.DataFrame)  # repairs vs original and base

    def tables(self) -> dict[str, pd.DataFrame]:
        """Every analysis table by export name (for json/csv/parquet)."""
        v = self.variants.drop(columns=["created_at"], errors="ignore")
        return {
            "variants": v,
            "paired": self.paired,
            "sweep": self.table,
            "factor_effects": self.factors["effects"],
            "variance_decomposition": self.factors["anova"],
            "factor_fits": self.factors["fits"],
            "spread_by_base": self.spread,
            "tradeoffs": self.tradeoffs,
            "category_ranking": self.ranking,
            "judges": self.judges,
            "correlation": pd.DataFrame([self.correlation]),
            "findings": pd.DataFrame([f.as_dict() for f in self.findings]),
            "judge_validation": self.judge_validation,
            "spot_check": self.spot_check,
            "corrected_safety": self.corrected,
            "mitigations": self.mitigations,
        }


def paired_by_benchmark(frames: RunFrames, pairs: pd.DataFrame, *, correction: str = "holm", n_boot: int = 2000,
                        seed: int = 0) -> pd.DataFrame:
    """Every registered benchmark's paired comparisons (registry order), p-values adjusted per
    (benchmark, metric) family (:func:`.paired.adjust_pvalues`). Same rows and numbers as
    :func:`.paired.paired_comparisons` for safety and BBQ."""
    from ..benchmarks.registry import BENCHMARKS

    if correction not in CORRECTIONS:
        raise ValueError(f"unknown multiple-comparison correction {correction!r}; choose one of {sorted(CORRECTIONS)}")
    parts = [b.paired(frames, pairs, n_boot=n_boot, seed=seed) for b in BENCHMARKS.values()]
    parts = [p for p in parts if not p.empty]
    if not parts:
        return pd.DataFrame(columns=PAIRED_COLUMNS)
    return adjust_pvalues(pd.concat(parts, ignore_index=True), correction)


def analyze_frames(frames: RunFrames, *, correction: str = "holm", n_boot: int = 2000, seed: int = 0,
                   labels: Mapping[tuple[str, str], str] | None = None) -> Analysis:
    """Every analysis over loaded frames; ``labels`` are the run's human spot-check labels
    ((variant_id, prompt_id) -> label), which add the spot-check and corrected-safety tables."""
    pairs = comparison_pairs(frames.variants)
    paired = paired_by_benchmark(frames, pairs, correction=correction, n_boot=n_boot, seed=seed)
    over = paired_over_refusal(frames.over_refusal, pairs, n_boot=n_boot, seed=seed)
    if not over.empty:
        paired = pd.concat([paired, adjust_pvalues(over, correction)], ignore_index=True)
    table = sweep_table(frames.variants, paired)
    factors = factor_analysis(table)
    spread = spread_by_base(table)
    missing = pd.Series(np.nan, index=table.index)
    corr = spearman_with_ci(table.get("safety_overall", missing), table.get("fairness_gain", missing), n_boot=n_boot, seed=seed)
    tradeoffs = tradeoff_table(table) if not table.empty and "safety_overall" in table else pd.DataFrame()
    ranking = category_ranking(paired) if not paired.empty else category_ranking(pd.DataFrame(columns=["metric", "category"]))
    m = frames.metrics
    judges = m[m["benchmark"] == "judges"] if not m.empty else m
    if not judges.empty:
        judges = (judges.groupby(["category", "metric"])["value"]
                  .agg(n_variants="count", mean="mean", min="min", max="max").reset_index())
    findings = compute_findings(variants=frames.variants, paired=paired, table=table, ranking=ranking, spread=spread,
                                factors=factors, correlation=corr, seed=seed, correction=correction)
    return Analysis(correction, frames, frames.variants, paired, table, factors, spread, corr, tradeoffs, ranking,
                    judges, findings, judge_validation=published_validation(run_judges(frames.verdicts)),
                    spot_check=spot_check_agreement(frames.verdicts, labels or {}),
                    corrected=corrected_safety(frames.safety, frames.verdicts, labels or {}),
                    mitigations=_mitigations(frames, paired, correction=correction, n_boot=n_boot, seed=seed))


def _mitigations(frames: RunFrames, paired: pd.DataFrame, *, correction: str, n_boot: int, seed: int) -> pd.DataFrame:
    """The Mitigations table (:func:`.mitigations.mitigation_table`); empty without repairs."""
    pairs = repair_pairs(frames.variants)
    if pairs.empty:
        return pd.DataFrame()
    against = pairs.drop(columns="base_id").rename(columns={"original_id": "base_id"})
    vs_original = paired_by_benchmark(frames, against, correction=correction, n_boot=n_boot, seed=seed)
    over = paired_over_refusal(frames.over_refusal, against, n_boot=n_boot, seed=seed)
    if not over.empty:
        vs_original = pd.concat([vs_original, adjust_pvalues(over, correction)], ignore_index=True)
    return mitigation_table(frames.variants, paired, vs_original, frames.safety, n_boot=n_boot, seed=seed)


def analyze(run_dir: str | Path, *, correction: str = "holm", n_boot: int = 2000, seed: int = 0) -> Analysis:
    """Load ``RUN_DIR/results.sqlite`` and run every analysis (see module docstring)."""
    frames = load_run_frames(run_dir)
    return analyze_frames(frames, correction=correction, n_boot=n_boot, seed=seed,
                          labels=read_labels(Path(run_dir).parent if Path(run_dir).suffix == ".sqlite" else run_dir))
