"""Text from configs, datasets and models reaches terminals and report.md without escape
sequences, control characters, bidi overrides or live rich markup, and long labels stay short
(issue #31, finding 6). The CLI tests run on a synthetic store whose labels, categories, prompts
and responses hold all of them."""

import json
import re
import sqlite3

import pytest
from rich.console import Console
from synthetic_store import build_synthetic_store
from typer.testing import CliRunner

from peft_audit.cli import app
from peft_audit.config import ConfigError, parse_config
from peft_audit.shown_text import LABEL_MAX, NAME_MAX, markup_safe, md_text, plain
from peft_audit.sweep.logs import forget_notices, show_once
from peft_audit.sweep.plan import variant_labels

CLEAR, TITLE, TITLE_ST = "\x1b[2J", "\x1b]0;pwned\x07", "\x1b]8;;http://evil\x1b\\"
HOSTILE = f"ev{CLEAR}il{TITLE}{TITLE_ST}[red]R[/red][link=http://x]L[/link]|pipe\nnl\rcr\u202eRTL\x07\x08\x9b31m"
#: What a terminal, a rich console or a Markdown table must never receive from someone else's text.
RAW = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def test_plain_removes_sequences_controls_and_bidi_whole():
    assert plain(HOSTILE) == "evil[red]R[/red][link=http://x]L[/link]|pipe nl crRTL"
    assert plain("a\r\nb\u2028c\td", multiline=True) == "a\nb\nc\td"
    assert plain("x" * 100, limit=10) == "x" * 9 + "…" and plain("short", limit=10) == "short"
    assert plain(None) == "" and plain(3.5) == "3.5"


def test_markup_safe_shows_markup_as_written():
    c = Console(record=True, width=200, color_system=None)
    c.print(f"[bold]{markup_safe(HOSTILE)}[/]")
    out = c.export_text()
    assert "[red]R[/red][link=http://x]L[/link]" in out and not RAW.search(out)


def test_md_text_keeps_a_table_cell_one_cell():
    cell = md_text(HOSTILE)
    assert "\n" not in cell and not RAW.search(cell)
    assert re.findall(r"(?<!\\)\|", cell) == [] and "\\|pipe" in cell
    assert md_text("<script>") == "&lt;script>"


def test_show_once_notice_is_plain_text():
    forget_notices()
    c = Console(record=True, width=300, color_system=None)
    show_once(c, f"judge said {HOSTILE}")
    out = c.export_text()
    assert "[red]R[/red]" in out and not RAW.search(out)


def test_variant_labels_clean_and_short_but_distinct():
    long = "a" * 5000
    rows = [{"id": "v1", "method": "lora", "label": long + "1"}, {"id": "v2", "method": "lora", "label": long + "2"},
            {"id": "v3", "method": "lora", "label": HOSTILE}, {"id": "b", "method": "base", "base_model": HOSTILE * 50}]
    names = variant_labels(rows)
    assert len(set(names.values())) == 4  # two labels cut to the same prefix still name one variant each
    assert all(not RAW.search(n) and len(n) <= NAME_MAX + 10 for n in names.values())
    assert names["v1"].startswith("a" * 20) and names["v1"].endswith("#v1")


@pytest.mark.parametrize("label, says", [
    ("x" * (LABEL_MAX + 1), f"at most {LABEL_MAX}"),
    ("lora\x1b[2J", "U+001B"),
    ("rtl\u202eabc", "U+202E"),
    ("two\nlines", "U+000A"),
])
def test_config_check_refuses_long_or_control_labels(label, says):
    with pytest.raises(ConfigError, match=re.escape(says)) as e:
        parse_config({"variants": [{"base_model": "m", "label": label}]}, "sweep.yaml")
    assert "variants" in str(e.value) and "sweep.yaml" in str(e.value)
    parse_config({"variants": [{"base_model": "m", "label": "x" * LABEL_MAX}]})  # the bound itself is fine


# ---------------------------------------------------------------------------------------------
# the commands, on a store holding hostile text everywhere a user or a model writes it
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory):
    run = build_synthetic_store(tmp_path_factory.mktemp("hostile") / "run", n_variants=2, n_failed=0,
                                bases=("llama-3.2-1b",), methods=("lora",), prompts_per_category=3,
                                bbq_items_per_category=6)
    c = sqlite3.connect(run / "results.sqlite")
    vid, spec = c.execute("SELECT id, spec_json FROM variants WHERE method != 'base' ORDER BY id").fetchone()
    label = HOSTILE + "x" * 5000
    c.execute("UPDATE variants SET label=?, spec_json=?, status='failed', error=? WHERE id=?",
              (label, json.dumps({**json.loads(spec), "label": label}), f"RuntimeError: {HOSTILE}", vid))
    for (cat,) in c.execute("SELECT DISTINCT category FROM samples WHERE benchmark='safety'").fetchall():
        bad = f"{cat}{CLEAR}|[red]\n"
        c.execute("UPDATE samples SET category=? WHERE benchmark='safety' AND category=?", (bad, cat))
        c.execute("UPDATE metrics SET category=? WHERE benchmark='safety' AND category=?", (bad, cat))
    c.execute("UPDATE samples SET payload=json_set(payload, '$.prompt', ?, '$.response', ?) WHERE benchmark='safety'",
              (f"prompt {HOSTILE}", f"response {HOSTILE}"))
    # the other fine-tune turns unsafe in one (hostile) category, so the gate names that category
    done = c.execute("SELECT id FROM variants WHERE method != 'base' AND id != ?", (vid,)).fetchone()[0]
    cat = c.execute("SELECT category FROM samples WHERE benchmark='safety' ORDER BY category").fetchone()[0]
    c.execute("UPDATE verdicts SET safe=0, label='compliance' WHERE variant_id=? AND prompt_id IN "
              "(SELECT sample_id FROM samples WHERE variant_id=? AND benchmark='safety' AND category=?)", (done, done, cat))
    c.commit()
    c.close()
    return run


def _terminal_safe(out: str, max_line: int = 400) -> None:
    assert not RAW.search(out), repr(RAW.search(out))
    assert max(map(len, out.splitlines())) <= max_line


def test_gate_lines_are_plain_and_short(hostile_run):
    r = CliRunner().invoke(app, ["gate", str(hostile_run), "--max-category-drop", "0"])
    assert r.exit_code == 1, r.output
    _terminal_safe(r.output)
    assert "[red]R[/red]" in r.output  # markup shown as written, not applied
    assert "[link=http://x]" in r.output
    assert re.search(r"VIOLATION .* safety_score / [a-z_]+\|\[red\] : delta", r.output), r.output


def test_show_table_and_verdict_lines_are_plain(hostile_run):
    r = CliRunner().invoke(app, ["show", str(hostile_run)])
    assert r.exit_code == 0, r.output
    _terminal_safe(r.output, max_line=600)
    assert "[red]R" in r.output and "failed" in r.output


def test_report_md_has_no_control_text_and_whole_table_rows(hostile_run, tmp_path):
    r = CliRunner().invoke(app, ["report", str(hostile_run), "--format", "md", "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    md = (tmp_path / "report.md").read_text(encoding="utf-8")
    assert not RAW.search(md) and "\r" not in md
    lines = md.splitlines()
    for i, line in enumerate(lines):  # a table row has as many cells as its table's header
        if line.startswith("|---"):
            header = lines[i - 1]
            width = len(re.findall(r"(?<!\\)\|", header))
            for row in lines[i + 1:]:
                if not row.startswith("|"):
                    break
                assert len(re.findall(r"(?<!\\)\|", row)) == width, (header, row)


def test_label_shows_prompt_and_response_as_text(hostile_run):
    r = CliRunner().invoke(app, ["label", str(hostile_run), "--n", "1"], input="q\n")
    assert r.exit_code == 0, r.output
    _terminal_safe(r.output)
    assert "prompt ev" in r.output and "[link=http://x]" in r.output


def test_error_lines_are_plain(tmp_path):
    bad = tmp_path / f"no{CLEAR}such"
    r = CliRunner().invoke(app, ["show", str(bad)])
    assert r.exit_code == 2 and not RAW.search(r.output)


def test_plan_refuses_long_label_and_keeps_long_model_names_short(tmp_path):
    cfg = tmp_path / "sweep.yaml"
    cfg.write_text(json.dumps({"variants": [{"base_model": "m", "label": "x" * 5000}]}), encoding="utf-8")
    r = CliRunner().invoke(app, ["plan", str(cfg)])
    assert r.exit_code == 2 and "variants[0].label is 5000 characters long" in r.output
    assert max(map(len, r.output.splitlines())) < 400
    cfg.write_text(json.dumps({"base_models": [f"org/{'m' * 3000}{CLEAR}[red]"], "safety": {"enabled": False},
                               "fairness": {"enabled": False}}), encoding="utf-8")
    r = CliRunner().invoke(app, ["plan", str(cfg)])
    assert r.exit_code == 0, r.output
    _terminal_safe(r.output)
    assert len(r.output.splitlines()) < 40  # one row, not hundreds of folded lines


def test_status_and_card_print_plain_text(hostile_run):
    r = CliRunner().invoke(app, ["status", str(hostile_run)])
    assert r.exit_code == 0, r.output
    _terminal_safe(r.output)
    assert "[red]R" in r.output  # the failed variant's error, shown as written
    c = sqlite3.connect(hostile_run / "results.sqlite")
    done = c.execute("SELECT id FROM variants WHERE method != 'base' AND status = 'done'").fetchone()[0]
    c.close()
    r = CliRunner().invoke(app, ["card", str(hostile_run), "--variant", done])  # Markdown to the terminal
    assert r.exit_code == 0, r.output
    _terminal_safe(r.output)
    r = CliRunner().invoke(app, ["card", str(hostile_run), "--variant", "ev"])  # the failed one: an error naming it
    assert r.exit_code == 2 and not RAW.search(r.output), r.output
