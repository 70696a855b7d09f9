"""The chain service's views: a product's timeline, the status summary, the products table.

Owns the chain service's read-only part (``CoiService`` is made of this class and the others of
``chain``): a product's timeline (every entry about it, each signature checked; a damaged entry
shown as damaged, not skipped) with its state and the corrections of each entry, the status
summary (products by state, windows running out or exceeded, open deviations: from the product
state table), one page of the products table, and times in the site's zone.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from coi.domain.process import Process
from coi.ledger.entry import Statement, check_entry
from coi.ledger.errors import ProfileError, VerificationError
from coi.service.chain_core import ChainCore, norm_id
from coi.service.errors import Refused
from coi.service.handoff_state import expected, expected_on

SOON_MS = 6 * 3_600_000  # "running out": within 6 hours


class ChainViews(ChainCore):
    def local_time(self, ms: int) -> str:
        t = dt.datetime.fromtimestamp(ms / 1000, self.tz())
        return t.strftime("%Y-%m-%d %H:%M:%S %Z (UTC%z)")

    def show(self, coi: str) -> dict[str, Any]:
        """The product's timeline (every entry about it, each signature checked) and state."""
        coi = norm_id(coi)
        process = self.process()
        with self.lock:
            product = self.chain().product(coi)
            state = product.to_json() if product else None
        rows = self.ledger.store.rows_for_subject(coi, replica=True)
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
        # Received from a partner by hand-off, not yet taken in here: expected at the station.
        arriving = expected_on(rows, product.last_index if product is not None else None)
        return {"coi": coi, "state": state, "expected": arriving,
                "timeline": timeline, "now_ms": self.clock.now_ms(),
                "qc_history": _qc_history(state),
                "exceptional_releases": _exceptional(process, timeline, state)}

    def status(self, *, limit: int = 50) -> dict[str, Any]:
        """Products by state, the first ``limit`` windows running out or exceeded and products
        with open deviations, with how many there are of each (from the table)."""
        self.process()
        now = self.clock.now_ms()
        s = self.store.summary(soon_ms=SOON_MS, now_ms=now, limit=limit)
        page, n_expected = self.store.expected(limit=limit)
        return {
            "expected": expected(self.ledger, page), "expected_total": n_expected,
            "now_ms": now, "limit": limit,
            "windows_total": s["windows_total"], "open_deviations_total": s["deviations_total"],
            "by_state": dict(sorted(s["by_state"].items())),
            "windows": [{"coi": c, "state": st, "window": w, "deadline_ms": d,
                         "deadline": self.local_time(d), "remaining_ms": d - now,
                         "exceeded": d < now} for c, st, d, w in s["windows"]],
            "open_deviations": [{"coi": c, "state": st, "count": n}
                                for c, st, n in s["deviations"]],
        }

    def expected_at(self, step: str, *, coi: str | None = None, limit: int = 50
                    ) -> list[dict[str, Any]]:
        """The first ``limit`` products expected from partners that ``step`` takes in next (the
        receipt after a shipping step, one with a ``receiver`` field, that brought them), newest
        first; ``coi``: only that product."""
        return self.arrivals_at(step, coi=coi, limit=limit)[0]

    def arrivals_at(self, step: str, *, coi: str | None = None, limit: int = 50
                    ) -> tuple[list[dict[str, Any]], int]:
        """``expected_at`` and how many products are expected there in all."""
        process = self.process()
        spec = process.step(step)
        if spec is None or not spec.takes_custody or not any(
                "receiver" in process.steps[r].fields for r in spec.requires):
            return [], 0
        page, total = self.store.expected(states=spec.from_states, limit=limit,
                                          coi=norm_id(coi) if coi is not None else None)
        # A receipt written before receipts carried a state has none: not this step's.
        got = [e for e in expected(self.ledger, page) if e.get("state") in spec.from_states]
        return got, total - (len(page) - len(got))

    def products(self, **kw: Any) -> list[dict[str, Any]]:
        self.process()
        return self.store.product_rows(**kw)


def _qc_history(state: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Every QC result in ledger order (a failure stays; a retest names the one it follows)."""
    results = (state or {}).get("qc_results", {})
    return [{"index": int(k), **v} for k, v in sorted(results.items(), key=lambda kv: int(kv[0]))]


def _exceptional(process: Process, timeline: list[dict[str, Any]],
                 state: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Each release after an OOS result: who released, the physician's request, and QA's
    dispositions of the OOS deviations."""
    release = process.step_with_effect("release")
    by_index = {int(t["index"]): t for t in timeline}
    devs = (state or {}).get("deviations", {})
    out = []
    for t in timeline:
        ref = t["data"].get("physician_request")
        if release is None or t["type"] != release.entry_type or not isinstance(ref, int):
            continue
        req = by_index.get(ref)
        out.append({
            "release": t["index"], "released_by": t["signers"],
            "request": ref, "requested_by": req["signers"] if req else [],
            "justification": req["data"].get("justification") if req else None,
            "oos_dispositions": [_disposition(int(k), d, by_index.get(d["disposition_index"]))
                                 for k, d in sorted(devs.items(), key=lambda kv: int(kv[0]))
                                 if d["kind"] == "oos_result"],
        })
    return out


def _disposition(dev: int, d: dict[str, Any], at: dict[str, Any] | None) -> dict[str, Any]:
    """QA's disposition of one OOS deviation: what, at which entry, by whom and why."""
    return {"deviation": dev, "disposition": d["disposition"], "at": d["disposition_index"],
            "by": at["signers"] if at else [],
            "rationale": at["data"].get("rationale") if at else None}


def _damaged(index: int, time_ms: int, reason: str) -> dict[str, Any]:
    return {"index": index, "type": "(damaged)", "step": f"DAMAGED ENTRY: {reason}",
            "time_ms": time_ms, "time_utc": "?", "time_local": "?", "signers": [], "data": {},
            "signature_ok": False}

