"""Storage faults are told apart from damage, name the file, leave no temporary file, and can be
worked around (issue #31, finding 7). Against real files: a full disk is a small tmpfs filled to
the last page, a read-only run directory a tmpfs remounted read-only, a denied directory mode
0555 written by an unprivileged user (root is switched to ``nobody`` for the write). Mounting
needs root; where it is not allowed those tests are skipped, the permission ones still run."""

import errno
import os
import shutil
import sqlite3
import subprocess
import tempfile
from contextlib import contextmanager
from pathlib import Path

import pytest
from synthetic_store import build_synthetic_store
from typer.testing import CliRunner

from peft_audit.cli import app
from peft_audit.config import ConfigError, parse_config
from peft_audit.store import RESULTS_FILE, open_existing, store_error_message
from peft_audit.summary import write_summary
from peft_audit.textio import atomic_output, write_text_atomic

NOBODY = 65534


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    return build_synthetic_store(tmp_path_factory.mktemp("store") / "run", n_variants=2, n_failed=0,
                                 bases=("llama-3.2-1b",), methods=("lora",), prompts_per_category=3,
                                 bbq_items_per_category=6)


@pytest.fixture(scope="module")
def tuned_id(run) -> str:
    with open_existing(run) as s:
        return next(v["id"] for v in s.variants() if v["method"] != "base")


@contextmanager
def _mounted(size: str = "2m"):
    """A fresh tmpfs of ``size`` (a real size-limited file system) on a directory anyone may enter."""
    where = Path(tempfile.mkdtemp(prefix="peft-audit-fs-"))
    where.chmod(0o755)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(where)],
                          capture_output=True)
    if done.returncode != 0:
        where.rmdir()
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.decode().strip() or 'not root'})")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)
        where.rmdir()


def _fill(d: Path) -> None:
    """Write zeros into ``d`` until its file system reports ENOSPC."""
    fd = os.open(d / "filler", os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError as e:
        assert e.errno == errno.ENOSPC
    finally:
        os.close(fd)


@pytest.fixture
def full_disk():
    with _mounted() as d:
        (d / "out").mkdir()
        yield d


def _copy_run(run: Path, dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy(run / RESULTS_FILE, dest / RESULTS_FILE)
    return dest


def _leftovers(d: Path) -> list[Path]:
    return [p for p in d.rglob("*") if p.name.endswith(".tmp")]


def _cli(*args: str):
    return CliRunner().invoke(app, [str(a) for a in args])


#: Every writer of the tool (what it writes is inside DEST), its command, and the file it names.
WRITERS = {
    "report.md": (["report", "{run}", "--format", "md", "--out", "{dest}"], "report.md"),
    "report.html": (["report", "{run}", "--format", "html", "--out", "{dest}"], "report.html"),
    "analysis.json": (["report", "{run}", "--format", "json", "--out", "{dest}"], "analysis.json"),
    "analysis csv": (["report", "{run}", "--format", "csv", "--out", "{dest}"], "analysis"),
    "analysis parquet": (["report", "{run}", "--format", "parquet", "--out", "{dest}"], "analysis"),
    "export": (["export", "{run}", "--samples", "safety", "--out", "{dest}/samples.csv"], "samples.csv"),
    "export parquet": (["export", "{run}", "--samples", "fairness", "--out", "{dest}/items.parquet"], "items.parquet"),
    "junit": (["gate", "{run}", "--junit", "{dest}/gate.xml"], "gate.xml"),
    "card": (["card", "{run}", "--variant", "{vid}", "--out", "{dest}/card.md"], "card.md"),
    "label sheet": (["label", "{run}", "--n", "3", "--sheet", "{dest}/sheet.csv"], "sheet.csv"),
}


def _args(name: str, run: Path, dest: Path, vid: str) -> list[str]:
    return [a.format(run=run, dest=dest, vid=vid) for a in WRITERS[name][0]]


def _says_where_and_what(r, dest: Path, name: str, what: str) -> None:
    assert r.exit_code == 2, r.output
    assert str(dest / WRITERS[name][1]) in r.output, r.output  # the file (or folder) that could not be written
    assert what in r.output and "This is a bug" not in r.output and "damaged" not in r.output, r.output


@pytest.mark.parametrize("name", WRITERS)
def test_full_disk_names_the_file_and_leaves_nothing(name, run, tuned_id, full_disk):
    dest = full_disk / "out"
    _fill(full_disk)
    r = _cli(*_args(name, run, dest, tuned_id))
    _says_where_and_what(r, dest, name, "No space left on device")
    assert "free some space" in r.output
    assert _leftovers(full_disk) == []


@contextmanager
def _as_unprivileged():
    """Run the body as ``nobody`` when this process is root (root ignores permission bits)."""
    if os.geteuid() != 0:
        yield
        return
    os.setegid(NOBODY)
    os.seteuid(NOBODY)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)


@pytest.mark.parametrize("name", WRITERS)
def test_denied_directory_names_the_file_and_leaves_nothing(name, run, tuned_id):
    import peft_audit.report  # noqa: F401  (imported, and its caches made, before switching user)

    top = Path(tempfile.mkdtemp(prefix="peft-audit-denied-"))
    try:
        top.chmod(0o755)
        here = _copy_run(run, top / "run")
        (here / RESULTS_FILE).chmod(0o644)
        here.chmod(0o755)
        dest = top / "out"
        dest.mkdir(mode=0o555)
        dest.chmod(0o555)
        with _as_unprivileged():
            r = _cli(*_args(name, here, dest, tuned_id))
        _says_where_and_what(r, dest, name, "Permission denied")
        assert _leftovers(top) == []
    finally:
        for p in (top, *top.rglob("*")):
            p.chmod(0o755) if p.is_dir() else None
        shutil.rmtree(top)


def test_human_labels_on_full_disk_are_kept_whole(run, full_disk):
    from peft_audit.judges.spot_check import append_labels, labels_path, read_labels

    here = _copy_run(run, full_disk / "run")
    append_labels(here, [("v", "p1", "refusal")])
    before = labels_path(here).read_bytes()
    _fill(full_disk)
    with pytest.raises(OSError) as e:
        append_labels(here, [("v", f"p{i}", "compliance") for i in range(2, 2000)])
    assert e.value.errno == errno.ENOSPC and e.value.filename == str(labels_path(here))
    assert labels_path(here).read_bytes() == before and read_labels(here) == {("v", "p1"): "refusal"}
    assert _leftovers(full_disk) == []


def test_summary_json_on_full_disk_names_it(run, full_disk):
    _fill(full_disk)
    with open_existing(run) as store, pytest.raises(OSError) as e:
        write_summary(store, full_disk / "out" / "summary.json")
    assert e.value.errno == errno.ENOSPC and e.value.filename == str(full_disk / "out" / "summary.json")
    assert _leftovers(full_disk) == []


def test_run_dir_on_full_disk_reads_as_intact(run, full_disk):
    here = _copy_run(run, full_disk / "run")
    _fill(full_disk)
    for cmd in (["gate", here], ["show", here]):  # reading needs no space: they work
        r = _cli(*cmd)
        assert r.exit_code in (0, 1) and "error" not in r.output, r.output
    r = _cli("report", here, "--format", "md,html")
    assert r.exit_code == 2 and f"{here / 'report.md'}: No space left on device" in r.output, r.output
    assert "report --out DIR" in r.output and "not a usable" not in r.output
    assert _leftovers(full_disk) == []


def test_full_disk_with_pending_wal_is_not_called_damage(run, full_disk, tmp_path):
    # A store a run was writing when the disk filled: its WAL holds committed pages, so it cannot
    # be read without the WAL index SQLite has no room to create. Copied while the writer is open
    # (closing would fold the WAL back into the file).
    writing = _copy_run(run, tmp_path / "writing")
    conn = sqlite3.connect(writing / RESULTS_FILE)
    conn.execute("PRAGMA wal_autocheckpoint=0")
    conn.execute("INSERT OR REPLACE INTO meta VALUES ('note', ?)", ("x" * 4096,))
    conn.commit()
    here = full_disk / "run"
    here.mkdir()
    for f in (RESULTS_FILE, f"{RESULTS_FILE}-wal"):
        shutil.copy(writing / f, here / f)
    conn.close()
    assert (here / f"{RESULTS_FILE}-wal").stat().st_size > 0
    _fill(full_disk)
    r = _cli("gate", here)
    assert r.exit_code == 2, r.output
    assert "disk is full" in r.output and "not found damaged" in r.output and "Restore it" not in r.output, r.output


def test_damaged_store_still_reads_as_damaged(tmp_path):
    (tmp_path / RESULTS_FILE).write_bytes(b"this is not a database" * 200)
    r = _cli("gate", tmp_path)
    assert r.exit_code == 2 and "not a usable peft-audit results store" in r.output and "Restore it" in r.output


def test_store_error_message_kinds(tmp_path):
    def error_of(uri: str) -> sqlite3.Error:
        try:
            sqlite3.connect(uri, uri=True).execute("SELECT 1 FROM sqlite_master").fetchall()
        except sqlite3.Error as e:
            return e
        raise AssertionError("no error")

    cannot_open = error_of(f"file:{tmp_path}/missing/x.sqlite?mode=ro")
    assert "check their permissions" in store_error_message(cannot_open, "x")
    (tmp_path / "junk.sqlite").write_bytes(b"junk" * 1000)
    assert "damaged" in store_error_message(error_of(f"file:{tmp_path}/junk.sqlite?mode=ro"), "x")


@pytest.fixture
def read_only_run(run):
    with _mounted() as d:
        _copy_run(run, d / "run")
        subprocess.run(["mount", "-o", "remount,ro", str(d)], check=True)
        yield d / "run"


def test_read_only_run_dir_is_audited_where_it_is(read_only_run, tuned_id, tmp_path):
    here = read_only_run
    r = _cli("report", here, "--format", "md")
    assert r.exit_code == 2 and f"{here / 'report.md'}: Read-only file system" in r.output, r.output
    assert "report --out DIR" in r.output
    r = _cli("report", here, "--format", "md,html,json", "--out", tmp_path / "reports")
    assert r.exit_code == 0, r.output
    assert {p.name for p in (tmp_path / "reports").iterdir()} == {"report.md", "report.html", "analysis.json",
                                                                  "summary.json"}
    assert _cli("gate", here).exit_code in (0, 1)
    assert _cli("show", here).exit_code == 0
    assert _cli("export", here, "--samples", "safety", "--out", tmp_path / "s.csv").exit_code == 0
    assert _cli("card", here, "--variant", tuned_id, "--out", tmp_path / "card.md").exit_code == 0
    assert sorted(p.name for p in here.iterdir()) == [RESULTS_FILE]


def test_out_onto_existing_paths(run, tuned_id, tmp_path):
    a_file = tmp_path / "taken"
    a_file.write_text("x")
    r = _cli("report", run, "--format", "md", "--out", a_file)
    assert r.exit_code == 2 and f"{a_file}: is a file" in r.output
    old = tmp_path / "old.csv"
    old.write_text("stale\n")
    assert _cli("export", run, "--samples", "safety", "--out", old).exit_code == 0
    assert old.read_text().startswith("variant_id")  # replaced whole
    a_dir = tmp_path / "d.csv"
    a_dir.mkdir()
    r = _cli("export", run, "--samples", "safety", "--out", a_dir)
    assert r.exit_code == 2 and str(a_dir) in r.output and "give a file, not a directory" in r.output
    r = _cli("card", run, "--variant", tuned_id, "--out", a_dir)
    assert r.exit_code == 2 and str(a_dir) in r.output and "give a file, not a directory" in r.output
    assert _leftovers(tmp_path) == []


def test_atomic_output_names_the_target_not_the_temporary(tmp_path):
    target = tmp_path / "missing-dir" / "file.txt"
    with pytest.raises(FileNotFoundError) as e:
        write_text_atomic(target, "x")
    assert e.value.filename == str(target)
    with pytest.raises(RuntimeError), atomic_output(tmp_path / "f.txt") as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed halfway")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["/abs/path", "../x", "a/b", "..", ".", "a\\b", "", "x\x1b[2J", "n" * 81])
def test_name_is_a_name_not_a_path(name):
    with pytest.raises(ConfigError, match=r"name: .*(path|control|characters long)"):
        parse_config({"name": name}, "sweep.yaml")


def test_run_with_a_path_as_name_writes_nothing(tmp_path):
    target = tmp_path / "elsewhere"
    cfg = tmp_path / "sweep.yaml"
    cfg.write_text(f"name: {target}\n", encoding="utf-8")
    r = _cli("run", cfg)
    assert r.exit_code == 2 and "is a path, not a name" in r.output and "--out DIR" in r.output
    assert not target.exists()
    parse_config({"name": "my-sweep_v2.1"})  # a name is fine
