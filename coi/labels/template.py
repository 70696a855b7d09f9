"""Label templates: the TOML files under ``labels/`` (installed as ``coi._labels``), parsed.

A template names a label size (``2x1``, ``4x2``), the PDF sheet it is printed on, and one
layout per printer resolution. Layout coordinates are whole dots at that resolution, so 203 and
300 dpi printers each get their own, and no renderer ever scales a module by a fractional factor.
"""

from __future__ import annotations

import functools
import importlib.resources
import tomllib
from dataclasses import dataclass
from typing import Any

from coi.labels.errors import LabelError

TEXT_FIELDS = frozenset({"coi", "item", "extra", "patient"})


@dataclass(frozen=True, slots=True)
class SymbolBox:
    """Where a symbol goes: a box (quiet zone included) and its module size, in dots."""

    x: int
    y: int
    width: int
    height: int
    module: int


@dataclass(frozen=True, slots=True)
class TextBlock:
    """The flowing text area; ``bottom_isbt`` is its bottom when ISBT content is printed too."""

    x: int
    y: int
    width: int
    bottom: int
    bottom_isbt: int


@dataclass(frozen=True, slots=True)
class TextLine:
    """One kind of line in the text block; ``extra`` stands for every extra line in turn."""

    field: str
    size: int
    bold: bool


@dataclass(frozen=True, slots=True)
class DinSpot:
    """Where the DIN eye-readable text (with its boxed K) goes, in dots."""

    x: int
    y: int
    size: int


@dataclass(frozen=True, slots=True)
class Layout:
    """A template at one resolution: every position in whole dots."""

    dpi: int
    width: int
    height: int
    qr: SymbolBox
    datamatrix: SymbolBox
    din: DinSpot
    text: TextBlock
    lines: tuple[TextLine, ...]


@dataclass(frozen=True, slots=True)
class Sheet:
    """How labels of one size are laid out on a PDF page (inches from the top-left corner)."""

    page: str
    columns: int
    rows: int
    left_in: float
    top_in: float
    column_pitch_in: float
    row_pitch_in: float

    @property
    def per_page(self) -> int:
        return self.columns * self.rows


@dataclass(frozen=True, slots=True)
class Template:
    """A label size: its physical size, its sheet and its layouts keyed by dpi."""

    name: str
    width_in: float
    height_in: float
    sheet: Sheet
    layouts: dict[int, Layout]

    def layout(self, dpi: int) -> Layout:
        try:
            return self.layouts[dpi]
        except KeyError:
            known = ", ".join(str(d) for d in sorted(self.layouts))
            raise LabelError(
                f"the {self.name} template has no layout for {dpi} dpi (it has {known})"
            ) from None


def _int(table: dict[str, Any], key: str, where: str) -> int:
    value = table.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise LabelError(f"{where}: {key} must be a whole number of dots, not {value!r}")
    return value


def _box(table: dict[str, Any], where: str, width: int, height: int) -> SymbolBox:
    box = SymbolBox(*(_int(table, k, where) for k in ("x", "y", "width", "height", "module")))
    if box.module < 1:
        raise LabelError(f"{where}: the module size must be at least one dot")
    if box.x + box.width > width or box.y + box.height > height:
        raise LabelError(f"{where}: the box reaches outside the label")
    return box


def _layout(dpi: int, raw: dict[str, Any], width_in: float, height_in: float) -> Layout:
    where = f"layout {dpi}"
    width, height = round(width_in * dpi), round(height_in * dpi)
    text_raw = raw["text"]
    text = TextBlock(
        *(_int(text_raw, k, where + " text") for k in ("x", "y", "width", "bottom", "bottom_isbt"))
    )
    if text.x + text.width > width or text.bottom > height or text.bottom_isbt > text.bottom:
        raise LabelError(f"{where}: the text block reaches outside the label")
    lines = []
    for line in raw["lines"]:
        if line.get("field") not in TEXT_FIELDS:
            raise LabelError(f"{where}: unknown text field {line.get('field')!r}")
        lines.append(TextLine(line["field"], _int(line, "size", where), bool(line.get("bold"))))
    din_raw = raw["din"]
    return Layout(
        dpi=dpi,
        width=width,
        height=height,
        qr=_box(raw["qr"], where + " qr", width, height),
        datamatrix=_box(raw["datamatrix"], where + " datamatrix", width, height),
        din=DinSpot(*(_int(din_raw, k, where + " din") for k in ("x", "y", "size"))),
        text=text,
        lines=tuple(lines),
    )


def parse_template(text: str) -> Template:
    """Parse one template's TOML text."""
    raw = tomllib.loads(text)
    width_in, height_in = float(raw["width_in"]), float(raw["height_in"])
    sheet_raw = raw["sheet"]
    sheet = Sheet(
        page=str(sheet_raw["page"]),
        columns=int(sheet_raw["columns"]),
        rows=int(sheet_raw["rows"]),
        left_in=float(sheet_raw["left_in"]),
        top_in=float(sheet_raw["top_in"]),
        column_pitch_in=float(sheet_raw["column_pitch_in"]),
        row_pitch_in=float(sheet_raw["row_pitch_in"]),
    )
    layouts = {
        int(dpi): _layout(int(dpi), table, width_in, height_in)
        for dpi, table in raw["layout"].items()
    }
    return Template(str(raw["name"]), width_in, height_in, sheet, layouts)


@functools.cache
def load_template(size: str) -> Template:
    """Load the packaged template ``labels/<size>.toml`` (e.g. ``2x1``, ``4x2``)."""
    resource = importlib.resources.files("coi._labels").joinpath(f"{size}.toml")
    if "/" in size or "\\" in size or not resource.is_file():
        raise LabelError(f"there is no {size!r} label template")
    return parse_template(resource.read_text(encoding="utf-8"))


def template_names() -> list[str]:
    """The sizes of every packaged template, sorted."""
    return sorted(
        p.name.removesuffix(".toml")
        for p in importlib.resources.files("coi._labels").iterdir()
        if p.name.endswith(".toml")
    )
