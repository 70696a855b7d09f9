"""Text from a ledger or a report, fit for a PDF: every character drawn, or shown as an escape.

reportlab's built-in Helvetica draws Latin-1 only, so the PDFs embed a TrueType font: DejaVu Sans
where the system has it (Latin, Greek, Cyrillic, arrows, mathematical signs), otherwise Bitstream
Vera Sans, which ships inside reportlab itself and so exists wherever the PDFs can be made. A
character the font cannot draw, and every invisible one (control, format, separator other than
the plain space), is written as ``<U+XXXX>``, its code point in hexadecimal: never dropped,
never an empty box. A ``<`` that the text itself has before ``U+`` is written as ``<U+003C>``,
so every ``<U+XXXX>`` in a PDF is an escape and the original text can be read back exactly.
The result is also escaped for reportlab's paragraph markup (``&``, ``<``, ``>``).

The font in use is the one given to :func:`using` around a PDF's making (the writers take it
as an argument; tests pass the bundled font to see what a machine without DejaVu makes), else
:func:`default_font`.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

import reportlab
from reportlab.lib.fonts import addMapping
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFError, TTFont

_FACES = ("", "-Bold", "-Oblique", "-BoldOblique")  # regular, bold, italic, bold italic
_DEJAVU = ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSans-Oblique.ttf",
           "DejaVuSans-BoldOblique.ttf")
_VERA = ("Vera.ttf", "VeraBd.ttf", "VeraIt.ttf", "VeraBI.ttf")
_DEJAVU_DIRS = ("/usr/share/fonts/truetype/dejavu", "/usr/share/fonts/dejavu",
                "/usr/share/fonts/TTF", "/usr/local/share/fonts/dejavu")


@dataclass(frozen=True)
class PdfFont:
    """A registered font family: its reportlab name (``family``, ``family + "-Bold"``, ...),
    what a reader calls it, and the code points all four of its faces draw."""

    family: str
    label: str
    chars: frozenset[int]

    def face(self, bold: bool = False, italic: bool = False) -> str:
        return self.family + _FACES[bold + 2 * italic]


def _load(family: str, label: str, files: tuple[Path, ...]) -> PdfFont:
    """Register the four faces under ``family``; ``TTFError``/``OSError`` when a file is bad."""
    chars: set[int] | None = None
    for suffix, path in zip(_FACES, files, strict=True):
        font = TTFont(family + suffix, str(path))
        drawn = {cp for cp, glyph in font.face.charToGlyph.items() if glyph != 0}
        chars = drawn if chars is None else chars & drawn
        pdfmetrics.registerFont(font)
    for n, suffix in enumerate(_FACES):
        addMapping(family, n & 1, n >> 1, family + suffix)
    return PdfFont(family, label, frozenset(chars or ()))


@functools.cache
def bundled_font() -> PdfFont:
    """Bitstream Vera Sans from reportlab's own package: present wherever reportlab is."""
    where = Path(reportlab.__file__).parent / "fonts"
    return _load("CoiVera", "Bitstream Vera Sans", tuple(where / f for f in _VERA))


@functools.cache
def system_font() -> PdfFont | None:
    """DejaVu Sans when the system has all four faces and they load, else None."""
    for d in _DEJAVU_DIRS:
        files = tuple(Path(d) / f for f in _DEJAVU)
        if all(f.is_file() for f in files):
            try:
                return _load("CoiDejaVu", "DejaVu Sans", files)
            except (TTFError, OSError, ValueError, KeyError, IndexError):
                continue  # a damaged or odd file: the bundled font still works
    return None


def default_font() -> PdfFont:
    return system_font() or bundled_font()


_CURRENT: ContextVar[PdfFont | None] = ContextVar("coi_pdf_font", default=None)


def current_font() -> PdfFont:
    return _CURRENT.get() or default_font()


@contextmanager
def using(font: PdfFont | None) -> Iterator[PdfFont]:
    """Make ``font`` (or the default) the one :func:`pdf_text` and the styles use inside."""
    chosen = font or default_font()
    token = _CURRENT.set(chosen)
    try:
        yield chosen
    finally:
        _CURRENT.reset(token)


def code_point(ch: str) -> str:
    return f"<U+{ord(ch):04X}>"


def drawable(value: object, font: PdfFont | None = None) -> str:
    """``value`` as text ``font`` draws in full: the characters it lacks and the invisible ones
    as ``<U+XXXX>``, a ``<`` before ``U+`` as ``<U+003C>``. Not yet escaped for markup."""
    chars = (font or current_font()).chars
    s = str(value)
    out = []
    for i, ch in enumerate(s):
        if ch == "<" and s.startswith("U+", i + 1):
            out.append(code_point(ch))
        elif ch.isprintable() and ord(ch) in chars:
            out.append(ch)
        else:
            out.append(code_point(ch))
    return "".join(out)


def pdf_text(value: object, font: PdfFont | None = None) -> str:
    """``value`` fit for a reportlab paragraph: :func:`drawable`, then markup escaped."""
    return escape(drawable(value, font))


def legend(font: PdfFont | None = None) -> str:
    """The note a PDF carries once about the escapes (paragraph markup, ready to use)."""
    f = font or current_font()
    return (f"Text is set in {pdf_text(f.label, f)}. A character this font cannot draw, or an "
            "invisible one such as a control character, is shown as &lt;U+XXXX&gt;: its "
            "Unicode code point in hexadecimal. A \"&lt;\" that the text itself has before "
            "\"U+\" is shown as &lt;U+003C&gt;.")
