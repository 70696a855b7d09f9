"""Labels keyed by hand at the command line, checked as a scan station checks a scan.

A scan station checks every coi label it reads against the ledger before anything is recorded
(:func:`coi.service.labels.trust_problem`: the signature of a signed label, with the issuer's
key here or the partner's recorded at its receipt; a plain copy of a signed label; a voided
label). ``coi record`` takes the same labels keyed by hand (a bag's or a shipping document's
code in a scan-only field, with a witness and a reason): :func:`check_keyed_labels` applies
the same check to them, so the bedside check or a receipt cannot be passed at the command line
with a label a station would refuse. The refusal is recorded like a station's.
"""

from __future__ import annotations

from collections.abc import Mapping

from coi.domain.keyed import keyed_text
from coi.service.chain import CoiService
from coi.service.errors import Refused
from coi.service.labels import trust_problem
from coi.service.scans import ScanRefused, read_scan

__all__ = ["check_keyed_labels"]

_LABEL_CHECKS = frozenset({"bag", "document"})


def check_keyed_labels(svc: CoiService, step: str, coi: str, fields: Mapping[str, str], *,
                       by: str, station: str = "coi record") -> None:
    """Refuse (``Refused``, recorded) a keyed label of ``step``'s fields that a scan station
    would refuse. A value that is not a coi label at all is left to the step's own checks."""
    spec = svc.process().step(step)
    if spec is None:
        return
    for name, value in fields.items():
        field = spec.fields.get(name)
        if field is None or field.check not in _LABEL_CHECKS:
            continue
        try:
            scan = read_scan(keyed_text(value))
        except ScanRefused:
            continue  # not a label's text: the keyed check refuses it with its own reason
        problem = trust_problem(svc, scan)
        if problem is not None:
            reason = f"{field.title}: {problem}"
            idx = svc.record_scan_refusal(station=station, by=by, raw=value, reason=reason,
                                          expected=coi.strip().upper())
            raise Refused(reason, recorded_index=idx)
