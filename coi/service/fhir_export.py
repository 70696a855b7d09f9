"""``coi export --fhir``: a product, a period or the whole log as a FHIR R5 Bundle file.

Reads the entries in scope from the ledger, with their signatures, and hands them to
:func:`coi.export.fhir.fhir_bundle` with the process definition in force on this ledger (its
step titles); the Bundle is written atomically. The audit bundle (docs/export.md) is
:mod:`coi.service.exporting`'s.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from coi.domain.loader import load_process
from coi.export.bundle import Scope, scope_rows
from coi.export.fhir import fhir_bundle
from coi.ledger import jcs
from coi.ledger.entry import Statement
from coi.service.chain import definition_in_force
from coi.service.files import write_atomically
from coi.service.ledger import LedgerService


def export_fhir(svc: LedgerService, scope: Scope, output: Path, *, overwrite: bool = True
                ) -> int:
    """Write the FHIR R5 Bundle of ``scope`` to ``output``; return how many resources it holds.
    An existing ``output`` is replaced only with ``overwrite``.

    Raises ``ConfigError`` when the ledger is not initialised or the file cannot be written.
    """
    head = svc.require_initialised()
    sigs: dict[int, list[str]] = {}

    def statements() -> Iterator[Statement]:
        for row in scope_rows(svc.store, scope, head.size):
            sigs[row.index] = [s["sig"] for s in jcs.decode(row.signatures)]
            yield Statement.from_json(jcs.decode(row.statement))

    found = definition_in_force(svc)  # the ledger's own definition, for its step titles
    process = found[0] if found is not None else load_process()
    bundle = fhir_bundle(statements(), process, origin=head.origin, signatures=sigs)
    write_atomically(output, (json.dumps(bundle, indent=2, ensure_ascii=False) + "\n")
                     .encode("utf-8"), overwrite=overwrite)
    return len(bundle["entry"])
