"""Every script's decimal digits read as ASCII ones, so that a number is the same number
whichever digits wrote it (``۲۰۲۶``, ``२०२६`` and ``๒๐๒๖`` are ``2026``): search terms and
the near-duplicate test's figures read numbers alike. Light: no other module behind it."""

from __future__ import annotations

import unicodedata

# The Arabic decimal and thousands separators, as "." and "," ("۳۱٫۲" is "31.2").
ARABIC_SEPARATORS = str.maketrans({"\u066b": ".", "\u066c": ","})


def ascii_digits(text: str) -> str:
    """``text`` with every decimal digit of another script replaced by its ASCII digit."""
    if text.isascii():
        return text
    return "".join(
        str(unicodedata.decimal(char)) if char.isdecimal() and not char.isascii() else char for char in text
    )
