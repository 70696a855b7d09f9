"""Inert text for the terminal: anything from a scan or the database goes through here.

``show`` makes control characters, ESC and OSC visible (``coi.service.text.inert``) and returns a
``rich.text.Text``, which Textual never parses as markup.
"""

from __future__ import annotations

from rich.text import Text

from coi.service.steps import FieldSpec
from coi.service.text import inert


def show(value: object, style: str = "", *, keep_newlines: bool = False) -> Text:
    """``value`` as inert text: no markup interpreted, no control character reaching the tty."""
    return Text(inert("" if value is None else value, keep_newlines=keep_newlines), style=style)


def line(value: object, style: str = "") -> Text:
    """``show(value)`` followed by a newline (the newline is ours, not the value's)."""
    out = show(value, style)
    out.append("\n")
    return out


def refusal(prefix: str, reason: str, recorded_index: int | None = None) -> Text:
    """A refusal in red: what was refused and why, and the entry that recorded it, if any."""
    more = f" (recorded as entry {recorded_index})" if recorded_index is not None else ""
    return show(prefix + reason + more, "bold red")


def lines(*parts: tuple[str, object] | Text) -> Text:
    """Join labelled values: ``("State: ", value)`` pairs or ready ``Text`` pieces."""
    out = Text()
    for part in parts:
        if isinstance(part, Text):
            out.append_text(part)
        else:
            label, value = part
            out.append(label, style="bold")
            out.append_text(show(value))
    return out


def field_label(f: FieldSpec) -> str:
    """A form field's label: its title, its unit and whether it is optional."""
    unit = f" [{f.unit}]" if f.unit and f.type != "timestamp" else ""
    return f"{f.title}{unit}{'' if f.required else ' (optional)'}"


def field_hint(f: FieldSpec) -> str:
    """A form field's placeholder: the format of a time, the range of a number."""
    if f.type == "timestamp":
        return "local time with its offset, e.g. 2026-01-31T09:30+01:00"
    if f.type in ("int", "decimal", "qc_value"):
        rng = []
        if f.min is not None:
            rng.append(f"≥ {f.min}")
        if f.max is not None:
            rng.append(f"≤ {f.max}")
        return "number" + (f" ({', '.join(rng)})" if rng else "")
    return "required" if f.required else "optional"


def arrivals(expected: list[dict[str, object]], total: int | None = None) -> Text:
    """A receiving station's line: the products expected from partners (hand-off received), or
    nothing when none is; ``total``: how many are expected in all (``expected`` may be the
    newest of them only)."""
    if not expected:
        return Text()
    out = Text("\nExpected from partners: ", style="bold")
    for n, e in enumerate(expected[:5]):
        items = e.get("items")
        bags = ", ".join(map(str, items)) if isinstance(items, list) else ""
        out.append_text(show(f"{'; ' if n else ''}{e.get('coi')} from {e.get('from')} ({bags})"))
    more = max(total if total is not None else 0, len(expected)) - min(len(expected), 5)
    if more > 0:
        out.append(f"; and {more} more")
    return out


PROMPT_SECOND = {
    "paperwork": "Now scan the paperwork (the shipping document's coi label) that came with it.",
    "wristband": "Now scan the patient's wristband.",
}
"""A scan station's prompt for the second identifier a step compares with the bag."""
