"""What the rules and the ledger exchange: signers, facts, attempts and decisions.

This module owns the value types at the boundary between the ledger (which records signed
entries) and the rules of a process (which judge them):

* :class:`Signer` and :class:`Fact` — one ledger entry as the domain sees it;
* :class:`Attempt` — what a person is trying to record now, as raw text;
* :class:`Decision` and :class:`AutoDeviation` — the rules' answer, and the deviations the
  service must open because of it;
* :func:`patient_commitment` — the only trace of a patient that enters a fact.

Frozen dataclasses and one pure function; no rule, no state, no I/O.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Attempt", "AutoDeviation", "Decision", "Fact", "Signer", "patient_commitment"]


@dataclass(frozen=True)
class Signer:
    """A person signing an entry, as the ledger knows them at the time of signing."""

    user: str
    name: str
    meaning: str
    roles: frozenset[str]


@dataclass(frozen=True)
class Fact:
    """One ledger entry, as the domain sees it. ``signers[0]`` is the author, the rest witnesses."""

    index: int
    time_ms: int
    type: str
    subject: str  # the CoI identifier text
    data: Mapping[str, Any]  # JSON values: str, int, bool, None, list, dict
    signers: tuple[Signer, ...]


@dataclass(frozen=True)
class Attempt:
    """What a person is trying to record now; ``fields`` are raw text from the CLI or TUI.

    ``entry`` says how each scan-only field was entered (``scanner``, ``pasted``, ``typed`` at a
    scan station; ``keyed`` by hand, the default); ``keyed_reason`` is why one was keyed.
    """

    step: str
    subject: str
    item: str | None
    fields: Mapping[str, str]
    actor: Signer
    witness: Signer | None
    now_ms: int
    entry: Mapping[str, str] = field(default_factory=dict)
    keyed_reason: str | None = None


@dataclass(frozen=True)
class AutoDeviation:
    """A deviation the service must open (as a ``deviation_open`` entry) because of a rule.

    ``fields`` are ready to use as an :class:`Attempt`'s fields for the deviation step, and
    ``data`` is the JSON the entry carries (what the rules produce for that attempt).
    """

    subject: str
    kind: str
    description: str
    window: str | None = None
    item: str | None = None

    @property
    def fields(self) -> dict[str, str]:
        out = {"kind": self.kind, "description": self.description}
        if self.window is not None:
            out["window"] = self.window
        return out

    @property
    def data(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.fields)
        if self.item is not None:
            out["item"] = self.item
        return out


@dataclass(frozen=True)
class Decision:
    """The answer to an :class:`Attempt`.

    Allowed: ``entry_type`` and ``data`` (typed JSON-profile values: ints and strings, never
    floats) are what to append. Refused: ``reasons`` say why, one sentence each. Either way,
    ``auto_deviations`` lists deviations the service must open now.
    """

    step: str
    allowed: bool
    entry_type: str | None = None
    data: Mapping[str, Any] = field(default_factory=dict)
    reasons: tuple[str, ...] = ()
    auto_deviations: tuple[AutoDeviation, ...] = ()


def patient_commitment(secret: bytes, patient_id: str) -> str:
    """The keyed commitment to a patient identifier: HMAC-SHA256(secret, UTF-8 id), hex.

    Only this goes into the ledger; erasing ``secret`` later leaves every entry verifiable while
    no-one can test a guessed identifier against it any more.
    """
    if not secret:
        raise ValueError("the patient secret is empty")
    if not patient_id:
        raise ValueError("the patient identifier is empty")
    return hmac.new(secret, patient_id.encode("utf-8"), hashlib.sha256).hexdigest()
