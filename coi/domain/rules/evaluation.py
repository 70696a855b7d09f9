"""One attempt under evaluation: the reasons gathered so far and the decision they come to.

Owns :class:`Evaluation`, the context every rule of :mod:`coi.domain.rules` receives: the
process, the attempt, the product it is about (its state, read only) and the item, and
what the rules found: reasons to refuse, breaches (refusals that open a deviation by themselves)
and consequences (deviations to open when the attempt is allowed).
"""

from __future__ import annotations

from typing import Any

from coi.domain.facts import Attempt, AutoDeviation, Decision
from coi.domain.process import Process, StepSpec
from coi.domain.state import ChainState, ProductState

__all__ = ["Evaluation"]


class Evaluation:
    """One evaluation of one attempt; collects reasons and automatic deviations."""

    def __init__(self, process: Process, chain: ChainState, attempt: Attempt) -> None:
        self.process = process
        self.attempt = attempt
        self.product: ProductState | None = chain.product(attempt.subject)
        self.item: str | None = None  # set by the target-item rule
        self.reasons: list[str] = []
        self.breaches: list[AutoDeviation] = []  # reported only if nothing else is wrong
        self.consequences: list[AutoDeviation] = []  # reported only if allowed
        self.breach_reasons: set[str] = set()

    def refuse(self, reason: str) -> None:
        self.reasons.append(reason)

    def breach(self, reason: str, deviation: AutoDeviation | None) -> None:
        """A refusal caused by a time window or a mismatch: it opens a deviation by itself."""
        self.reasons.append(reason)
        self.breach_reasons.add(reason)
        if deviation is not None:
            self.breaches.append(deviation)

    def consequence(self, deviation: AutoDeviation) -> None:
        """A deviation to open if the attempt is allowed (e.g. a temperature excursion)."""
        self.consequences.append(deviation)

    def decide(self, step: StepSpec, data: dict[str, Any]) -> Decision:
        """Refused with every reason found (and the breaches' deviations when the breaches are
        the only reasons), or allowed with ``data`` and the consequences' deviations."""
        if self.reasons:
            only_breaches = all(r in self.breach_reasons for r in self.reasons)
            return Decision(
                step=step.name,
                allowed=False,
                reasons=tuple(self.reasons),
                auto_deviations=tuple(self.breaches) if only_breaches else (),
            )
        return Decision(
            step=step.name,
            allowed=True,
            entry_type=step.entry_type,
            data=data,
            auto_deviations=tuple(self.consequences),
        )
