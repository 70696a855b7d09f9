"""The rules of a process, one module per concern; :func:`coi.domain.check.check` runs them.

* :mod:`~coi.domain.rules.evaluation` — one attempt under evaluation: its reasons so far, the
  deviations it must open, and the :class:`~coi.domain.facts.Decision` it comes to;
* :mod:`~coi.domain.rules.people` — roles, the witness, separation of duties;
* :mod:`~coi.domain.rules.order` — the order of steps, and the item a step is about;
* :mod:`~coi.domain.rules.windows` — time windows, and windows that ran out unattended;
* :mod:`~coi.domain.rules.quality` — QC results, the release gate, deviations a field value opens;
* :mod:`~coi.domain.rules.identity` — the bedside check and controlled labels;
* :mod:`~coi.domain.rules.deviations` — dispositions and closures of deviations;
* :mod:`~coi.domain.rules.corrections` — corrections of earlier entries.

Each rule reads the chain state and adds reasons to the evaluation; none changes the state.
"""
