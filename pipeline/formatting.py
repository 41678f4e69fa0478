"""Formatting shared by change explanations, digests and listings, so all read alike."""

from __future__ import annotations

import json
import re
from typing import Any

from pipeline.unicode_marks import cluster_start


def format_number(value: float) -> str:
    """A count or rate with as many decimals as its size needs: 0, 0.07, 2.5, 14."""
    if value == 0:
        return "0"
    if value < 0.095:
        return f"{value:.2f}"
    if value < 10:
        return f"{value:.1f}"
    return f"{value:.0f}"


# Bidirectional embeddings, overrides and isolates: one left unclosed in a headline (a
# right-to-left override) turns the rest of the line it is printed on around.
_BIDI_CONTROLS = re.compile("[\u202a-\u202e\u2066-\u2069]")


def one_direction(text: str) -> str:
    """``text`` for one line of a listing or a digest: without bidirectional controls."""
    return _BIDI_CONTROLS.sub("", text)


# How much of a value a message quotes back (a filter, a parameter of a request).
ECHO_CHARS = 40


def echoed(value: str, *, limit: int = ECHO_CHARS) -> str:
    """``value`` quoted for an error message that names it, cut after ``limit`` characters
    (at the start of a character, with "…") and without bidirectional controls: a message
    says which value was wrong, it does not repeat a sentence a crafted link put there."""
    shown = one_direction(value)
    if len(shown) > limit:
        shown = shown[: cluster_start(shown, limit)] + "…"
    return repr(shown)


# Characters JSON leaves as they are inside a string but that line readers take for a line
# break: Python's str.splitlines(), editors and pagers (the line and paragraph separators,
# NEL). A stored text can hold them (an import's "text" is used as is).
_LINE_BREAKERS = {"\u2028": "\\u2028", "\u2029": "\\u2029", "\x85": "\\u0085"}
_LINE_BREAKER = re.compile("[\u2028\u2029\x85]")


def json_line(value: Any) -> str:
    """``value`` as one line of JSON Lines: every script as itself, and nothing a line
    reader splits at (the separators above written as ``\\u`` escapes, the same JSON)."""
    return _LINE_BREAKER.sub(
        lambda found: _LINE_BREAKERS[found.group()], json.dumps(value, ensure_ascii=False)
    )
