"""The patient's identity as the screens show it: one line from the PHI store.

Where a person compares the bag with the patient (the bedside station), the screen shows the
name and date of birth from the PHI store (``CoiService.patient_identity``), never from the
ledger; ``erased`` where they were once the patient's key is destroyed. A record that cannot be
read (no PHI key, not on file, altered) is said as such: the wristband scan still decides.
"""

from __future__ import annotations

from coi.service.chain import CoiService
from coi.service.errors import ConfigError, Refused, VerificationError
from coi.service.phi import ERASED


def identity_line(svc: CoiService, coi: str) -> tuple[str, bool]:
    """(``"NAME  ·  born YYYY-MM-DD"``, True), or (what stands instead, False): ``erased``, or
    why the name cannot be shown."""
    try:
        found = svc.patient_identity(coi)
    except Refused as e:
        return f"not on file: {e.reason}", False
    except (ConfigError, VerificationError) as e:
        return f"cannot be read: {e}", False
    if found == ERASED:
        return "name: erased  ·  date of birth: erased", False
    assert not isinstance(found, str)
    return f"{found.name}  ·  born {found.date_of_birth}", True
