"""HL7 FHIR R5 view of ledger entries: BiologicallyDerivedProduct and Provenance, as a Bundle.

Owns the mapping from signed statements to FHIR, built and validated with ``fhir.resources``
(8.x, R5):

* one ``BiologicallyDerivedProduct`` per item a step creates (``creates`` in the process: the
  collection bag ``C00001`` at apheresis, final bags ``F00001``… at cryopreservation), with the
  CoI identifier (the statement's subject) and the item id as identifiers, the DIN as
  ``biologicalSourceEvent``, the collection's collector and time, final products' ``parent``
  links to the collection, and ``productStatus`` from the last step that touched the item;
* one ``Provenance`` per process step or hand-off entry: ``target`` the item named (``data.item``)
  or every product of the chain so far (a logical reference to the CoI before any exists),
  ``occurredDateTime``/``recorded`` from the statement's time, ``activity`` the step, the author
  as ``performer`` agent and any witness as ``witness`` agent, and each Ed25519 signature;
* QC as a history: every QC result, failed ones included, is a ``property`` of each final
  product (test, result, value, which result a retest follows and why) and its Provenance's
  activity says the same; a retest's Provenance names the one it follows as a ``revision``
  entity, an exceptional release names the physician's request as a ``source`` entity.

Identifiers use ``urn:`` systems under the log's origin; ISBT 128 values under the ISBT 128 OID.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fhir.resources.biologicallyderivedproduct import BiologicallyDerivedProduct
from fhir.resources.bundle import Bundle
from fhir.resources.provenance import Provenance

from coi.domain.process import Process
from coi.ledger.entry import Statement

ISBT128 = "urn:oid:2.16.840.1.113883.6.18"
COI_SYSTEM = "urn:coi:chain-of-identity"
ITEM_SYSTEM = "urn:coi:item"
ENTRY_TYPE_SYSTEM = "urn:coi:entry-type"
PARTICIPANT = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"
PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
SIGNATURE_TYPE = "urn:iso-astm:E1762-95:2013"
SIG_CODES = {"authored": ("1.2.840.10065.1.12.1.1", "Author's Signature"),
             "witnessed": ("1.2.840.10065.1.12.1.5", "Witness Signature"),
             "verified": ("1.2.840.10065.1.12.1.5", "Witness Signature"),
             "reviewed": ("1.2.840.10065.1.12.1.6", "Review Signature"),
             "approved": ("1.2.840.10065.1.12.1.7", "Approval Signature"),
             "released": ("1.2.840.10065.1.12.1.7", "Approval Signature"),
             "rejected": ("1.2.840.10065.1.12.1.6", "Review Signature")}
HANDOFF_TYPES = frozenset({"custody.transfer"})


def _iso(st: Statement) -> str:
    """The statement's time as a FHIR dateTime in the site's own zone, with its UTC offset
    (``2026-09-21T10:00:00.000+02:00``: the local time a reader expects, exact to the ms)."""
    try:
        zone: tzinfo = ZoneInfo(st.tz)
    except (ZoneInfoNotFoundError, ValueError):
        zone = UTC
    t = datetime.fromtimestamp(st.time_ms // 1000, tz=zone).replace(
        microsecond=(st.time_ms % 1000) * 1000)
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _urn(origin: str, *parts: str) -> str:
    return "urn:uuid:" + str(uuid.uuid5(uuid.NAMESPACE_URL, "/".join([origin, *parts])))


_UNAVAILABLE = frozenset({"consumed", "rejected", "infused", "returned", "disposed", "destroyed"})


def _status(item_status: str) -> str:
    return "unavailable" if item_status in _UNAVAILABLE else "available"


def _qc_text(st: Statement) -> str:
    """``viability: fail, 50 % (retest of entry 140: OOS investigation)``."""
    d = st.data
    unit = f" {d['unit']}" if isinstance(d.get("unit"), str) else ""
    text = f"{d.get('test')}: {d.get('result')}, {d.get('value')}{unit}"
    if isinstance(d.get("retest_of"), int):
        text += f" (retest of entry {d['retest_of']}: {d.get('retest_reason')})"
    return text


def _linked(st: Statement, effect: str) -> list[tuple[str, int]]:
    """Entries a step names: the result a retest follows, the request a release rests on."""
    ref = st.data.get("retest_of" if effect == "qc_result" else "physician_request")
    if isinstance(ref, bool) or not isinstance(ref, int):
        return []
    return [("revision" if effect == "qc_result" else "source", ref)]


class _Product:
    def __init__(self, coi: str, item: str, kind: str, created: Statement) -> None:
        self.coi, self.item, self.kind, self.created = coi, item, kind, created
        self.status = "created"
        self.parent: str | None = None
        self.qc: list[str] = []


def fhir_bundle(statements: Iterable[Statement], process: Process, *, origin: str,
                signatures: dict[int, list[str]] | None = None) -> dict[str, Any]:
    """A FHIR R5 ``collection`` Bundle for the step entries among ``statements`` (index order).

    ``signatures`` maps an entry index to the base64 Ed25519 signatures, in signer order.
    Every resource is validated by ``fhir.resources`` as it is built; the Bundle too.
    """
    products: dict[tuple[str, str], _Product] = {}
    provenances: list[dict[str, Any]] = []
    # Not ``signatures or {}``: the caller may fill an empty dict while ``statements`` streams.
    sigs = signatures if signatures is not None else {}
    for st in statements:
        step = process.step_for_entry_type(st.type)
        if step is None:
            continue
        item = st.data.get("item") if isinstance(st.data.get("item"), str) else None
        if step.creates is not None:
            kind = process.items[step.creates.kind]
            count = step.creates.count
            if count is None:
                raw = st.data.get(step.creates.count_field or "")
                count = raw if isinstance(raw, int) else 0
            existing = sum(1 for (c, _), p in products.items()
                           if c == st.subject and p.kind == kind.name)
            parents = [p.item for (c, _), p in products.items()
                       if c == st.subject and p.kind == "collection"]
            for n in range(existing + 1, existing + count + 1):
                p = _Product(st.subject, f"{kind.prefix}{n:05d}", kind.name, st)
                p.parent = parents[-1] if parents and kind.name != "collection" else None
                products[(st.subject, p.item)] = p
        if item is not None and step.item_to and (st.subject, item) in products:
            products[(st.subject, item)].status = step.item_to
        elif step.effect == "final" and item is None and step.item_to:
            for (c, _), p in products.items():
                if c == st.subject and _status(p.status) == "available":
                    p.status = step.item_to
        if step.effect == "qc_result":
            for (c, _), p in products.items():
                if c == st.subject and p.kind != "collection":
                    p.qc.append(f"entry {st.index}: {_qc_text(st)}")
        for kind_name, status in step.items_to.items():
            for (c, _), p in products.items():
                if c == st.subject and p.kind == kind_name:
                    p.status = status
        targets = ([(st.subject, item)] if item is not None and (st.subject, item) in products
                   else [k for k in products if k[0] == st.subject])
        if st.type.startswith("step.") or st.type in HANDOFF_TYPES:
            title = f"{step.title}: {_qc_text(st)}" if step.effect == "qc_result" else step.title
            provenances.append(_provenance(st, title, targets, origin, sigs.get(st.index, []),
                                           _linked(st, step.effect)))
    entries: list[dict[str, Any]] = []
    for (coi, item), p in products.items():
        res = _product(p, origin)
        BiologicallyDerivedProduct.model_validate(res)
        entries.append({"fullUrl": _urn(origin, coi, item), "resource": res})
    for prov in provenances:
        Provenance.model_validate(prov)
        entries.append({"fullUrl": _urn(origin, "entry", prov["id"]), "resource": prov})
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": entries,
              "identifier": {"system": "urn:coi:log", "value": origin}}
    Bundle.model_validate(bundle)
    return bundle


def _product(p: _Product, origin: str) -> dict[str, Any]:
    res: dict[str, Any] = {
        "resourceType": "BiologicallyDerivedProduct",
        "id": f"{p.item.lower()}-{uuid.uuid5(uuid.NAMESPACE_URL, origin + '/' + p.coi).hex[:12]}",
        "productCategory": {"system": "http://hl7.org/fhir/product-category", "code": "cells"},
        "identifier": [{"system": COI_SYSTEM, "value": p.coi},
                       {"system": ITEM_SYSTEM, "value": f"{p.coi}/{p.item}"}],
        "productStatus": {"system": "http://hl7.org/fhir/biologicallyderived-product-status",
                          "code": _status(p.status), "display": p.status},
    }
    din = p.created.data.get("din")
    if isinstance(din, str):
        res["biologicalSourceEvent"] = {"system": ISBT128, "value": din}
    if p.kind == "collection":
        res["collection"] = {"collector": {"display": p.created.author.name,
                                           "identifier": {"system": "urn:coi:user",
                                                          "value": p.created.author.user}},
                             "collectedDateTime": _iso(p.created)}
    if p.parent is not None:
        res["parent"] = [{"reference": _urn(origin, p.coi, p.parent)}]
    if p.qc:
        res["property"] = [{"type": {"coding": [{"system": "urn:coi:qc", "code": "qc-result"}],
                                     "text": "QC result"}, "valueString": text}
                           for text in p.qc]
    return res


def _agent(ref_name: str, user: str, code: str, system: str, display: str) -> dict[str, Any]:
    coding = {"system": system, "code": code, "display": display}
    who = {"display": ref_name, "identifier": {"system": "urn:coi:user", "value": user}}
    return {"type": {"coding": [coding]}, "who": who}


def _provenance(st: Statement, title: str, targets: list[tuple[str, str]], origin: str,
                sigs: list[str], linked: Sequence[tuple[str, int]] = ()) -> dict[str, Any]:
    target: list[dict[str, Any]] = ([{"reference": _urn(origin, c, i)} for c, i in targets] or
              [{"type": "BiologicallyDerivedProduct",
                "identifier": {"system": COI_SYSTEM, "value": st.subject}}])
    agents = [_agent(st.author.name, st.author.user, "performer", PARTICIPANT, "Performer")]
    for s in st.signers[1:]:
        agents.append(_agent(s.name, s.user, "WIT", PARTICIPATION, "witness"))
    prov: dict[str, Any] = {
        "resourceType": "Provenance",
        "id": f"entry-{st.index}",
        "target": target,
        "occurredDateTime": _iso(st),
        "recorded": _iso(st),
        "activity": {"coding": [{"system": ENTRY_TYPE_SYSTEM, "code": st.type, "display": title}],
                     "text": title},
        "agent": agents,
    }
    if linked:
        prov["entity"] = [{"role": role, "what": {"reference": _urn(origin, "entry", f"entry-{n}"),
                                                   "display": f"entry {n}"}}
                          for role, n in linked]
    signatures = []
    for s, sig in zip(st.signers, sigs, strict=False):
        code, display = SIG_CODES.get(s.meaning, SIG_CODES["authored"])
        signatures.append({"type": [{"system": SIGNATURE_TYPE, "code": code, "display": display}],
                           "when": _iso(st),
                           "who": {"display": s.name,
                                   "identifier": {"system": "urn:coi:user", "value": s.user}},
                           "sigFormat": "application/vnd.coi.statement+json", "data": sig})
    if signatures:
        prov["signature"] = signatures
    return prov
