"""Large type for identifiers: a 3-row box-drawing font for 0-9, A-Z and '-'.

Used for the CoI identifier at a scan station, readable at arm's length. Characters outside the
font (there should be none: identifiers are validated upper-case alphanumerics) are drawn as '?'.
"""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

_FONT: dict[str, tuple[str, str, str]] = {
    '0': ('┏━┓', '┃ ┃', '┗━┛'),
    '1': ('╺┓ ', ' ┃ ', '╺┻╸'),
    '2': ('╺━┓', '┏━┛', '┗━╸'),
    '3': ('╺━┓', ' ━┫', '╺━┛'),
    '4': ('╻ ╻', '┗━┫', '  ╹'),
    '5': ('┏━╸', '┗━┓', '╺━┛'),
    '6': ('┏━╸', '┣━┓', '┗━┛'),
    '7': ('╺━┓', '  ┃', '  ╹'),
    '8': ('┏━┓', '┣━┫', '┗━┛'),
    '9': ('┏━┓', '┗━┫', '╺━┛'),
    'A': ('╭─╮', '├─┤', '╵ ╵'),
    'B': ('┌─╮', '├─┤', '└─╯'),
    'C': ('╭─╮', '│  ', '╰─╯'),
    'D': ('┌─╮', '│ │', '└─╯'),
    'E': ('╭─╴', '├─ ', '╰─╴'),
    'F': ('╭─╴', '├─ ', '╵  '),
    'G': ('┏━╸', '┃╺┓', '┗━┛'),
    'H': ('╻ ╻', '┣━┫', '╹ ╹'),
    'I': ('╺┳╸', ' ┃ ', '╺┻╸'),
    'J': ('  ╻', '  ┃', '┗━┛'),
    'K': ('╻ ╻', '┣┳┛', '╹┗╸'),
    'L': ('╻  ', '┃  ', '┗━╸'),
    'M': ('┏┳┓', '┃╹┃', '╹ ╹'),
    'N': ('┏┓╻', '┃┃┃', '╹┗┛'),
    'O': ('╭─╮', '│ │', '╰─╯'),
    'P': ('┏━┓', '┣━┛', '╹  '),
    'Q': ('┏━┓', '┃ ┃', '┗━╋'),
    'R': ('┏━┓', '┣┳┛', '╹┗╸'),
    'S': ('╭━╸', '╰━╮', '╺━╯'),
    'T': ('╺┳╸', ' ┃ ', ' ╹ '),
    'U': ('╻ ╻', '┃ ┃', '┗━┛'),
    'V': ('╻ ╻', '╲ ╱', ' ╹ '),
    'W': ('╻ ╻', '┃┃┃', '┗┻┛'),
    'X': ('╲ ╱', ' ╳ ', '╱ ╲'),
    'Y': ('╻ ╻', '┗┳┛', ' ╹ '),
    'Z': ('╺━┓', ' ╱ ', '┗━╸'),
    '-': ('   ', '╺━╸', '   '),
    ' ': ('   ', '   ', '   '),
}
_UNKNOWN = ("┏━┓", " ┏┛", " ╹ ")


def big(text: str) -> list[str]:
    """Three lines drawing ``text`` in large type (one column between characters)."""
    glyphs = [_FONT.get(ch, _UNKNOWN) for ch in text.upper()]
    return [" ".join(g[row] for g in glyphs) for row in range(3)]


class BigText(Static):
    """A Static that shows its text in the large font (plain text below for copy and search)."""

    DEFAULT_CSS = """
    BigText { height: auto; width: auto; text-style: bold; }
    """

    def show_text(self, text: str, caption: str = "") -> None:
        out = Text("\n".join(big(text)))
        if caption:
            out.append("\n" + caption, style="dim")
        self.update(out)
