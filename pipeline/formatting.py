"""Number formatting shared by change explanations and digests, so both read alike."""

from __future__ import annotations


def format_number(value: float) -> str:
    """A count or rate with as many decimals as its size needs: 0, 0.07, 2.5, 14."""
    if value == 0:
        return "0"
    if value < 0.095:
        return f"{value:.2f}"
    if value < 10:
        return f"{value:.1f}"
    return f"{value:.0f}"
