"""The chain-of-identity service: the one place the process rules are enforced.

Owns: enrolment (CoI identifier assignment, the patient kept outside the ledger as a keyed
commitment), recording process steps (checked against the process definition under the ledger's
write lock, so no two writers can both pass a rule that only one may), refusals recorded as
signed site entries, deviations opened automatically when a window is exceeded, the product
state table kept in step with the ledger, the timeline and status views, and the replay of every
process entry during ``coi verify``. The CLI and the TUI call this; neither holds a rule.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import unicodedata
import zoneinfo
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection

from coi.db.repo import AppendContext, ChainStore
from coi.domain import isbt
from coi.domain.process import Process, load_process, shipped_for
from coi.domain.state import (
    Attempt,
    AutoDeviation,
    ChainState,
    Decision,
    Fact,
    ReplayError,
    Signer,
    attempt_from_fact,
    check,
    patient_commitment,
)
from coi.ledger import jcs
from coi.ledger.clock import Clock
from coi.ledger.entry import SITE_USER, CheckedEntry, SignedEntry, Statement, check_entry
from coi.ledger.errors import ProfileError, VerificationError
from coi.ledger.registry import KeyRegistry
from coi.ledger.verify import VerifiedLog
from coi.service.errors import ConfigError, Refused
from coi.service.ledger import LedgerService, Party, Unlocked

_FIN = re.compile(r"[A-NP-Z1-9][0-9]{4}")
PATIENT_KEYS_MAX = 20
SOON_MS = 6 * 3_600_000  # "running out": within 6 hours


# ------------------------------------------------------------------ helpers for the ledger CLI
def process_roles() -> frozenset[str]:
    return frozenset(load_process().roles)


def check_roles(roles: Iterable[str]) -> None:
    known = process_roles()
    bad = sorted(set(roles) - known)
    if bad:
        raise Refused(f"unknown role(s) {', '.join(bad)}; roles are {', '.join(sorted(known))}")


def genesis_extras(fin: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The genesis's site data (FIN) and the process definition in force (by hash)."""
    fin = fin.strip().upper()
    if not _FIN.fullmatch(fin):
        raise ConfigError(f"--fin {fin!r} is not an ISBT 128 facility identification number "
                          "(a letter or digit other than O/0, then 4 digits; A9990–A9999 for "
                          "tests and demos)")
    p = load_process()
    return {"fin": fin}, {"name": p.name, "version": p.version, "sha256": p.sha256}


def process_in_force(svc: LedgerService) -> Mapping[str, Any] | None:
    g = svc.registry().genesis
    return g.process if g is not None else None


def definition_in_force(svc: LedgerService) -> tuple[Process, bytes] | None:
    """The shipped definition (and its exact bytes) whose hash the genesis names, if any."""
    declared = process_in_force(svc)
    return shipped_for(str(declared.get("sha256"))) if declared is not None else None


def refuse_process_types(svc: LedgerService, type_: str, *, subject: str = "",
                         by: str = "") -> None:
    """Once a process is in force, its own entry types go only through `coi record`."""
    if process_in_force(svc) is None:
        return
    found = definition_in_force(svc)
    p = found[0] if found is not None else load_process()
    if type_ in p.entry_types:
        reason = (f"{type_!r} belongs to the process {p.name} {p.version}: record it with "
                  "`coi record`, which checks the process rules")
        idx = svc.record_system("system.refusal", _subject(subject),
                                {"attempted": type_, "by": by, "reasons": [reason],
                                 "via": "coi append"})
        raise Refused(reason, recorded_index=idx)


def verify_all(svc: LedgerService, *, jobs: int = 1, checkpoints: Sequence[str] = ()
               ) -> VerifiedLog:
    """`coi verify`: the ledger, plus the process replay and the state table when in force."""
    svc.require_initialised()
    if process_in_force(svc) is None:
        return svc.verify(jobs=jobs, checkpoints=checkpoints)
    return CoiService(svc).verify(jobs=jobs, checkpoints=checkpoints)


# ------------------------------------------------------------------------------- the service
def signer_of(st: Statement, n: int, reg: KeyRegistry) -> Signer:
    ref = st.signers[n]
    roles = frozenset() if ref.user == SITE_USER else reg.roles_of(ref.user)
    return Signer(user=ref.user, name=ref.name, meaning=ref.meaning, roles=roles)


def fact_of(st: Statement, reg: KeyRegistry) -> Fact:
    return Fact(index=st.index, time_ms=st.time_ms, type=st.type, subject=st.subject,
                data=st.data, signers=tuple(signer_of(st, n, reg) for n in range(len(st.signers))))


AUTHOR_MEANING = {"release": "released", "reject": "rejected",
                  "deviation_disposition": "reviewed", "deviation_close": "reviewed"}


@dataclass(frozen=True)
class Recorded:
    entry: SignedEntry
    auto_deviations: tuple[int, ...] = ()


class _Refusal(Exception):
    def __init__(self, decision: Decision) -> None:
        self.decision = decision


class CoiService:
    def __init__(self, ledger: LedgerService) -> None:
        self.ledger = ledger
        self.store = ChainStore(ledger.engine)
        self._chain: ChainState | None = None
        self._process: Process | None = None
        self._process_source: bytes | None = None
        self._tz: zoneinfo.ZoneInfo | None = None
        ledger.entry_hooks.append(self._on_entry)

    @classmethod
    def open(cls, db: str | None = None, log_key: str | None = None, *,
             clock: Clock | None = None) -> CoiService:
        return cls(LedgerService.open(db, log_key, clock=clock))

    @property
    def clock(self) -> Clock:
        return self.ledger.clock

    # -- the process in force ------------------------------------------------------------------
    def process(self) -> Process:
        if self._process is None:
            self.ledger.require_initialised()
            declared = process_in_force(self.ledger)
            if declared is None:
                raise ConfigError("this ledger was created without a process definition; "
                                  "chain-of-identity commands need one (coi init)")
            found = definition_in_force(self.ledger)
            if found is None:
                p = load_process()
                raise ConfigError(
                    f"this ledger runs process {declared.get('name')} {declared.get('version')} "
                    f"(sha256 {str(declared.get('sha256'))[:12]}…), which this coi does not "
                    f"ship (it ships {p.name} {p.version} and earlier versions by hash): use "
                    "the coi release that created this ledger")
            self._process, self._process_source = found
        return self._process

    def process_source(self) -> bytes:
        """The exact bytes of the process definition in force (what its genesis hash covers)."""
        self.process()
        assert self._process_source is not None
        return self._process_source

    def site(self) -> Mapping[str, Any]:
        g = self.ledger.registry().genesis
        return g.site if g else {}

    def tz(self) -> zoneinfo.ZoneInfo:
        """The site's time zone (fixed by its genesis entry, so read once)."""
        if self._tz is None:
            self._tz = zoneinfo.ZoneInfo(str(self.site().get("tz", "UTC")))
        return self._tz

    # -- state, caught up with the ledger -------------------------------------------------------
    def chain(self, conn: Connection | None = None, *, size: int | None = None) -> ChainState:
        """The chain state caught up with the ledger (callers that read it hold ``lock``)."""
        with self.ledger.lock:
            return self._chain_locked(conn, size)

    @property
    def lock(self) -> Any:
        return self.ledger.lock

    def _chain_locked(self, conn: Connection | None, size: int | None) -> ChainState:
        process = self.process()
        if self._chain is None:
            self._chain = ChainState(process)
        chain = self._chain
        reg = self.ledger.registry(conn, size=size)
        types = process.entry_types
        for row in self.ledger.store.rows_of_types(types, start=chain.last_index + 1, conn=conn):
            if size is not None and row.index >= size:
                break
            try:
                st = Statement.from_json(jcs.decode(row.statement))
            except ProfileError as e:
                raise VerificationError(f"stored entry is damaged: {e}", index=row.index) from None
            chain.apply(fact_of(st, reg))
        return chain

    def _on_entry(self, conn: Connection, entry: SignedEntry) -> None:
        """Inside the append's transaction: apply a process entry and update the state table."""
        if self._process is None or entry.statement.type not in self._process.entry_types:
            return
        chain = self._chain
        if chain is None:
            return
        st = entry.statement
        chain.apply(fact_of(st, self.ledger.registry(conn, size=st.index + 1)))
        product = chain.product(st.subject)
        if product is not None:
            self._put_state(conn, product)

    def _put_state(self, conn: Connection, product: Any) -> None:
        running = [w for w in product.windows.values() if w.ended_index is None]
        first = min(running, key=lambda w: w.deadline_ms) if running else None
        self.store.put_state(
            conn, coi=product.coi, state=product.state,
            data=json.dumps(product.to_json(), sort_keys=True), last_index=product.last_index,
            deadline_ms=first.deadline_ms if first else None,
            deadline_window=first.name if first else None,
            open_deviations=len(product.open_deviations()))

    # -- recording steps -----------------------------------------------------------------------
    def record(self, step: str, coi: str, *, actor: Unlocked, witness: Unlocked | None = None,
               item: str | None = None, fields: Mapping[str, str] | None = None,
               after: Any = None) -> Recorded:
        """Record one process step, or refuse it (the refusal is recorded) with reasons."""
        process = self.process()
        spec = process.step(step)
        coi = _norm_id(coi)
        item = _norm_id(item) if item else None
        fields = {k: unicodedata.normalize("NFC", v) for k, v in (fields or {}).items()}
        if spec is None:
            idx = self._record_refusal(step, coi, actor, witness, item,
                                       [f"unknown step {step!r}"])
            raise Refused(f"unknown step {step!r}; steps are: {', '.join(process.steps)}",
                          recorded_index=idx)
        if spec.effect == "bedside_verification" and "wristband" in fields:
            fields = dict(fields)
            scanned = fields.pop("wristband")
            try:
                fields["wristband_commitment"] = self._wristband_commitment(coi, scanned)
            except Refused as e:  # refused like any other attempt: recorded
                idx = self._record_refusal(step, coi, actor, witness, item, [e.reason])
                raise Refused(e.reason, recorded_index=idx) from None
        decided: list[Decision] = []

        def prepare(ctx: AppendContext, reg: KeyRegistry, now: int
                    ) -> tuple[str, Mapping[str, Any]]:
            chain = self.chain(ctx.conn, size=ctx.size)
            a = _signer(reg, actor.user, AUTHOR_MEANING.get(spec.effect, "authored"))
            w = (_signer(reg, witness.user, "verified" if spec.effect == "bedside_verification"
                         else "witnessed") if witness else None)
            attempt = Attempt(step=step, subject=coi, item=item, fields=fields, actor=a,
                              witness=w, now_ms=now)
            decision = check(process, chain, attempt)
            decided.append(decision)
            if not decision.allowed or decision.entry_type is None:
                raise _Refusal(decision)
            return decision.entry_type, decision.data

        parties = [Party(actor, AUTHOR_MEANING.get(spec.effect, "authored"))]
        if witness is not None:
            parties.append(Party(witness, "verified" if spec.effect == "bedside_verification"
                                 else "witnessed"))
        try:
            entry = self.ledger.append(spec.entry_type, coi, {}, parties, prepare=prepare,
                                       after=after, internal=True)
        except _Refusal as r:
            devs = self._open_auto_deviations(r.decision.auto_deviations, actor)
            idx = self._record_refusal(step, coi, actor, witness, item,
                                       list(r.decision.reasons), devs)
            raise Refused("; ".join(r.decision.reasons), recorded_index=idx) from None
        except Refused as e:
            idx = self._record_refusal(step, coi, actor, witness, item, [e.reason])
            raise Refused(e.reason, recorded_index=idx) from None
        except BaseException:
            self._chain = None  # it may have applied what was not committed
            raise
        devs = self._open_auto_deviations(decided[-1].auto_deviations if decided else (), actor)
        return Recorded(entry=entry, auto_deviations=tuple(devs))

    def _open_auto_deviations(self, devs: Sequence[AutoDeviation], actor: Unlocked) -> list[int]:
        opened: list[int] = []
        step = self.process().step_with_effect("deviation_open")
        if step is None:
            return opened
        for dev in devs:
            try:
                rec = self.record(step.name, dev.subject, actor=actor, item=dev.item,
                                  fields=dev.fields)
                opened.append(rec.entry.index)
            except Refused:
                continue
        return opened

    def _record_refusal(self, step: str, coi: str, actor: Unlocked, witness: Unlocked | None,
                        item: str | None, reasons: list[str], deviations: Sequence[int] = ()
                        ) -> int:
        data: dict[str, Any] = {"attempted": _clip(step), "by": actor.user,
                                "reasons": [_clip(r, 500) for r in reasons]}
        if witness is not None:
            data["witness"] = witness.user
        if item:
            data["item"] = _clip(item)
        if deviations:
            data["deviations_opened"] = list(deviations)
        return self.ledger.record_system("system.refusal", _subject(coi), data)

    def record_scan_refusal(self, *, station: str, by: str, raw: str, reason: str,
                            expected: str | None = None) -> int:
        """A refused scan is itself recorded (what was scanned, shown inertly; why)."""
        data: dict[str, Any] = {"station": _clip(station), "by": by, "scan": _safe_scan(raw),
                                "reasons": [_clip(reason, 500)]}
        if expected:
            data["expected"] = _clip(expected)
        return self.ledger.record_system("system.scan_refused", _subject(expected or "(scan)"),
                                         data)

    def _wristband_commitment(self, coi: str, scanned: str) -> str:
        found = self.store.patient(coi)
        if found is None or found[0] is None:
            raise Refused(f"no patient secret is on file for {coi} (erased or never enrolled): "
                          "the wristband cannot be matched electronically")
        return patient_commitment(found[0], scanned.strip())

    # -- enrolment -----------------------------------------------------------------------------
    def enrol(self, *, actor: Unlocked, patient: Mapping[str, Any], treatment_site: str,
              manufacturing_slot: str, witness: Unlocked | None = None) -> tuple[str, Recorded]:
        """Enrol a patient under a new CoI identifier; only a keyed commitment enters the ledger."""
        pid = _patient_id(patient)
        fin = str(self.site().get("fin", ""))
        if not _FIN.fullmatch(fin):
            raise ConfigError("the site has no valid FIN in its genesis: re-create it with --fin")
        year = dt.datetime.fromtimestamp(self.clock.now_ms() / 1000, dt.UTC).year
        seq = self.store.next_coi_sequence(fin, year % 100)
        coi = isbt.assign_coi_id(fin, year, seq).text
        secret = os.urandom(32)
        identifiers = json.dumps({k: str(v) for k, v in patient.items()}, sort_keys=True)

        def keep_patient(conn: Connection, e: SignedEntry) -> None:
            self.store.put_patient(conn, coi=coi, secret=secret, identifiers=identifiers,
                                   enrolled_index=e.index)

        rec = self.record("enrolment", coi, actor=actor, witness=witness, after=keep_patient,
                          fields={"patient_commitment": patient_commitment(secret, pid),
                                  "treatment_site": treatment_site,
                                  "manufacturing_slot": manufacturing_slot})
        return coi, rec

    def erase_patient(self, admin: Unlocked, coi: str, reason: str) -> int:
        """Erase the patient's secret and identifiers; the ledger stays fully verifiable."""
        if not self.ledger.registry().is_admin(admin.user):
            raise Refused("only an administrator may erase patient data")
        if not self.store.erase_patient(_norm_id(coi), self.clock.now_ms()):
            raise Refused(f"no patient record for {coi}")
        return self.ledger.record_system("system.patient_erased", _norm_id(coi),
                                         {"by": admin.user, "reason": _clip(reason, 500)})

    # -- views ---------------------------------------------------------------------------------
    def local_time(self, ms: int) -> str:
        t = dt.datetime.fromtimestamp(ms / 1000, self.tz())
        return t.strftime("%Y-%m-%d %H:%M:%S %Z (UTC%z)")

    def show(self, coi: str) -> dict[str, Any]:
        """The product's timeline (every entry about it, each signature checked) and state."""
        coi = _norm_id(coi)
        process = self.process()
        with self.lock:
            product = self.chain().product(coi)
            state = product.to_json() if product else None
        rows = self.ledger.store.rows_for_subject(coi)
        if product is None and not rows:
            raise Refused(f"no product {coi} in this ledger")
        origin = self.ledger.origin()
        corrected_by: dict[int, list[int]] = {}
        timeline: list[dict[str, Any]] = []
        for row in rows:
            try:
                st = check_entry(row, origin).statement
                ok = True
            except VerificationError as e:
                try:
                    st = Statement.from_json(json.loads(row.statement))
                except (ValueError, TypeError, ProfileError):
                    timeline.append(_damaged(row.index, row.time_ms, e.reason))
                    continue
                ok = False
            spec = process.step_for_entry_type(st.type)
            if spec is not None and spec.effect == "correction":
                target = st.data.get("corrects")
                if isinstance(target, int):
                    corrected_by.setdefault(target, []).append(st.index)
            timeline.append({
                "index": st.index, "type": st.type,
                "step": spec.title if spec else st.type,
                "time_ms": st.time_ms,
                "time_utc": dt.datetime.fromtimestamp(st.time_ms / 1000, dt.UTC)
                .strftime("%Y-%m-%d %H:%M:%S UTC"),
                "time_local": self.local_time(st.time_ms),
                "signers": [{"user": s.user, "name": s.name, "meaning": s.meaning}
                            for s in st.signers],
                "data": dict(st.data), "signature_ok": ok,
            })
        for t in timeline:
            t["corrected_by"] = corrected_by.get(int(t["index"]), [])
        return {"coi": coi, "state": state,
                "timeline": timeline, "now_ms": self.clock.now_ms()}

    def status(self) -> dict[str, Any]:
        """Products by state, windows running out or exceeded, open deviations (from the table)."""
        self.process()
        now = self.clock.now_ms()
        s = self.store.summary(soon_ms=SOON_MS, now_ms=now)
        return {
            "now_ms": now,
            "by_state": dict(sorted(s["by_state"].items())),
            "windows": [{"coi": c, "state": st, "window": w, "deadline_ms": d,
                         "deadline": self.local_time(d), "remaining_ms": d - now,
                         "exceeded": d < now} for c, st, d, w in s["windows"]],
            "open_deviations": [{"coi": c, "state": st, "count": n}
                                for c, st, n in s["deviations"]],
        }

    def products(self, **kw: Any) -> list[dict[str, Any]]:
        self.process()
        return self.store.product_rows(**kw)

    # -- verification --------------------------------------------------------------------------
    def verify(self, *, jobs: int = 1, checkpoints: Sequence[str] = (),
               progress: Any = None) -> VerifiedLog:
        process = self.process()
        replayed = ChainState(process)

        def hook(c: CheckedEntry, reg: KeyRegistry) -> None:
            st = c.statement
            if st.type not in process.entry_types:
                return
            fact = fact_of(st, reg)
            decision = check(process, replayed, attempt_from_fact(process, fact))
            if not decision.allowed:
                raise VerificationError("the process refuses this entry: "
                                        + "; ".join(decision.reasons), index=st.index)
            if dict(decision.data) != dict(st.data):
                raise VerificationError("its data differ from what the process gives for it",
                                        index=st.index)
            try:
                replayed.apply(fact)
            except ReplayError as e:
                raise VerificationError(e.reason, index=st.index) from None

        result = self.ledger.verify(jobs=jobs, checkpoints=checkpoints, hook=hook,
                                    progress=progress)
        self._compare_tables(replayed)
        return result

    def _compare_tables(self, replayed: ChainState) -> None:
        stored = {coi: json.loads(data) for coi, _s, data, _i in self.store.states()}
        rebuilt = {coi: p.to_json() for coi, p in replayed.products.items()}
        for coi in sorted(set(stored) | set(rebuilt)):
            if stored.get(coi) != rebuilt.get(coi):
                raise VerificationError(
                    f"the product_state table disagrees with the ledger for {coi}: the table "
                    "was changed outside coi (rebuild it from the ledger)")


def _damaged(index: int, time_ms: int, reason: str) -> dict[str, Any]:
    return {"index": index, "type": "(damaged)", "step": f"DAMAGED ENTRY: {reason}",
            "time_ms": time_ms, "time_utc": "?", "time_local": "?", "signers": [], "data": {},
            "signature_ok": False}


def _signer(reg: KeyRegistry, user: str, meaning: str) -> Signer:
    rec = reg.user(user)
    if rec is None:
        raise Refused(f"{user} is not enrolled")
    return Signer(user=user, name=rec.name, meaning=meaning, roles=rec.roles)


def _norm_id(s: str) -> str:
    return unicodedata.normalize("NFC", s).strip().upper()


def _clip(s: str, n: int = 128) -> str:
    out = "".join(ch if ch.isprintable() else f"\\x{ord(ch):02x}" for ch in str(s))
    return out[:n]


def _subject(s: str) -> str:
    """What was typed or scanned, as a statement subject: printable ASCII (other characters
    escaped), at most 128, ``(none)`` for nothing (docs/ledger-format.md section 3)."""
    return _clip(s).encode("ascii", "backslashreplace").decode("ascii")[:128] or "(none)"


def _safe_scan(raw: str) -> str:
    """A scan as recorded: control characters made visible, capped."""
    return _clip(raw.replace("\x1d", "<GS>"), 512)


def _patient_id(patient: Mapping[str, Any]) -> str:
    if not isinstance(patient, Mapping) or not patient:
        raise Refused("the patient file must be a JSON object with at least \"patient_id\"")
    if len(patient) > PATIENT_KEYS_MAX:
        raise Refused(f"the patient file has more than {PATIENT_KEYS_MAX} fields")
    for k, v in patient.items():
        if not isinstance(k, str) or not isinstance(v, str) or len(v) > 200 or not v.isprintable():
            raise Refused(f"patient field {str(k)[:40]!r} must be printable text up to 200 "
                          "characters")
    pid = patient.get("patient_id")
    if not isinstance(pid, str) or not pid.strip():
        raise Refused("the patient file needs \"patient_id\" (the hospital's identifier, as "
                      "printed on the wristband)")
    return pid.strip()
