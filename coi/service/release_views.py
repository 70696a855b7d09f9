"""What QA needs to see before an exceptional release, read for the terminal UI.

After an out-of-specification QC result the release goes only through exceptional release
(``docs/process.md``): QA dispositions every OOS deviation ``proceed`` and names the treating
physician's ``exceptional_release_request`` in the release's ``physician_request`` field. This
module reads, from the product's page (``CoiService.show``), the failed results, the OOS
deviations with their dispositions and the physician's requests, each with its signer's printed
name and local time. It owns no rule: whether a request is accepted is the domain's to decide
when the release is recorded (``coi.domain.rules.quality``); ``after_last_oos`` is only a hint.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from coi.service.chain import CoiService


@dataclass(frozen=True)
class FailedResult:
    index: int
    test: str
    value: str
    retest_of: int | None


@dataclass(frozen=True)
class OosDeviation:
    index: int
    disposition: str | None
    closed: bool


@dataclass(frozen=True)
class PhysicianRequest:
    index: int
    user: str
    name: str
    when: str  # local time with its zone
    justification: str
    after_last_oos: bool  # made after the last failed result (the release needs that)


@dataclass(frozen=True)
class ExceptionalRelease:
    """A product with an OOS result: what QA reviews before naming a physician's request."""

    failed: tuple[FailedResult, ...]
    deviations: tuple[OosDeviation, ...]
    requests: tuple[PhysicianRequest, ...]  # oldest first

    def usable(self) -> list[PhysicianRequest]:
        """The requests made after the last failure, newest first (what a release may name)."""
        return [r for r in reversed(self.requests) if r.after_last_oos]

    def newest_usable(self) -> int | None:
        """The entry of the newest request a release may name, if any."""
        usable = self.usable()
        return usable[0].index if usable else None


def exceptional_release(svc: CoiService, coi: str, shown: dict[str, Any] | None = None
                        ) -> ExceptionalRelease | None:
    """The product's OOS picture, or None when no QC result of it ever failed (or the process
    knows no exceptional release). ``shown`` is the product's page if the caller has it."""
    process = svc.process()
    request_step = process.step_with_effect("exceptional_release_request")
    if request_step is None:
        return None
    if shown is None:
        shown = svc.show(coi)
    failed = tuple(_failed(q) for q in shown["qc_history"] if q.get("result") == "fail")
    if not failed:
        return None
    last = failed[-1].index
    devs = (shown["state"] or {}).get("deviations", {})
    deviations = tuple(
        OosDeviation(int(k), d.get("disposition"), d.get("closed_index") is not None)
        for k, d in sorted(devs.items(), key=lambda kv: int(kv[0]))
        if d.get("kind") == "oos_result")
    requests = tuple(_request(t, last) for t in shown["timeline"]
                     if t["type"] == request_step.entry_type)
    return ExceptionalRelease(failed, deviations, requests)


def _failed(q: dict[str, Any]) -> FailedResult:
    unit = f" {q['unit']}" if q.get("unit") else ""
    return FailedResult(int(q["index"]), str(q["test"]), f"{q['value']}{unit}", q.get("retest_of"))


def _request(t: dict[str, Any], last_oos: int) -> PhysicianRequest:
    signer = t["signers"][0] if t["signers"] else {"user": "?", "name": "?"}
    return PhysicianRequest(int(t["index"]), str(signer["user"]), str(signer["name"]),
                            str(t["time_local"]), str(t["data"].get("justification", "")),
                            int(t["index"]) > last_oos)


__all__ = ["ExceptionalRelease", "FailedResult", "OosDeviation", "PhysicianRequest",
           "exceptional_release"]
