"""The core of the chain-of-identity service: the process in force, the chain state, recording.

Owns: the process definition the genesis names (and its exact bytes), the site's data and time
zone, the chain state caught up with the ledger (every process entry replayed through the
domain's rules), the product state table kept in step with it inside each append's
transaction, and recording process steps: each is checked against the process definition under
the ledger's write lock (so no two writers can both pass a rule that only one may); a refused
step is itself recorded as a signed site entry, with the deviations opened automatically when a
window is exceeded; a refused scan is recorded the same way.

The rest of ``CoiService`` builds on this class, each part in its own module: enrolment and
patient data (``enrolment``), the timeline and status views (``chain_views``); ``chain`` puts
them together with the process replay that ``coi verify`` runs.
"""

from __future__ import annotations

import unicodedata
import zoneinfo
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Self

from coi.db.chain_repo import ChainStore
from coi.db.repo import AppendContext
from coi.db.tx import Tx
from coi.domain.check import check
from coi.domain.errors import ScanError
from coi.domain.facts import Attempt, AutoDeviation, Decision, Fact, Signer, patient_commitment
from coi.domain.handoff_import import state_types
from coi.domain.keyed import verify_keyed
from coi.domain.lazy import LazyChainState
from coi.domain.loader import load_process, shipped_for
from coi.domain.process import Process
from coi.ledger import jcs
from coi.ledger.clock import Clock
from coi.ledger.entry import SITE_USER, SignedEntry, Statement
from coi.ledger.errors import ProfileError, VerificationError
from coi.ledger.registry import KeyRegistry
from coi.service.errors import ConfigError, Refused
from coi.service.ledger import AfterAppend, LedgerService, Party, Unlocked
from coi.service.projection import state_row


def process_in_force(svc: LedgerService) -> Mapping[str, Any] | None:
    g = svc.registry().genesis
    return g.process if g is not None else None


def definition_in_force(svc: LedgerService) -> tuple[Process, bytes] | None:
    """The shipped definition (and its exact bytes) whose hash the genesis names, if any."""
    declared = process_in_force(svc)
    return shipped_for(str(declared.get("sha256"))) if declared is not None else None


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


class ChainCore:
    """The chain-of-identity service over one ledger service (see the module docstring)."""

    def __init__(self, ledger: LedgerService) -> None:
        self.ledger = ledger
        self.store: ChainStore = ledger.db.chain
        self._chain: LazyChainState | None = None
        self._process: Process | None = None
        self._process_source: bytes | None = None
        self._tz: zoneinfo.ZoneInfo | None = None
        ledger.entry_hooks.append(self._on_entry)
        ledger.reset_hooks.append(self._forget_chain)

    @classmethod
    def open(cls, db: str | None = None, log_key: str | None = None, *,
             clock: Clock | None = None) -> Self:
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
    def chain(self, tx: Tx | None = None, *, size: int | None = None) -> LazyChainState:
        """The chain state caught up with the ledger (callers that read it hold ``lock``)."""
        with self.ledger.lock:
            return self._chain_locked(tx, size)

    @property
    def lock(self) -> Any:
        return self.ledger.lock

    def _chain_locked(self, tx: Tx | None, size: int | None) -> LazyChainState:
        """The lazy chain state: each product is built from its own entries when first asked
        for (``_product_facts``); what other writers appended since is read as one range of
        indexes and applied to the products held."""
        process = self.process()
        if self._chain is None:
            if size is None:
                head = self.ledger.store.head(tx=tx)
                size = head.size if head is not None else 0
            self._chain = LazyChainState(process, self._product_facts, size - 1)
            return self._chain
        chain = self._chain
        reg = self.ledger.registry(tx, size=size)
        for row in self.ledger.store.rows_of_types(state_types(process),
                                                   start=chain.last_index + 1, tx=tx):
            if size is not None and row.index >= size:
                break
            chain.catch_up(fact_of(_statement(row.statement, row.index), reg))
        return chain

    def _product_facts(self, coi: str) -> list[Fact]:
        """One product's process facts, in ledger order: what its state is built from."""
        types = state_types(self.process())
        reg = self.ledger.registry()
        return [fact_of(_statement(row.statement, row.index), reg)
                for row in self.ledger.store.rows_for_subject(coi) if row.type in types]

    def _forget_chain(self) -> None:
        self._chain = None  # it may have applied what was not committed

    def _on_entry(self, tx: Tx, entry: SignedEntry) -> None:
        """Inside the append's transaction: apply a process entry and update the state table."""
        if self._process is None or entry.statement.type not in state_types(self._process):
            return
        chain = self._chain
        if chain is None:
            return
        st = entry.statement
        chain.apply(fact_of(st, self.ledger.registry(tx, size=st.index + 1)))
        product = chain.product(st.subject)
        if product is not None:
            self._put_state(tx, product)

    def _put_state(self, tx: Tx, product: Any) -> None:
        self.store.put_state(tx=tx, coi=product.coi, **state_row(self.process(), product))

    # -- recording steps -----------------------------------------------------------------------
    def record(self, step: str, coi: str, *, actor: Unlocked, witness: Unlocked | None = None,
               item: str | None = None, fields: Mapping[str, str] | None = None,
               after: AfterAppend | None = None, entry_methods: Mapping[str, str] | None = None,
               keyed_reason: str | None = None) -> Recorded:
        """Record one process step, or refuse it (the refusal is recorded) with reasons.

        ``entry_methods`` says how a scan station read each scanned field (``scanner``,
        ``pasted``, ``typed``; ``wristband`` for the wristband); a field it does not name was
        keyed by hand: an identifier the process checks is then verified by its check
        character here, and a scan-only one needs a witness and ``keyed_reason``."""
        process = self.process()
        spec = process.step(step)
        coi = norm_id(coi)
        item = norm_id(item) if item else None
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
        methods = {("wristband_commitment" if k == "wristband" else k): v
                   for k, v in (entry_methods or {}).items()}
        fields = dict(fields)
        for name, fspec in spec.fields.items():
            if fspec.check is None or name not in fields or methods.get(name, "keyed") != "keyed":
                continue
            try:
                fields[name] = verify_keyed(fspec.check, fields[name], coi)
            except ScanError as e:  # refused like any other attempt: recorded
                reason = f"{fspec.title}: {e.reason}"
                idx = self._record_refusal(step, coi, actor, witness, item, [reason])
                raise Refused(reason, recorded_index=idx) from None
        decided: list[Decision] = []

        def prepare(ctx: AppendContext, reg: KeyRegistry, now: int
                    ) -> tuple[str, Mapping[str, Any]]:
            chain = self.chain(ctx.tx, size=ctx.size)
            a = _signer(reg, actor.user, AUTHOR_MEANING.get(spec.effect, "authored"))
            w = (_signer(reg, witness.user, "verified" if spec.effect == "bedside_verification"
                         else "witnessed") if witness else None)
            attempt = Attempt(step=step, subject=coi, item=item, fields=fields, actor=a,
                              witness=w, now_ms=now, entry=methods, keyed_reason=keyed_reason)
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
        data: dict[str, Any] = {"attempted": clip(step), "by": actor.user,
                                "reasons": [clip(r, 500) for r in reasons]}
        if witness is not None:
            data["witness"] = witness.user
        if item:
            data["item"] = clip(item)
        if deviations:
            data["deviations_opened"] = list(deviations)
        return self.ledger.record_system("system.refusal", subject_of(coi), data)

    def record_scan_refusal(self, *, station: str, by: str, raw: str, reason: str,
                            expected: str | None = None) -> int:
        """A refused scan is itself recorded (what was scanned, shown inertly; why)."""
        data: dict[str, Any] = {"station": clip(station), "by": by, "scan": safe_scan(raw),
                                "reasons": [clip(reason, 500)]}
        if expected:
            data["expected"] = clip(expected)
        return self.ledger.record_system("system.scan_refused", subject_of(expected or "(scan)"),
                                         data)

    def _wristband_commitment(self, coi: str, scanned: str) -> str:
        secret = self.patient_secret(coi)
        if secret is None:
            raise Refused(f"no patient secret is on file for {coi} (erased or never enrolled): "
                          "the wristband cannot be matched electronically")
        return patient_commitment(secret, scanned.strip())

    def patient_secret(self, coi: str) -> bytes | None:
        """The secret behind the patient commitment, from the sealed PHI store (``enrolment``)."""
        raise NotImplementedError


def _statement(raw: bytes, index: int) -> Statement:
    try:
        return Statement.from_json(jcs.decode(raw))
    except ProfileError as e:
        raise VerificationError(f"stored entry is damaged: {e}", index=index) from None


def _signer(reg: KeyRegistry, user: str, meaning: str) -> Signer:
    rec = reg.user(user)
    if rec is None:
        raise Refused(f"{user} is not enrolled")
    return Signer(user=user, name=rec.name, meaning=meaning, roles=rec.roles)


def norm_id(s: str) -> str:
    return unicodedata.normalize("NFC", s).strip().upper()


def clip(s: str, n: int = 128) -> str:
    out = "".join(ch if ch.isprintable() else f"\\x{ord(ch):02x}" for ch in str(s))
    return out[:n]


def subject_of(s: str) -> str:
    """What was typed or scanned, as a statement subject: printable ASCII (other characters
    escaped), at most 128, ``(none)`` for nothing (docs/ledger-format.md section 3)."""
    return clip(s).encode("ascii", "backslashreplace").decode("ascii")[:128] or "(none)"


def safe_scan(raw: str) -> str:
    """A scan as recorded: control characters made visible, capped."""
    return clip(raw.replace("\x1d", "<GS>"), 512)

