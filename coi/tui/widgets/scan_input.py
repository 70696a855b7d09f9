"""The scan input: a keyboard-wedge scanner types into it; a person may type or paste too.

Traps of a plain ``Input`` it avoids (domain.md, Scanners): the group separator 0x1D is kept
(shown as ␝ while on screen, given back as GS; every control character
pasted is shown as its control picture), a Tab suffix submits instead of moving focus, LF
(ctrl+j) submits like Enter, and a pasted scan ending in Enter/Tab submits at once. It tells a
scanner's burst (key presses well under 35 ms apart, timed when the terminal's bytes were read,
not when the key is handled) from typing, and says which in its message.

An ESC prefix (some scanners are set to send one) must neither cancel the screen nor eat the
first character: the terminal merges ESC with the key after it into ``alt+<key>``, which is
taken here as that key; an ESC that arrives alone is held for ``ESC_WAIT_S`` and dropped as a
prefix when the scan's keys follow, or passed on as :class:`ScanInput.Escaped` (a person pressed
Escape) when nothing follows. When ESC and more than 31 characters arrive in one read, Textual
gives up on the "escape sequence" and turns the ESC into ``^``: a scanner's burst that starts
with ``^`` (no code coi reads holds one) has it dropped as that prefix. The prefix is never
part of the scan: it is not data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from textual import events
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.timer import Timer
from textual.widgets import Input

GS = "\x1d"
GS_SHOWN = "\u241d"  # ␝, SYMBOL FOR GROUP SEPARATOR: never in a scan coi reads otherwise
BURST_S = 0.035
ESC_WAIT_S = 0.15  # a scanner's next key comes within ms; a person's Escape comes alone


def to_shown(text: str) -> str:
    """C0 controls and DEL as their Unicode control pictures (␛, ␝, ␡), so none reaches the tty."""
    return "".join(chr(0x2400 + ord(c)) if ord(c) < 32 else "\u2421" if c == "\x7f" else c
                   for c in text)


def from_shown(text: str) -> str:
    """The scan as the scanner sent it: control pictures back to the control characters."""
    return "".join(chr(ord(c) - 0x2400) if 0x2400 <= ord(c) < 0x2420 else "\x7f"
                   if c == "\u2421" else c for c in text)


def _merged_with_esc(event: events.Key) -> str | None:
    """The character of a key the terminal merged with a preceding ESC (``alt+shift+c`` -> C)."""
    if not event.key.startswith("alt+"):
        return None
    if event.is_printable and event.character is not None:
        return event.character
    name = event.key.removeprefix("alt+")
    if name.startswith("shift+") and len(name) == 7 and name[6].isalpha():
        return name[6].upper()
    if len(name) == 1 and name.isprintable():
        return name
    return None


class ScanInput(Input):
    """A single-line input for scans; posts :class:`ScanInput.Scanned` on Enter, Tab or LF."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("tab", "scan_submit", "Submit scan", show=False),
        Binding("ctrl+j", "scan_submit", "Submit scan", show=False),
        Binding("enter", "scan_submit", "Submit scan", show=False),
        Binding("escape", "scan_escape", "Back"),
    ]

    @dataclass
    class Escaped(Message):
        """A person pressed Escape in the scan field (not a scanner's ESC prefix)."""

        input: ScanInput

        @property
        def control(self) -> ScanInput:
            return self.input

    @dataclass
    class Scanned(Message):
        """A complete scan: the raw text (GS kept) and how it arrived."""

        input: ScanInput
        raw: str
        method: str  # "scanner", "typed" or "pasted"

        @property
        def control(self) -> ScanInput:
            return self.input

    def __init__(self, *, placeholder: str = "Scan a label…", id: str | None = None) -> None:
        super().__init__(placeholder=placeholder, id=id, select_on_focus=False)
        self._stamps: list[float] = []
        self._pasted = False
        self._esc_timer: Timer | None = None
        self.esc_prefixed = False  # the scan being read came after an ESC prefix

    async def _on_key(self, event: events.Key) -> None:
        merged = _merged_with_esc(event)
        if merged is not None or (event.is_printable and self._esc_timer is not None):
            self._drop_esc_prefix()  # ESC then a key: a scanner's prefix, not an Escape
            if not self.value:
                self._stamps.clear()
                self._pasted = False
            self.esc_prefixed = True
        if merged is not None:
            event.stop()
            event.prevent_default()
            self._stamp(event)
            self.insert_text_at_cursor(merged)
            return
        if event.character == GS:
            event.stop()
            event.prevent_default()
            self._stamp(event)
            self.insert_text_at_cursor(GS_SHOWN)
            return
        if event.is_printable:
            self._stamp(event)
        # Input._on_key runs next (Textual dispatches handlers along the MRO)

    def _stamp(self, event: events.Key) -> None:
        if not self.value and not self.esc_prefixed:
            self._stamps.clear()
            self._pasted = False
        self._stamps.append(event.time)  # when the key was read, not when it is handled

    def action_scan_escape(self) -> None:
        if self.value or self._esc_timer is not None:
            self._drop_esc_prefix()
            self.post_message(self.Escaped(self))
            return
        self._esc_timer = self.set_timer(ESC_WAIT_S, self._escape_alone)

    def _escape_alone(self) -> None:
        self._esc_timer = None
        self.post_message(self.Escaped(self))

    def _drop_esc_prefix(self) -> None:
        if self._esc_timer is not None:
            self._esc_timer.stop()
            self._esc_timer = None

    def _on_paste(self, event: events.Paste) -> None:
        event.stop()
        event.prevent_default()  # Input._on_paste would insert the text again
        text = event.text
        if not text:
            return
        if not self.value:
            self._stamps.clear()
        self._pasted = True
        cuts = [i for i in (text.find(c) for c in "\r\n\t") if i >= 0]
        if cuts:
            self.insert_text_at_cursor(to_shown(text[:min(cuts)]))
            self.action_scan_submit()
            return
        self.insert_text_at_cursor(to_shown(text))

    def method(self) -> str:
        if self._pasted:
            return "pasted"
        s = self._stamps
        if len(s) >= 4 and all(b - a < BURST_S for a, b in zip(s, s[1:], strict=False)):
            return "scanner"
        return "typed"

    def action_scan_submit(self) -> None:
        raw = from_shown(self.value)
        method = self.method()
        if method == "scanner" and raw.startswith("^"):  # Textual's rendering of a long
            raw = raw[1:]  # scan's ESC prefix (see the module's docstring)
        self.value = ""
        self._stamps.clear()
        self._pasted = False
        self.esc_prefixed = False
        if raw.strip():
            self.post_message(self.Scanned(self, raw, method))
