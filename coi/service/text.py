"""Making text inert for a terminal: no control character, escape sequence or markup survives.

Used by every front end on anything that came from a scan, a file or a database row.
"""

from __future__ import annotations

import unicodedata

_VISIBLE = {"\t": "\\t", "\n": "\\n", "\r": "\\r", "\x1b": "\\e", "\x1d": "<GS>"}


def inert(text: object, *, keep_newlines: bool = False) -> str:
    """Return ``text`` with every control or format character shown as a visible escape."""
    s = str(text)
    out = []
    for ch in s:
        if keep_newlines and ch == "\n":
            out.append(ch)
            continue
        cat = unicodedata.category(ch)
        if cat in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"):
            out.append(_VISIBLE.get(ch, f"\\u{ord(ch):04x}" if ord(ch) > 0xFF
                                    else f"\\x{ord(ch):02x}"))
        else:
            out.append(ch)
    return "".join(out)
