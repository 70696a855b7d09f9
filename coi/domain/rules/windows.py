"""Time windows: a step inside a window must come neither too early nor too late.

Owns the window rule (a step that a window bounds is refused before the window's minimum, and
after its maximum unless a deviation for that window was dispositioned ``proceed``; the first
late attempt opens a ``window_exceeded`` deviation by itself) and :func:`pending_breaches`, the
windows that ran out with nobody attempting the step.
"""

from __future__ import annotations

from coi.domain import messages as say
from coi.domain.facts import AutoDeviation
from coi.domain.process import StepSpec, WindowSpec
from coi.domain.rules.evaluation import Evaluation
from coi.domain.state import ChainState, Deviation, ProductState, WindowState, window_key

__all__ = ["pending_breaches", "windows"]


def windows(ev: Evaluation, step: StepSpec) -> None:
    product = ev.product
    if product is None:
        return
    now = ev.attempt.now_ms
    for name in step.checked_windows():
        spec = ev.process.windows[name]
        if spec.per_item and ev.item is None:
            continue
        window = product.windows.get(window_key(spec, ev.item))
        if window is None:
            continue
        started = ev.process.steps[window.started_by].title
        if window.opens_ms is not None and now < window.opens_ms:
            ev.refuse(say.too_early(step.title, window.opens_ms, spec.min_ms or 0, started))
        if now > window.deadline_ms:
            _late(ev, step, product, spec, window)


def _late(
    ev: Evaluation, step: StepSpec, product: ProductState, spec: WindowSpec, window: WindowState
) -> None:
    """Past the deadline: allowed under a ``proceed`` disposition; otherwise a breach."""
    started = ev.process.steps[window.started_by].title
    closed = say.window_closed(spec.title, window.deadline_ms, spec.max_ms, started)
    covering = _covering(product, spec, window)
    if any(d.disposition == "proceed" for d in covering):
        return
    if covering:
        dev = covering[-1]
        if dev.disposition is None:
            ev.breach(say.window_deviation_pending(closed, dev.index), None)
        else:
            ev.breach(say.window_deviation_disposed(closed, dev.index, dev.disposition), None)
        return
    user = ev.attempt.actor.user
    description = say.window_breach_opened(closed, step.title, ev.attempt.now_ms, user)
    deviation = AutoDeviation(
        subject=product.coi,
        kind="window_exceeded",
        description=description,
        window=spec.name,
        item=window.item,
    )
    ev.breach(closed, deviation)


def _covering(product: ProductState, spec: WindowSpec, window: WindowState) -> list[Deviation]:
    """Deviations opened for this window (this item's, if per item) since it started."""
    return [
        d
        for d in product.deviations.values()
        if d.window == spec.name
        and d.index > window.start_index
        and (d.item == window.item or not spec.per_item)
    ]


def pending_breaches(chain: ChainState, now_ms: int) -> list[AutoDeviation]:
    """Windows that ran out with nobody attempting the step yet, and no deviation for them.

    The service calls this (e.g. on ``coi status``) and opens the deviations it returns, so a
    product left sitting past its window is visible to QA without anyone trying to move it.
    """
    out: list[AutoDeviation] = []
    process = chain.process
    for coi, product in sorted(chain.products.items()):
        for _key, window in sorted(product.windows.items()):
            if window.ended_index is not None or now_ms <= window.deadline_ms:
                continue
            if any(
                d.window == window.name and d.item == window.item and d.index > window.start_index
                for d in product.deviations.values()
            ):
                continue
            spec = process.windows[window.name]
            started = process.steps[window.started_by].title
            description = say.window_lapse_opened(
                spec.title, window.deadline_ms, spec.max_ms, started
            )
            out.append(
                AutoDeviation(
                    subject=coi,
                    kind="window_exceeded",
                    description=description,
                    window=window.name,
                    item=window.item,
                )
            )
    return out
