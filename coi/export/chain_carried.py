"""What a receiver took in, checked against what the sender's entries imply.

Owns the carried-state part of ``coi verify-chain`` (docs/federation.md, "Across the whole
chain", step 2b): a ``handoff.received`` entry holds, signed by the receiving person, the
product's ``state`` as the sender's shipment left it and ``label_issuers``, who issued each of
its labels; the receiver's own replay trusts them from then on. Here both are derived again from
the sender's hand-off file with the very function the receiver used
(:func:`coi.domain.handoff_carry.carry`: the sender's in-scope entries up to the shipment,
replayed under the receiver's process definition) and compared key by key with what the
receiver signed. A difference (an item's status, a window's start, a label's issuer key) is a
problem naming the receipt, the field and the key. A receipt written before a field existed
has no such field: that field is not checked, and the result says so.

Pure: the files were verified before; reads no database.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from coi.domain.handoff_carry import LABEL_ISSUERS, carry
from coi.domain.process import Process
from coi.ledger.entry import Statement
from coi.ledger.errors import VerificationError

__all__ = ["CarriedCheck", "check_carried", "differences"]

STATE = "state"
_FIELDS = (STATE, LABEL_ISSUERS)
_SHOWN = 5  # differences named in one problem; the rest counted


@dataclass(frozen=True)
class CarriedCheck:
    """The outcome for one receipt: ``line`` when it holds (what was compared, or why a field
    was not), ``problem`` when it does not."""

    line: str | None = None
    problem: str | None = None


def _show(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 80 else text[:77] + "..."


def differences(path: str, signed: Any, derived: Any) -> list[str]:
    """Where ``signed`` (what the receiver recorded) differs from ``derived`` (what the sender's
    entries imply), each named by its dotted path (``state.items.F00001.status``). Objects are
    compared key by key; anything else as a whole, its type included (``True`` is not ``1``)."""
    if isinstance(signed, Mapping) and isinstance(derived, Mapping):
        out: list[str] = []
        for key in sorted(set(signed) | set(derived), key=str):
            at = f"{path}.{key}"
            if key not in signed:
                out.append(f"{at} is missing at the receiver (the sender's entries give "
                           f"{_show(derived[key])})")
            elif key not in derived:
                out.append(f"{at} is {_show(signed[key])} at the receiver, but the sender's "
                           "entries have no such key")
            else:
                out.extend(differences(at, signed[key], derived[key]))
        return out
    if _same(signed, derived):
        return []
    return [f"{path} is {_show(signed)} at the receiver, {_show(derived)} by the sender's "
            "entries"]


def _same(a: Any, b: Any) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, Mapping):
        return not differences("", a, b)
    return bool(a == b)


def check_carried(sender_entries: Mapping[int, Statement], sender_origin: str,
                  shipment_index: int, receiver_origin: str, index: int, receipt: Statement,
                  process: Process | str) -> CarriedCheck:
    """Compare the ``state`` and ``label_issuers`` the receipt at ``receiver_origin`` entry
    ``index`` signed with what ``sender_entries`` (the in-scope entries of the sender's hand-off
    file) imply at ``shipment_index``, replayed under ``process`` (the receiver's definition,
    or why it cannot be had)."""
    where = (f"the receipt at {receiver_origin} entry {index} (of the shipment at "
             f"{sender_origin} entry {shipment_index})")
    present = [f for f in _FIELDS if f in receipt.data]
    absent = [f for f in _FIELDS if f not in receipt.data]
    skipped = (f"{' and '.join(absent)} not checked: the receipt was written before "
               f"{'they' if len(absent) > 1 else 'it'} existed") if absent else ""
    if not present:
        return CarriedCheck(line=f"{where}: {skipped}")
    if isinstance(process, str):
        return CarriedCheck(problem=f"what {where} took in is not checked: the receiver's "
                                    f"process definition cannot be had ({process})")
    try:
        derived = carry(process, sender_entries, shipment_index, str(receipt.subject),
                        sender_origin)
    except VerificationError as e:
        return CarriedCheck(problem=f"what {where} took in is not what the sender's entries "
                                    f"imply: they cannot be replayed under the receiver's "
                                    f"process ({e})")
    if derived is None:
        return CarriedCheck(problem=f"what {where} took in is not what the sender's entries "
                                    "imply: they hold no process step of the product")
    theirs = {STATE: derived.state, LABEL_ISSUERS: derived.label_issuers}
    found = [d for f in present for d in differences(f, receipt.data[f], theirs[f])]
    if found:
        more = f"; and {len(found) - _SHOWN} more" if len(found) > _SHOWN else ""
        return CarriedCheck(problem=f"{where} took in what the sender's entries do not imply: "
                                    f"{'; '.join(found[:_SHOWN])}{more}")
    s = derived.state
    running = len(s["windows"])
    what = (f"{len(s['items'])} item(s), {running} window(s) running, {len(s['labels'])} "
            f"label(s), {len(derived.label_issuers)} issuer(s)")
    matched = " and ".join("the carried state" if f == STATE else "the label issuers"
                           for f in present)
    verb = "match" if len(present) > 1 else "matches"
    line = f"{where}: {matched} {verb} the sender's entries ({what})"
    return CarriedCheck(line=line + (f"; {skipped}" if skipped else ""))
