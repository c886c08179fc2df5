"""Parsing of comma lists and ``NAME[key=value,...]`` specs shared by the command line and the
optimizer registry (:func:`grabnas.search.registry.parse_optimizer_spec`).

A bottom-layer module: it imports nothing from grabnas, so any layer may use it.
"""

from __future__ import annotations


def split_top_level(text: str, sep: str = ",") -> list[str]:
    """Split ``text`` at ``sep`` outside square brackets: ``"a[1,2],b"`` -> ``["a[1,2]", "b"]``."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += (ch == "[") - (ch == "]")
        if ch == sep and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return parts
