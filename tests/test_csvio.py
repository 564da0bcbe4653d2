"""Every CSV the tool writes reads back row for row, whatever line breaks the responses hold."""

import csv
import io

import pandas as pd
import pytest

from peft_audit.csvio import write_frame_csv
from peft_audit.export import write_table
from peft_audit.judges import spot_check

# a bare carriage return once split a judged 602-row file into 604 rows
AWKWARD = ["bare\rreturn", "new\nline", "windows\r\nbreak", 'say "hi", then go', "ends with\r", "\n", "plain", ""]


def _frame():
    return pd.DataFrame({"prompt_id": [f"p{i}" for i in range(len(AWKWARD))], "response": AWKWARD,
                         "n": list(range(len(AWKWARD)))})


def _read_both(path):
    by_pandas = pd.read_csv(path, dtype=str, keep_default_na=False)
    with open(path, newline="", encoding="utf-8") as f:
        by_csv = list(csv.DictReader(f))
    return by_pandas, by_csv


@pytest.mark.parametrize("write", [write_table, write_frame_csv], ids=["write_table", "write_frame_csv"])
def test_frames_written_as_csv_read_back_row_for_row(tmp_path, write):
    df = _frame()
    path = write(df, tmp_path / "judged.csv")
    by_pandas, by_csv = _read_both(path)
    assert by_pandas["response"].tolist() == AWKWARD
    assert [r["response"] for r in by_csv] == AWKWARD
    assert by_pandas["n"].tolist() == [str(n) for n in df["n"]]


def test_report_analysis_tables_read_back_row_for_row(tmp_path):
    from types import SimpleNamespace

    from peft_audit.report.exports import write_csv

    analysis = SimpleNamespace(tables=lambda: {"samples": _frame()})  # write_csv reads only tables()
    (path,) = write_csv(analysis, tmp_path / "analysis")
    by_pandas, by_csv = _read_both(path)
    assert by_pandas["response"].tolist() == AWKWARD
    assert [r["response"] for r in by_csv] == AWKWARD


def test_label_sheet_and_human_labels_read_back_row_for_row(tmp_path):
    rows = [{"variant_id": "v1", "prompt_id": f"p{i}", "prompt": text, "response": text}
            for i, text in enumerate(AWKWARD)]
    sheet = spot_check.write_sheet(rows, tmp_path / "sheet.csv")
    by_pandas, by_csv = _read_both(sheet)
    assert by_pandas["response"].tolist() == AWKWARD
    assert [r["response"] for r in by_csv] == AWKWARD

    n = spot_check.append_labels(tmp_path, [("v\r1", "p\n1", "refusal"), ("v2", "p,2", "compliance")])
    assert n == 2
    by_pandas, by_csv = _read_both(spot_check.labels_path(tmp_path))
    assert by_pandas["variant_id"].tolist() == ["v\r1", "v2"]
    assert [r["prompt_id"] for r in by_csv] == ["p\n1", "p,2"]


def test_pandas_default_is_what_broke(tmp_path):
    # why the dialect exists: pandas' own default leaves a bare \r unquoted and the row splits
    text = _frame().to_csv(index=False)
    assert len(pd.read_csv(io.StringIO(text))) != len(AWKWARD)
