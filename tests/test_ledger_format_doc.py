"""docs/ledger-format.md's worked example is exactly what the code produces today."""

from pathlib import Path

import pytest

from coi.ledger import example

DOC = Path(__file__).resolve().parent.parent / "docs" / "ledger-format.md"


@pytest.mark.req("OFFLINE-VERIFY")
def test_worked_example_matches_the_code() -> None:
    doc = DOC.read_text(encoding="utf-8")
    block = example.build()
    assert block in doc, (
        "docs/ledger-format.md is out of date: run python -m coi.ledger.example --write "
        "docs/ledger-format.md"
    )


@pytest.mark.req("OFFLINE-VERIFY")
def test_worked_example_hashes_are_independently_reproducible() -> None:
    """Recompute entry 1's hash from the document's own bytes with nothing but hashlib."""
    import base64
    import hashlib
    import re

    doc = DOC.read_text(encoding="utf-8")
    envelope = re.search(r"envelope \(the Merkle leaf\):\n\n```\n(.*?)\n```", doc, re.S)
    assert envelope is not None
    env = envelope.group(1).encode()
    stated = re.search(r"entry hash = SHA-256\(0x00 ‖ envelope\) = `([0-9a-f]{64})`", doc)
    assert stated is not None
    assert hashlib.sha256(b"\x00" + env).hexdigest() == stated.group(1)
    payload = re.search(rb'"payload":"([^"]+)"', env)
    assert payload is not None
    stmt = base64.b64decode(payload.group(1))
    assert b'"index":1' in stmt
