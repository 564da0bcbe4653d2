"""Read a run's results store into the pandas frames every analysis function takes.

The frames (one row per ...):

* ``variants``: variant (id, base_model, method, family, algo, lr, epochs, seed, label, base_id,
  status, error);
* ``safety``: safety prompt of a variant with the verdict used for scoring (``judge='combined'``
  when present, else the alphabetically first judge); ``safe`` is 1.0 / 0.0 / NaN (unscored).
  A response that any judge labelled ``incoherent`` is ``label='incoherent'``, ``safe=0.0``
  whatever the chosen verdict says (degenerate output is never safe; the rule of
  :func:`peft_audit.judges.combine`, applied here too for stores written before it). Beside it the
  two verdicts as 1.0 / 0.0 / NaN outcomes: ``harmful`` (the ``combined-harm`` verdict,
  :func:`~peft_audit.benchmarks.safety.metrics.harmful`; NaN throughout where no harm judge was
  configured) and ``refused`` (the ``combined`` verdict's refusal verdict,
  :func:`~peft_audit.benchmarks.safety.metrics.declined`; NaN throughout in stores written before
  it was recorded);
* ``verdicts``: every judge's verdict (for the sample browser);
* ``over_refusal``: over-refusal prompt of a variant with its verdict;
* ``fairness``: BBQ item of a variant (prediction and bias-target indices);
* ``metrics``: the stored metrics table as written by the pipeline;
* ``samples``: the per-item rows of every other (plug-in) benchmark, as stored (variant_id,
  benchmark, sample_id, category, payload JSON); :meth:`RunFrames.items` spreads one benchmark's
  payload into columns.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..benchmarks.safety.metrics import declined_each, harmful
from ..judges.base import COMBINED, COMBINED_HARM, COMBINED_JUDGES
from ..config import RepairSpec
from ..methods import is_prompt_learning
from ..store import Store, open_existing
from ..sweep.plan import variant_labels


#: columns of ``RunFrames.samples`` (the store's generic samples table)
SAMPLE_FRAME_COLUMNS = ["variant_id", "benchmark", "sample_id", "category", "payload"]


def method_family(method: str) -> str:
    """'base' for the base model, 'prompt-based' for soft-prompt methods, 'unknown' when the
    method is not known, else 'adapter' (LoRA, IA3 and other weight-space adapters)."""
    if method == "base":
        return "base"
    if not method or method == "unknown":  # e.g. an adapter audited from disk whose config could not be read
        return "unknown"
    try:
        return "prompt-based" if is_prompt_learning(method) else "adapter"
    except ValueError:  # a method this release does not train (e.g. an audited AdaLoRA adapter)
        return "adapter"


@dataclass
class RunFrames:
    variants: pd.DataFrame
    safety: pd.DataFrame
    verdicts: pd.DataFrame
    over_refusal: pd.DataFrame
    fairness: pd.DataFrame
    metrics: pd.DataFrame
    samples: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=SAMPLE_FRAME_COLUMNS))
    #: the benchmarks the run's config enables (:func:`enabled_benchmarks`); None: not known
    enabled: frozenset[str] | None = None

    def items(self, benchmark: str) -> pd.DataFrame:
        """One row per (variant, item) of plug-in ``benchmark``: variant_id, sample_id, category
        and one column per key of the stored payload (empty frame with the first three when none)."""
        rows = self.samples[self.samples["benchmark"] == benchmark]
        if rows.empty:
            return pd.DataFrame(columns=["variant_id", "sample_id", "category"])
        payload = pd.DataFrame([json.loads(x) for x in rows["payload"]], index=rows.index)
        payload = payload.drop(columns=[c for c in ("variant_id", "sample_id", "category") if c in payload])
        return pd.concat([rows[["variant_id", "sample_id", "category"]], payload], axis=1).reset_index(drop=True)

    def restricted_to(self, variant_ids) -> "RunFrames":
        """The same frames holding only the rows of ``variant_ids`` (variants too)."""
        ids = set(variant_ids)

        def keep(df: pd.DataFrame, col: str = "variant_id") -> pd.DataFrame:
            return df[df[col].isin(ids)] if col in df else df

        return RunFrames(keep(self.variants, "id"), keep(self.safety), keep(self.verdicts), keep(self.over_refusal),
                         keep(self.fairness), keep(self.metrics), keep(self.samples), self.enabled)


def open_store(run_dir: str | Path) -> Store:
    """Open ``RUN_DIR/results.sqlite`` (or a path to the .sqlite file itself) for reading.

    Raises FileNotFoundError naming the path when there is no store, rather than creating one.
    """
    return open_existing(run_dir)


def load_run_frames(run_dir: str | Path) -> "RunFrames":
    """:func:`load_frames` of ``RUN_DIR/results.sqlite``, the store closed afterwards."""
    store = open_store(run_dir)
    try:
        return load_frames(store)
    finally:
        store.close()


def _one_verdict_per_prompt(verdicts: pd.DataFrame) -> pd.DataFrame:
    # 'combined' is the pipeline's final call; without it fall back to a single, stable judge
    # (never the harm verdict, which has a column of its own).
    v = verdicts[verdicts["judge"] != COMBINED_HARM]
    v = v.assign(_pref=(verdicts["judge"] != "combined").astype(int))
    v = v.sort_values(["variant_id", "prompt_id", "_pref", "judge"], kind="stable")
    return v.drop_duplicates(["variant_id", "prompt_id"]).drop(columns="_pref")


def _base_first(variants: pd.DataFrame) -> pd.DataFrame:
    """Order rows as each base model followed by its fine-tuned variants (creation order within)."""
    group = variants["base_id"].where(variants["method"] != "base", variants["id"]).fillna(variants["id"])
    first = {g: i for i, g in reversed(list(enumerate(group)))}
    key = pd.DataFrame({"g": group.map(first), "is_ft": (variants["method"] != "base").astype(int),
                        "pos": range(len(variants))}, index=variants.index)
    return variants.loc[key.sort_values(["g", "is_ft", "pos"]).index].reset_index(drop=True)


def load_frames(store: Store) -> RunFrames:
    """All frames of a store; empty tables give empty frames with their columns."""
    conn = store.conn
    variants = pd.read_sql_query(
        "SELECT id, base_model, method, algo, lr, epochs, seed, label, base_id, status, error, created_at, spec_json "
        "FROM variants ORDER BY created_at, id",
        conn,
    )
    variants["family"] = variants["method"].map(method_family)
    specs = [{**json.loads(s), **{k: v for k, v in r.items() if k != "spec_json"}}
             for s, r in zip(variants["spec_json"], variants.to_dict("records"))]
    names = variant_labels(specs)
    # a repaired variant's provenance (peft-audit mitigate): its original's id and how it was repaired
    variants["repair_of"] = [s.get("repair_of") for s in specs]
    variants["repair"] = [RepairSpec.model_validate(s["repair"]).text() if s.get("repair") else None for s in specs]
    variants = variants.drop(columns="spec_json")
    variants["label"] = variants["id"].map(names)  # the one readable name (config label when given)
    variants = _base_first(variants)
    samples = pd.read_sql_query(
        "SELECT variant_id, prompt_id, benchmark, category, prompt, response FROM safety_samples", conn
    )
    verdicts = pd.read_sql_query(
        "SELECT variant_id, prompt_id, judge, label, safe, score, rationale, refused FROM verdicts", conn
    )
    chosen = _one_verdict_per_prompt(verdicts)[["variant_id", "prompt_id", "judge", "label", "safe", "refused"]]
    incoherent = verdicts.loc[verdicts["label"] == "incoherent", ["variant_id", "prompt_id"]].drop_duplicates()
    hit = chosen.set_index(["variant_id", "prompt_id"]).index.isin(incoherent.set_index(["variant_id", "prompt_id"]).index)
    chosen = chosen.assign(label=chosen["label"].where(~hit, "incoherent"),
                           safe=pd.to_numeric(chosen["safe"], errors="coerce").where(~hit, 0.0))
    # the refusal outcome of the combined verdicts, variant by variant (declined_each: NaN where a
    # variant has no refusal verdict at all)
    is_combined = chosen["judge"] == COMBINED
    outcome = pd.Series(np.nan, index=chosen.index)
    for _, g in chosen[is_combined].groupby("variant_id"):
        outcome[g.index] = declined_each(zip(g["label"], g["refused"]))
    chosen = chosen.assign(refused=outcome)
    harm = verdicts.loc[verdicts["judge"] == COMBINED_HARM, ["variant_id", "prompt_id", "label"]]
    harm = harm.assign(harmful=harm["label"].map(harmful).astype(float)).drop(columns="label")
    joined = samples.merge(chosen, on=["variant_id", "prompt_id"], how="left")
    joined = joined.merge(harm, on=["variant_id", "prompt_id"], how="left")
    for col in ("safe", "refused", "harmful"):
        joined[col] = pd.to_numeric(joined[col], errors="coerce").astype(float)
    safety = joined[joined["benchmark"] == "safety"].reset_index(drop=True)
    over = joined[joined["benchmark"] == "over_refusal"].reset_index(drop=True)
    fairness = pd.read_sql_query(
        "SELECT variant_id, item_id, category, context_condition, question_polarity, label, target_index, "
        "unknown_index, pred_index FROM fairness_samples",
        conn,
    )
    metrics = pd.read_sql_query("SELECT * FROM metrics", conn)
    plugins = pd.read_sql_query(
        "SELECT variant_id, benchmark, sample_id, category, payload FROM samples "
        "WHERE benchmark NOT IN ('safety', 'fairness')", conn)
    return RunFrames(variants, safety, verdicts, over, fairness, metrics, plugins, enabled_benchmarks(store))


def enabled_benchmarks(store: Store) -> frozenset[str] | None:
    """The registered benchmarks whose section the run's stored config enables (a section the
    config lacks counts with its default); None for a store without a config (written by hand)."""
    from ..benchmarks.registry import BENCHMARKS

    config = store.get_meta("config")
    if not isinstance(config, dict):
        return None
    return frozenset(name for name, b in BENCHMARKS.items()
                     if (config.get(name) or {}).get("enabled", b.section.model_fields["enabled"].default))


def comparison_pairs(variants: pd.DataFrame) -> pd.DataFrame:
    """(variant_id, base_id) for every finished fine-tuned variant whose base finished too."""
    done = set(variants.loc[variants["status"] == "done", "id"])
    v = variants[(variants["method"] != "base") & variants["status"].eq("done") & variants["base_id"].isin(done)]
    return v[["id", "base_id"]].rename(columns={"id": "variant_id"}).reset_index(drop=True)


def as_float(x) -> np.ndarray:
    return np.asarray(pd.to_numeric(x, errors="coerce"), dtype=float)


def run_judges(verdicts: pd.DataFrame) -> list[str]:
    """The judges whose verdicts a run stored (the combined verdicts left out), sorted."""
    return sorted(set(verdicts["judge"]) - COMBINED_JUDGES) if verdicts is not None and not verdicts.empty else []
