"""Throughput of coi.domain.scan.parse_scan over a realistic mix of scans.

A plain script, not a test: ``python bench/bench_scan.py``. It prints scans per second for
``parse_scan`` and for a baseline measured in the same run on the same strings (``str.upper()``
plus one regular-expression match: the least any scan parser does), and their ratio. The target is
at least 50,000 scans/s, far above what a person with a handheld scanner produces (~2/s), so
that parsing never shows up next to the database and the ledger.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from coi.domain import isbt, payload
from coi.domain.errors import ScanError
from coi.domain.scan import parse_scan

TARGET = 50_000
ROUNDS = 5


def realistic_scans() -> list[str]:
    """Scans as they arrive from keyboard-wedge scanners, test FINs A9990-A9999 only."""
    key = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
    key_id = bytes.fromhex("0A1B2C3D")
    scans: list[str] = []
    for i in range(100):
        coi = isbt.assign_coi_id(f"A999{i % 10}", 2025, i)
        din = isbt.Din(coi.fin, "25", f"{i:06d}")
        pc = isbt.ProductCode("S1234", "1", "00")
        item = f"{'CFDW'[i % 4]}{i:05d}"
        scans += [
            payload.encode(coi.text, item) + "\r",  # the everyday hand-off scan
            "]Q1" + payload.encode(coi.text, item).lower() + "\r",  # Caps Lock
            "]Q1" + payload.encode(coi.text, item) + "\r",
            "]Q1" + payload.sign(coi.text, item, key_id, key) + "\r",  # 4x2 in label
            "]d2" + isbt.compound([coi, din, pc]) + "\r",
            "]C0" + din.barcode() + "\r",
            "]C4" + din.barcode() + pc.barcode() + "\r",
            coi.barcode() + "\t",
            payload.encode(coi.text, item)[:-1] + "0\r",  # a misread: refused
            "HELLO WORLD\r",  # someone typed into the scan field: refused
        ]
    return scans


_BASELINE_RE = re.compile(r"(?:\][A-Za-z][0-9A-Za-z])?([0-9A-Z=<+&/\x1d]+)[\r\n\t]?")


def baseline(raw: str) -> object:
    """The least a scan parser does: upper-case and one regular-expression match."""
    return _BASELINE_RE.fullmatch(raw.upper())


def parse(raw: str) -> object:
    try:
        return parse_scan(raw)
    except ScanError as exc:
        return exc


def rate(fn: Callable[[str], object], scans: list[str]) -> float:
    """Best of ROUNDS runs, in scans per second."""
    best = float("inf")
    repeat = max(1, 50_000 // len(scans))
    for _ in range(ROUNDS):
        start = time.perf_counter()
        for _ in range(repeat):
            for raw in scans:
                fn(raw)
        best = min(best, time.perf_counter() - start)
    return repeat * len(scans) / best


def main() -> int:
    scans = realistic_scans()
    refused = sum(isinstance(parse(s), ScanError) for s in scans)
    parsed = rate(parse, scans)
    base = rate(baseline, scans)
    print(f"scans in the mix:      {len(scans)} ({refused} refused on purpose)")
    print(f"parse_scan:            {parsed:12,.0f} scans/s  ({1e6 / parsed:.1f} us/scan)")
    print(f"baseline upper+regex:  {base:12,.0f} scans/s  ({1e6 / base:.1f} us/scan)")
    print(f"ratio parse/baseline:  {parsed / base:12.3f}")
    ok = parsed >= TARGET
    print(f"target >= {TARGET:,} scans/s: {'met' if ok else 'NOT MET'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
