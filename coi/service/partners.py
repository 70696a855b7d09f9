"""Partner organisations: who this site exchanges hand-offs with, pinned in its own ledger.

Owns the ``partner.add`` and ``partner.remove`` entries (signed by an administrator, subject
``partner/<name>``) and the partner registry replayed from them: nothing but the ledger holds it
(docs/federation.md, "Partners"). A partner is a name this site gives it, its FIN, its role in
the chain (collection, manufacturing or treatment) and its log verifier key (C2SP note key,
named for its origin): what its checkpoints and hand-off files must be signed with.

Rules: a name is ``NAME_RE`` matched whole; no two partners share a FIN, an origin or a log key,
and none has this site's own FIN, origin or log key (CoI identifiers carry the FIN of the site
that assigned them, so a FIN names one organisation across the network). Checked under the
append's write lock against the registry replayed at that index.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from coi.ledger.entry import SignedEntry, read_statement
from coi.ledger.errors import LedgerError, ProfileError, VerificationError
from coi.ledger.note import NoteVerifier, parse_verifier_key
from coi.ledger.note_keys import ALG_ED25519
from coi.ledger.registry import KEY_EVENT_TYPES, KeyRegistry
from coi.service.errors import Refused
from coi.service.ledger import LedgerService
from coi.service.ledger_core import Party, Unlocked, plain_text

PARTNER_ADD = "partner.add"
PARTNER_REMOVE = "partner.remove"
PARTNER_TYPES = frozenset({PARTNER_ADD, PARTNER_REMOVE})
ROLES = ("collection", "manufacturing", "treatment")
NAME_RE = re.compile(r"[a-z][a-z0-9-]{1,62}")
"""A partner's name at this site: a lowercase letter, then 1 to 62 of ``a-z 0-9 -``."""
FIN_RE = re.compile(r"[A-NP-Z1-9][0-9]{4}")
_ADD_KEYS = frozenset({"name", "fin", "role", "log_key"})
_REMOVE_KEYS = frozenset({"name", "reason"})


@dataclass(frozen=True)
class Partner:
    name: str
    fin: str
    role: str
    log_key: str  # its log verifier key string, as pinned
    origin: str  # the key's name: the partner's log origin
    added_at: int  # the index of its partner.add entry

    @property
    def verifier(self) -> NoteVerifier:
        return parse_verifier_key(self.log_key)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "fin": self.fin, "role": self.role, "origin": self.origin,
                "log_key": self.log_key, "added_at": self.added_at}


def subject(name: str) -> str:
    return f"partner/{name}"


def check_name(name: str) -> str:
    if not isinstance(name, str) or NAME_RE.fullmatch(name) is None:
        raise Refused(f"partner name {name!r} is not valid: a lowercase letter, then 1 to 62 "
                      "lowercase letters, digits or '-' (e.g. acme-cell-factory)")
    return name


def check_log_key(text: str) -> NoteVerifier:
    try:
        v = parse_verifier_key(text)
    except (LedgerError, ValueError) as e:
        reason = getattr(e, "reason", None) or str(e)
        raise Refused(f"--log-key is not a log verifier key string ({reason}): ask the partner "
                      "for the output of `coi log-key`") from None
    if v.algorithm != ALG_ED25519:
        raise Refused("--log-key is a witness (cosigner) key, not a log key: ask the partner "
                      "for the output of `coi log-key`")
    return v


def _data(st_data: Mapping[str, Any], keys: frozenset[str], index: int) -> Mapping[str, Any]:
    if set(st_data) != keys or not all(isinstance(st_data[k], str) for k in keys):
        raise VerificationError(f"partner entry data must be exactly the strings {sorted(keys)}",
                                index=index)
    return st_data


class PartnerRegistry:
    """The partners in force, as the ledger's ``partner.*`` entries made them."""

    def __init__(self) -> None:
        self.partners: dict[str, Partner] = {}

    def get(self, name: str) -> Partner | None:
        return self.partners.get(name)

    def by_origin(self, origin: str) -> Partner | None:
        return next((p for p in self.partners.values() if p.origin == origin), None)

    def problem_adding(self, p: Partner, own_fin: str, own_origin: str, own_key: str
                       ) -> str | None:
        """Why ``p`` cannot be added now, or None."""
        if p.name in self.partners:
            return f"a partner named {p.name} is already registered (remove it first)"
        if p.fin == own_fin:
            return f"FIN {p.fin} is this site's own FIN: a FIN names one organisation"
        if p.origin == own_origin or parse_verifier_key(own_key).public_key == \
                p.verifier.public_key:
            return "that log key or origin is this site's own"
        for q in self.partners.values():
            if q.fin == p.fin:
                return f"FIN {p.fin} is already partner {q.name}'s: two partners cannot share one"
            if q.origin == p.origin or q.verifier.public_key == p.verifier.public_key:
                return f"that log key or origin is already partner {q.name}'s"
        return None

    def apply(self, index: int, type_: str, data: Mapping[str, Any]) -> None:
        if type_ == PARTNER_ADD:
            d = _data(data, _ADD_KEYS, index)
            try:
                v = parse_verifier_key(d["log_key"])
            except (LedgerError, ValueError):
                raise VerificationError("partner.add names a log key that does not parse",
                                        index=index) from None
            if (NAME_RE.fullmatch(d["name"]) is None or FIN_RE.fullmatch(d["fin"]) is None
                    or d["role"] not in ROLES or v.algorithm != ALG_ED25519):
                raise VerificationError("partner.add data is not a valid partner", index=index)
            if d["name"] in self.partners:
                raise VerificationError(f"partner {d['name']} is added twice", index=index)
            self.partners[d["name"]] = Partner(d["name"], d["fin"], d["role"], d["log_key"],
                                               v.name, index)
        else:
            d = _data(data, _REMOVE_KEYS, index)
            if self.partners.pop(d["name"], None) is None:
                raise VerificationError(f"partner.remove of {d['name']!r}, not a partner",
                                        index=index)


def replay(svc: LedgerService, *, tx: Any = None, size: int | None = None) -> PartnerRegistry:
    """The partner registry from the stored ``partner.*`` entries (below ``size`` if given).

    The key events are replayed alongside, so that each partner entry is checked to be
    approved by an administrator with the key valid at its index (as ``coi verify`` judges
    keys: by position)."""
    reg = PartnerRegistry()
    keys = KeyRegistry()
    for row in svc.store.rows_of_types(PARTNER_TYPES | KEY_EVENT_TYPES, tx=tx):
        if size is not None and row.index >= size:
            break
        try:
            st = read_statement(row.statement)
        except ProfileError as e:
            raise VerificationError(f"stored entry is damaged: {e}", index=row.index) from None
        if st.type not in PARTNER_TYPES:
            keys.admit(st)
            continue
        rec = keys.user(st.author.user)
        if (len(st.signers) != 1 or st.author.meaning != "approved" or rec is None
                or not keys.is_admin(st.author.user) or rec.key != st.author.key):
            raise VerificationError("a partner entry not approved by an administrator",
                                    index=row.index)
        reg.apply(row.index, st.type, st.data)
    return reg


def partners(svc: LedgerService) -> list[Partner]:
    """The partners in force, by name."""
    svc.require_initialised()
    return sorted(replay(svc).partners.values(), key=lambda p: p.name)


def partner(svc: LedgerService, name: str) -> Partner:
    """The partner named ``name``, or Refused saying so."""
    p = replay(svc).get(name)
    if p is None:
        raise Refused(f"{name!r} is not a registered partner: `coi partner list` shows them; "
                      "an administrator adds one with `coi partner add`")
    return p


def _need_admin(svc: LedgerService, admin: Unlocked) -> None:
    if not svc.registry().is_admin(admin.user):
        raise Refused(f"{admin.user} is not an administrator: only an administrator changes "
                      "the partners")


def own_fin(svc: LedgerService) -> str:
    g = svc.registry().genesis
    fin = str(g.site.get("fin", "")) if g is not None else ""
    return fin


def add(svc: LedgerService, admin: Unlocked, *, name: str, log_key: str, fin: str, role: str
        ) -> SignedEntry:
    """Pin a partner: its name here, FIN, role and log verifier key (an admin-signed entry)."""
    svc.require_initialised()
    check_name(name)
    if not isinstance(fin, str) or FIN_RE.fullmatch(fin) is None:
        raise Refused(f"--fin {fin!r} is not an ISBT 128 facility identification number (a "
                      "letter other than O or a digit 1-9, then four digits, e.g. A9998)")
    if role not in ROLES:
        raise Refused(f"--role {role!r} is not one of {', '.join(ROLES)}")
    v = check_log_key(log_key)
    _need_admin(svc, admin)
    new = Partner(name, fin, role, log_key, v.name, -1)

    def check(ctx: Any, _reg: Any) -> None:
        problem = replay(svc, tx=ctx.tx, size=ctx.size).problem_adding(
            new, own_fin(svc), svc.origin(ctx.tx), svc.log_verifier_key())
        if problem is not None:
            raise Refused(problem)

    return svc.append(PARTNER_ADD, subject(name),
                      {"name": name, "fin": fin, "role": role, "log_key": log_key},
                      [Party(admin, "approved")], check=check, internal=True)


def remove(svc: LedgerService, admin: Unlocked, *, name: str, reason: str) -> SignedEntry:
    """Unpin a partner: its hand-offs are refused from this entry on."""
    svc.require_initialised()
    check_name(name)
    why = plain_text(reason, "the reason")
    _need_admin(svc, admin)

    def check(ctx: Any, _reg: Any) -> None:
        if replay(svc, tx=ctx.tx, size=ctx.size).get(name) is None:
            raise Refused(f"{name!r} is not a registered partner")

    return svc.append(PARTNER_REMOVE, subject(name), {"name": name, "reason": why},
                      [Party(admin, "approved")], check=check, internal=True)


__all__ = ["FIN_RE", "PARTNER_ADD", "PARTNER_REMOVE", "PARTNER_TYPES", "ROLES", "Partner", "Party",
           "PartnerRegistry", "add", "check_name", "own_fin", "partner", "partners", "remove",
           "replay", "subject"]
