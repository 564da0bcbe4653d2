"""Reading the user's text files (configs, CSV, JSONL): UTF-8, or an error that says where.

Python's bare ``UnicodeDecodeError`` names neither the file nor the line; :func:`read_text`
does, and says how to fix it. A UTF-8 byte-order mark (as Excel writes) is accepted.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class InputFileError(ValueError):
    """A user's input file that cannot be read as what it should be; the message names the file
    and line (the readers of :mod:`peft_audit.textio`, :mod:`peft_audit.jsonl`, :mod:`peft_audit.csvio`)."""


class TextEncodingError(InputFileError):
    """A file that is not UTF-8 text; the message names file, line and byte."""


def read_text(path: str | Path, what: str = "file") -> str:
    """The text of ``path`` decoded as UTF-8 (a leading BOM dropped); :class:`TextEncodingError`
    naming the file, the line and the offending byte otherwise."""
    data = Path(path).read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise TextEncodingError(
            f"{path}:{line}: {what} is not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start}); it is "
            f"probably Latin-1 or Windows-1252: save it as UTF-8, e.g. `iconv -f latin1 -t utf-8 {path} > fixed`"
        ) from None


#: The default of every benchmark section's ``max_prompt_bytes``: far above any benchmark's prompts
#: (HarmBench's longest contextual behaviour is a few KiB), far below what stalls generation.
DEFAULT_MAX_PROMPT_BYTES = 32 * 1024


def prompt_size_error(text: str, where: str, limit: int, key: str) -> str | None:
    """The message for a prompt of more than ``limit`` bytes (UTF-8) at ``where`` (file:line),
    naming the setting ``key`` that raises the limit; None when it fits."""
    size = len(text.encode("utf-8"))
    if size <= limit:
        return None
    return (f"{where}: prompt of {size} bytes, over the limit of {limit} ({key}); shorten it, or raise {key} "
            "if the model's context holds it")


def open_text(path: str | Path, what: str = "file") -> io.StringIO:
    """:func:`read_text` as a file object (for ``csv.reader``; newlines kept as written)."""
    return io.StringIO(read_text(path, what), newline="")


@contextmanager
def atomic_output(path: str | Path) -> Iterator[Path]:
    """The one way files the tool produces are written (reports, summary.json, exports, the JUnit
    file, the model-card section): yields a temporary path beside ``path`` to write, then renames
    it over ``path``, so a reader or a killed writer never sees half a file. If anything fails
    (a full disk, a read-only directory, ``path`` an existing directory) the temporary file is
    removed and an ``OSError`` of the same kind names ``path`` itself: a failed write flushed
    at close carries no file name of its own."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException as e:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:  # a directory we may not write: nothing could have been created there
            pass
        if isinstance(e, OSError) and e.errno is not None:
            raise OSError(e.errno, e.strerror, str(path)) from None
        if isinstance(e, OSError):  # pyarrow's I/O errors carry a message only
            raise OSError(f"{path}: could not be written ({e})") from None
        raise


@contextmanager
def atomic_directory(out_dir: str | Path) -> Iterator[Path]:
    """The one way a directory the tool produces is written (a trained or repaired adapter):
    yields a fresh temporary directory beside ``out_dir`` (``.<name>.partial-*``) to fill, then
    renames it to ``out_dir``, which must be absent or empty; a reader never sees half an adapter.
    On any failure, KeyboardInterrupt included, the temporary directory is removed; the ones a
    process killed while writing ``out_dir`` left behind (it ran no cleanup) are removed first."""
    import shutil
    import tempfile

    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    partial = f".{out_dir.name}.partial-"
    for stale in [p for p in out_dir.parent.iterdir() if p.name.startswith(partial)]:
        shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=partial, dir=out_dir.parent))
    try:
        yield tmp
        if out_dir.exists():
            out_dir.rmdir()  # empty: the callers write only where no adapter is
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` through :func:`atomic_output`."""
    with atomic_output(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def read_json_entry(path: str | Path, key: str) -> object | None:
    """``path``'s JSON object's value at ``key`` (a cache file of measurements: the calibration,
    the kernel choice); None when the file is missing, unreadable, not a JSON object or has no
    such key, so a corrupt cache is measured again, never a crash."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data.get(key) if isinstance(data, dict) else None


def write_json_entry(path: str | Path, key: str, value: object) -> None:
    """Set ``key`` to ``value`` in ``path``'s JSON object (created, or replaced where it is not
    one), written through :func:`atomic_output`. Two processes writing at once may lose one
    entry, which is then measured again."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        data = {}
    if not isinstance(data, dict):
        data = {}
    data[key] = value
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(data, indent=1, sort_keys=True))
