"""The process steps as the front ends see them: the definition this coi ships for new ledgers,
and the step and field types a scan station lays out its form from.

A ledger's own definition is ``CoiService.process()``; this module is for what is true before
there is a ledger (``coi steps`` without ``--db``). The types are the domain's
(:mod:`coi.domain.process`), re-exported so that a front end imports only ``coi.service``.
"""

from __future__ import annotations

from dataclasses import replace

from coi.domain.fields import parse_field
from coi.domain.loader import load_process
from coi.domain.process import FieldSpec, Process, StepSpec

__all__ = ["FieldSpec", "Process", "StepSpec", "form_error", "shipped_process"]


def shipped_process() -> Process:
    """The process definition this coi ships (the one ``coi init`` puts in force)."""
    return load_process()


def form_error(spec: FieldSpec, raw: str) -> str | None:
    """What is wrong with the *form* of ``raw`` for ``spec`` (not a number, not one of the
    allowed values …), or None. Bounds and the clock are left to the rules: a front end uses
    this to catch a typing mistake before anything is signed or recorded."""
    if spec.type == "qc_value" or spec.check is not None:
        return None  # (an identifier keyed with its check character: the rules verify it)
    try:
        parse_field(replace(spec, min=None, max=None), raw, 2**62)
    except ValueError as e:
        return str(e)
    return None
