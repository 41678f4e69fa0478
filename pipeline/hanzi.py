"""Traditional Chinese read as Simplified, for the stages that compare Chinese text.

The same story is published in both scripts (Xinhua and the mainland press in Simplified,
Taiwanese and Hong Kong outlets in Traditional), and the configured Chinese patterns are
written in Simplified. OpenCC's ``t2s`` conversion (its dictionaries ship in the wheel)
gives the Simplified form:

* :func:`to_simplified` converts a whole text, phrases first (``乾燥`` is ``干燥``, while
  ``乾隆`` stays): what the encoder reads.
* :func:`simplified_characters` maps one character to one character, so that offsets
  into the original text stay valid: what search terms, topic patterns and the
  near-duplicate shingles compare. A Simplified text is left as it is, apart from the
  few characters that are also the Traditional form of another (``乾`` reads ``干``):
  both sides of every comparison are folded alike.

Loaded on the first Chinese character a process meets (about 20 ms).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache
from typing import cast

HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f]")


@lru_cache(maxsize=1)
def _converter() -> Callable[[str], str]:
    import opencc  # loaded on first Chinese text

    return cast(Callable[[str], str], opencc.OpenCC("t2s").convert)


def to_simplified(text: str) -> str:
    """``text`` with its Traditional Chinese converted to Simplified, phrase by phrase."""
    return _converter()(text) if HAN.search(text) else text


class _CharacterTable(dict[int, int | str]):
    """``str.translate``'s table, filled on first use of each character."""

    def __missing__(self, code: int) -> int | str:
        char = chr(code)
        value: int | str = code
        if HAN.match(char):
            converted = _converter()(char)
            if len(converted) == 1 and converted != char:
                value = converted
        self[code] = value
        return value


_TABLE = _CharacterTable()


def simplified_characters(text: str) -> str:
    """``text`` with each Traditional Chinese character replaced by its Simplified one (the
    same length, character for character)."""
    if text.isascii() or not HAN.search(text):
        return text
    return text.translate(_TABLE)
