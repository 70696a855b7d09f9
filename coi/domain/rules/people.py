"""Who may record a step: the author's roles, the witness, and separation of duties.

Owns the rules about people: the author must hold one of the step's roles; a step that needs a
witness has one, who is someone else and holds a witness role; and whoever recorded or witnessed
a step of an independent stage (manufacturing, for QA release) may not record this one.
Locked or revoked users are the service's business, not these rules'.
"""

from __future__ import annotations

from coi.domain import messages as say
from coi.domain.process import StepSpec
from coi.domain.rules.evaluation import Evaluation

__all__ = ["roles", "separation_of_duties", "witness"]


def roles(ev: Evaluation, step: StepSpec) -> None:
    actor = ev.attempt.actor
    if not actor.roles & step.roles:
        ev.refuse(say.role_refused(step.title, step.roles, actor.user, actor.roles))


def witness(ev: Evaluation, step: StepSpec) -> None:
    found = ev.attempt.witness
    if found is None:
        if step.witness:
            ev.refuse(say.witness_missing(step.title))
        return
    if found.user == ev.attempt.actor.user:
        ev.refuse(say.witness_is_author(found.user))
    elif not found.roles & step.witness_roles:
        ev.refuse(say.witness_role_refused(step.title, step.witness_roles, found.user, found.roles))


def separation_of_duties(ev: Evaluation, step: StepSpec) -> None:
    product = ev.product
    if product is None or not step.independent_of_stages:
        return
    user = ev.attempt.actor.user
    verb = say.duty_verb(step.title, step.effect == "release")
    for other in ev.process.steps.values():
        if other.stage not in step.independent_of_stages:
            continue
        if user in product.authors.get(other.name, set()):
            ev.refuse(say.separation_of_duties(user, "recorded", other.title, verb))
        elif user in product.witnesses.get(other.name, set()):
            ev.refuse(say.separation_of_duties(user, "witnessed", other.title, verb))
