"""Text from configs, datasets and models, made safe to show on a terminal, through rich, in Markdown.

A variant label, base model name, category, prompt, response or error message is someone
else's text. It may hold ANSI/OSC escape sequences (``ESC [2J`` clears the screen,
``ESC ]0;…BEL`` sets the window title, ``ESC ]8;;URL`` plants a link), other C0/C1 control
characters (CR overwrites a line, BEL rings, backspace hides what came before), Unicode
bidirectional overrides (U+202E shows what follows reversed, the "Trojan Source" trick), rich
markup (``[red]``, ``[link=…]``) or, in a Markdown table, ``|`` and line breaks that end a cell
or a row. :func:`plain` is the one function that removes the first three; :func:`markup_safe`
and :func:`md_text` add what rich and Markdown need. HTML has its own escaping (Jinja2
autoescape) and does not use these.

Nothing here is used for ids or lookups: a shortened or cleaned name is for the eye only.
"""

from __future__ import annotations

import re

#: Longest ``label`` a sweep file may give a variant (the config check refuses longer ones);
#: also the width a label from an older store is shortened to where it is shown.
LABEL_MAX = 80

#: Width a single-line name (base model, adapter, category) is shortened to where it is shown.
NAME_MAX = 120

# Whole escape sequences go first, so no "[2J" or "]0;title" is left behind: OSC (ESC ] ... BEL
# or ST), CSI (ESC [ params final), their one-byte C1 forms (0x9d, 0x9b), and two-byte ESC X.
_ESCAPE_SEQUENCE = re.compile(
    r"(?:\x1b\]|\x9d)[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"
    r"|(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]?"
    r"|\x1b[ -~]?"
)
# Every way of starting a new line, so CR cannot rewrite what is already on it.
_LINE_BREAK = re.compile(r"\r\n|[\r\n\x0b\x0c\x1c-\x1e\x85\u2028\u2029]")
# Left-to-right/right-to-left marks, embeddings, overrides and isolates (Unicode bidi controls).
_BIDI = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
# C0 and C1 controls and DEL (tab and newline kept: they are replaced, or kept, below), bidi.
_DROP = {c: None for c in [*range(0x00, 0x20), *range(0x7f, 0xa0), *map(ord, _BIDI)] if c not in (0x09, 0x0a)}


def plain(text: object, *, limit: int | None = None, multiline: bool = False) -> str:
    """``text`` (``None`` -> ``""``, anything else through ``str``) without escape sequences,
    control characters or bidi controls. Single-line unless ``multiline``: each line break and
    tab becomes a space. With ``multiline`` line breaks become ``\\n`` (CR and U+2028 alike) and
    tabs stay. ``limit``: longer text is cut to ``limit`` characters, the last one ``…``."""
    s = "" if text is None else str(text)
    s = _LINE_BREAK.sub("\n", _ESCAPE_SEQUENCE.sub("", s)).translate(_DROP)
    if not multiline:
        s = s.replace("\n", " ").replace("\t", " ")
    if limit is not None and len(s) > limit:
        s = s[:max(limit - 1, 0)] + "…"
    return s


def markup_safe(text: object, *, limit: int | None = None, multiline: bool = False) -> str:
    """:func:`plain` with rich markup escaped (``[red]`` shows as written): for text placed into a
    string that rich parses as markup (``console.print``, table cells, panel titles)."""
    from rich.markup import escape

    return escape(plain(text, limit=limit, multiline=multiline))


def md_text(text: object, *, limit: int | None = None) -> str:
    """:func:`plain` on one line for Markdown: ``|`` escaped so a table cell stays one cell, and
    ``<`` before a letter, ``/``, ``!`` or ``?`` written ``&lt;`` so no HTML tag opens in a renderer."""
    return re.sub(r"<(?=[A-Za-z/!?])", "&lt;", plain(text, limit=limit).replace("|", "\\|"))


def has_control(text: str) -> str | None:
    """The first control or bidi character of ``text`` as ``U+001B``, or None: what the config check
    names when it refuses a label or a name."""
    for ch in text:
        if ord(ch) in _DROP or ch in "\t\n":
            return f"U+{ord(ch):04X}"
    return None
