"""The one replay of a process over ledger facts: each recorded step checked again, then applied.

Owns :class:`Replayer`, fed one fact at a time in ledger order (``coi verify`` feeds it from its
entry hook, adapting each verified statement into a :class:`~coi.domain.facts.Fact`), and
:func:`replay`, the same over an iterable. For every fact of a type the process owns, the replay
rebuilds the attempt that recorded it (:func:`attempt_from_fact`), asks
:func:`~coi.domain.check.check` at the fact's own time and against the state before it, and
refuses the fact unless the rules allow it *and* produce exactly the data recorded. Then it
applies the fact. Every refusal is a :class:`~coi.domain.errors.ReplayError` naming the entry,
worded by :mod:`coi.domain.messages`.

Pure: no clock, no I/O; who held which role when is the caller's to put in each ``Signer``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from coi.domain import messages as say
from coi.domain.check import check
from coi.domain.errors import ReplayError
from coi.domain.facts import Attempt, Fact
from coi.domain.process import Process
from coi.domain.state import ChainState

__all__ = ["Replayer", "attempt_from_fact", "replay"]


class Replayer:
    """The process replayed incrementally: :meth:`feed` facts in ledger order, read :attr:`chain`.

    Facts of types the process does not own change no product; a caller may skip them (see
    :meth:`owns`) or feed them, with the same result for every product.
    """

    def __init__(self, process: Process) -> None:
        self.process = process
        self.chain = ChainState(process)

    def owns(self, entry_type: str) -> bool:
        """Whether entries of this type are process steps (the ones the replay checks)."""
        return self.process.step_for_entry_type(entry_type) is not None

    def feed(self, fact: Fact) -> None:
        """Check ``fact`` against the rules as they stood just before it, then apply it."""
        if fact.index <= self.chain.last_index:  # before the rules: their state would be wrong
            raise ReplayError(say.out_of_order(self.chain.last_index), index=fact.index)
        if self.owns(fact.type):
            decision = check(self.process, self.chain, attempt_from_fact(self.process, fact))
            if not decision.allowed:
                raise ReplayError(say.process_refuses(decision.reasons), index=fact.index)
            if dict(decision.data) != dict(fact.data):
                raise ReplayError(say.data_differ(fact.type), index=fact.index)
        self.chain.apply(fact)


def replay(process: Process, facts: Iterable[Fact]) -> ChainState:
    """Rebuild the chain from facts, checking each one against the rules as it was recorded.

    Raises :class:`ReplayError` at the first fact the rules would have refused, or whose data
    differ from what the rules produce from it.
    """
    replayer = Replayer(process)
    for fact in facts:
        replayer.feed(fact)
    return replayer.chain


def attempt_from_fact(process: Process, fact: Fact) -> Attempt:
    """The attempt that, checked at ``fact.time_ms``, must produce exactly ``fact.data``."""
    step = process.step_for_entry_type(fact.type)
    if step is None:
        raise ReplayError(say.not_a_step_type(fact.type), index=fact.index)
    if not fact.signers:
        raise ReplayError(say.NO_SIGNER, index=fact.index)
    fields: dict[str, str] = {}
    entry = fact.data.get("entry", {})
    if not isinstance(entry, Mapping):
        raise ReplayError(say.not_text_or_int(entry), index=fact.index)
    reason = fact.data.get("keyed_reason")
    for key, value in fact.data.items():
        if key in ("item", "entry", "keyed_reason") or (step.effect == "qc_result"
                                                          and key == "unit"):
            continue
        if step.effect == "correction" and key == "values":
            if not isinstance(value, Mapping):
                raise ReplayError(say.CORRECTION_VALUES_NOT_OBJECT, index=fact.index)
            for k, v in value.items():
                fields[str(k)] = _as_text(v, fact.index)
            continue
        fields[key] = _as_text(value, fact.index)
    item = fact.data.get("item")
    return Attempt(
        step=step.name,
        subject=fact.subject,
        item=item if isinstance(item, str) else None,
        fields=fields,
        actor=fact.signers[0],
        witness=fact.signers[1] if len(fact.signers) > 1 else None,
        now_ms=fact.time_ms,
        entry={str(k): _as_text(v, fact.index) for k, v in entry.items()},
        keyed_reason=_as_text(reason, fact.index) if reason is not None else None,
    )


def _as_text(value: Any, index: int) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ReplayError(say.not_text_or_int(value), index=index)
    return str(value)
