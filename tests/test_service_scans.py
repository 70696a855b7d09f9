"""``coi.service.scans``: the one entry point through which the front ends and the service read
a scan, and the rule that nothing else calls the domain parser."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from coi.domain import isbt
from coi.domain.errors import ScanError
from coi.domain.scan import parse_scan
from coi.service.errors import Refused
from coi.service.scans import (
    CompoundScan,
    DinScan,
    LabelScan,
    ScanRefused,
    label_text,
    printed_coi,
    read_scan,
)

COI = isbt.CoiId("A9999", "26", "000001")
DIN = isbt.Din("A9999", "26", "000123")
PC = isbt.ProductCode("S1234", "1", "00")
GOOD = [label_text(COI.text, "F00001"), "]Q1" + label_text(COI.text, "C00002") + "\r\n",
        DIN.barcode(), COI.barcode(), PC.barcode(), isbt.compound([COI, DIN, PC]),
        "]C4" + DIN.barcode() + PC.barcode()]
ROOT = Path(__file__).resolve().parents[1]


def _outcome(fn: object, raw: object) -> tuple[str, object]:
    try:
        return ("scan", fn(raw))  # type: ignore[operator]
    except (ScanError, ScanRefused) as e:
        return ("refused", e.reason)


def _mutations(draw: st.DrawFn) -> str:
    raw = draw(st.sampled_from(GOOD))
    for _ in range(draw(st.integers(0, 3))):
        i = draw(st.integers(0, len(raw)))
        op = draw(st.sampled_from(["insert", "delete", "replace", "case"]))
        ch = draw(st.sampled_from(list("\x1d\x1b\r\n\t =<+&/]0123456789ACFDW*é")))
        if op == "insert":
            raw = raw[:i] + ch + raw[i:]
        elif op == "delete":
            raw = raw[:i] + raw[i + 1:]
        elif op == "replace":
            raw = raw[:i] + ch + raw[i + 1:]
        else:
            raw = raw.lower()
    return raw


mutated = st.composite(_mutations)


@settings(max_examples=2_000)
@given(st.one_of(st.text(), mutated()))
@example("")
@example("\x00")
@example("X" * 10_000)
def test_read_scan_is_the_parser_with_a_service_refusal(raw: str) -> None:
    """Same scan as the domain parser for every input, and its exact reason when it refuses."""
    assert _outcome(read_scan, raw) == _outcome(parse_scan, raw)


@pytest.mark.parametrize("raw", GOOD)
def test_good_scans_read(raw: str) -> None:
    scan = read_scan(raw)
    assert scan == parse_scan(raw)
    assert scan.kind in {"label", "din", "coi_id", "product_code", "compound"}


def test_refusal_is_a_service_refusal_that_says_what_to_do() -> None:
    with pytest.raises(ScanRefused) as info:
        read_scan("HELLO")
    e = info.value
    assert isinstance(e, Refused) and e.recorded_index is None
    assert str(e) == e.reason
    assert "not a code coi reads" in e.reason and "ISBT 128" in e.reason


@pytest.mark.parametrize("raw", [None, b"COI1", 17, ["COI1"]])
def test_non_text_is_refused_not_crashed(raw: object) -> None:
    with pytest.raises(ScanRefused, match="not text"):
        read_scan(raw)  # type: ignore[arg-type]


def test_label_text_reads_back_as_that_label() -> None:
    scan = read_scan(label_text(COI.text, "D00001"))
    assert isinstance(scan, LabelScan)
    assert (scan.label.coi, scan.label.item, scan.label.signed) == (COI.text, "D00001", False)
    with pytest.raises(ScanRefused, match="item id"):
        label_text(COI.text, "X00001")


def test_printed_coi() -> None:
    assert printed_coi(COI.text) == COI.printed()
    with pytest.raises(ScanRefused):
        printed_coi("CHA99992")


def test_types_are_the_parsers() -> None:
    assert isinstance(read_scan(DIN.barcode()), DinScan)
    assert isinstance(read_scan(isbt.compound([COI, DIN])), CompoundScan)


def _calls_of_parse_scan(path: Path) -> list[int]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and any(a.name == "parse_scan" for a in node.names):
            lines.append(node.lineno)
        if isinstance(node, ast.Attribute) and node.attr == "parse_scan":
            lines.append(node.lineno)
    return lines


def test_nothing_but_read_scan_calls_the_domain_parser() -> None:
    """One entry point: outside the domain itself, only ``coi.service.scans`` parses scans."""
    allowed = {ROOT / "coi" / "service" / "scans.py"}
    found = {}
    for path in sorted((ROOT / "coi").rglob("*.py")):
        if path in allowed or (ROOT / "coi" / "domain") in path.parents:
            continue
        lines = _calls_of_parse_scan(path)
        if lines:
            found[str(path.relative_to(ROOT))] = lines
    assert found == {}, f"scans parsed outside coi.service.scans.read_scan: {found}"
