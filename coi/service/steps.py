"""The process steps as the front ends see them: the definition this coi ships for new ledgers,
and the step and field types a scan station lays out its form from.

A ledger's own definition is ``CoiService.process()``; this module is for what is true before
there is a ledger (``coi steps`` without ``--db``). The types are the domain's
(:mod:`coi.domain.process`), re-exported so that a front end imports only ``coi.service``.
"""

from __future__ import annotations

from coi.domain.loader import load_process
from coi.domain.process import FieldSpec, Process, StepSpec

__all__ = ["FieldSpec", "Process", "StepSpec", "shipped_process"]


def shipped_process() -> Process:
    """The process definition this coi ships (the one ``coi init`` puts in force)."""
    return load_process()
