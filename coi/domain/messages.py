"""Every sentence the process rules and the replay say: one place for the refusal texts.

The rules (:mod:`coi.domain.rules`, :mod:`coi.domain.fields`) and the replay
(:mod:`coi.domain.replay`, :mod:`coi.domain.state`) build their reasons only from the functions
here, so ``coi record`` refusing an attempt, ``coi verify`` refusing the entry that recorded it
anyway, and a test replaying facts all say the same thing for the same fault. Reasons are for the
person at the station or the auditor: say what is wrong and, where there is one, what to do.

Pure: text in, text out. Times are shown in UTC to the minute, durations in the unit they were
configured in.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from coi.domain.process import FieldSpec

# -------------------------------------------------------------------------------- words in use


def format_ms(ms: int) -> str:
    """``1790000000000`` -> ``2026-09-21 13:33 UTC`` (for messages; minutes are enough)."""
    moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def format_duration(ms: int) -> str:
    """``172800000`` -> ``48 h``; ``3600000`` -> ``60 min``; ``1209600000`` -> ``14 d``."""
    if ms % 86_400_000 == 0 and ms >= 3 * 86_400_000:
        return f"{ms // 86_400_000} d"
    if ms % 3_600_000 == 0 and ms >= 2 * 3_600_000:
        return f"{ms // 3_600_000} h"
    if ms % 60_000 == 0:
        return f"{ms // 60_000} min"
    if ms % 1000 == 0:
        return f"{ms // 1000} s"
    return f"{ms} ms"


def mid(title: str) -> str:
    """A title as it reads inside a sentence: 'Courier pickup' -> 'courier pickup', 'QA release'."""
    if len(title) > 1 and title[:2].isupper():
        return title
    return title[:1].lower() + title[1:]


def role_words(roles: Iterable[str]) -> str:
    """``{"qa", "manufacturing"}`` -> ``manufacturing or QA``; no roles -> ``nobody``."""
    names = [r.upper() if r in ("qa", "qc") else r for r in sorted(roles)]
    return " or ".join(names) if names else "nobody"


def has_roles(roles: Iterable[str]) -> str:
    """The roles a person holds, as listed after ``has roles:``."""
    return ", ".join(sorted(roles)) or "none"


def field_label(spec: FieldSpec) -> str:
    """``'volume_ml' (Volume, mL)``: a field's name, title and unit."""
    unit = f", {spec.unit}" if spec.unit else ""
    return f"'{spec.name}' ({spec.title}{unit})"


# ------------------------------------------------------------------------ reading field values


def field_prefix(spec: FieldSpec) -> str:
    return f"Field {field_label(spec)}"


def qc_value_prefix(title: str, unit: str | None) -> str:
    return f"Field 'value' ({title}{', ' + unit if unit else ''})"


def expected_text(prefix: str) -> str:
    return f"{prefix}: expected text"


def not_whole_number(prefix: str, raw: str) -> str:
    return f"{prefix}: {raw!r} is not a whole number"


def too_large(prefix: str, raw: str) -> str:
    return f"{prefix}: {raw!r} is too large"


def not_decimal(prefix: str, raw: str) -> str:
    return f"{prefix}: {raw!r} is not a decimal number like 12.5"


def below_minimum(prefix: str, shown: object, low: int | Decimal) -> str:
    return f"{prefix}: {shown} is below the minimum {low}"


def above_maximum(prefix: str, shown: object, high: int | Decimal) -> str:
    return f"{prefix}: {shown} is above the maximum {high}"


def not_one_of(prefix: str, raw: str, values: Sequence[str]) -> str:
    return f"{prefix}: {raw!r} is not one of {', '.join(values)}"


def empty_text(prefix: str) -> str:
    return f"{prefix}: must not be empty"


def control_characters(prefix: str) -> str:
    return f"{prefix}: must not contain control characters"


def too_long(prefix: str, limit: int) -> str:
    return f"{prefix}: longer than {limit} characters"


def not_identifier(prefix: str, raw: str, limit: int) -> str:
    return f"{prefix}: {raw!r} is not an identifier (A-Z, 0-9 and -, up to {limit})"


def unexpected_format(prefix: str, raw: str) -> str:
    return f"{prefix}: {raw!r} does not have the expected format"


def not_commitment(prefix: str) -> str:
    return f"{prefix}: expected 64 hexadecimal characters"


def not_time(prefix: str, raw: str) -> str:
    return f"{prefix}: {raw!r} is not a time (milliseconds since 1970 or 2026-01-31T09:30Z)"


def time_out_of_range(prefix: str, raw: str) -> str:
    return f"{prefix}: {raw!r} is out of range"


def in_the_future(prefix: str, ms: int) -> str:
    return f"{prefix}: {format_ms(ms)} is in the future"


def checked_with_its_step(prefix: str, kind: str) -> str:
    return f"{prefix}: type {kind!r} is checked with its step"


def unknown_field(title: str, name: str, fields: Iterable[str]) -> str:
    return f"'{title}' has no field {name!r}; its fields are: {', '.join(fields)}"


def missing_field(title: str, spec: FieldSpec) -> str:
    return f"'{title}' needs the field {field_label(spec)}"


# ---------------------------------------------------------------------------- who may record


def unknown_step(name: str, steps: Iterable[str]) -> str:
    return f"Unknown step {name!r}; steps are: {', '.join(steps)}"


def role_refused(title: str, roles: Iterable[str], user: str, held: Iterable[str]) -> str:
    return f"Only {role_words(roles)} may record '{title}'; {user} has roles: {has_roles(held)}"


def witness_missing(title: str) -> str:
    return f"'{title}' needs a witness (a second person co-signs)"


def witness_is_author(user: str) -> str:
    return f"The witness must be someone other than {user}"


def witness_role_refused(title: str, roles: Iterable[str], user: str, held: Iterable[str]) -> str:
    return (
        f"The witness for '{title}' must be {role_words(roles)}; "
        f"{user} has roles: {has_roles(held)}"
    )


def separation_of_duties(user: str, did: str, other_title: str, verb: str) -> str:
    """``did`` is 'recorded' or 'witnessed'; ``verb`` from :func:`duty_verb`."""
    return (
        f"Separation of duties: {user} {did} '{mid(other_title)}' on this product "
        f"and may not {verb}"
    )


def duty_verb(title: str, releases: bool) -> str:
    return "release it" if releases else f"record '{mid(title)}'"


# ----------------------------------------------------------------------- order and the item


def not_enrolled(subject: str) -> str:
    return f"No product with chain of identity {subject} is enrolled"


def already_enrolled(subject: str, index: int) -> str:
    return f"{subject} is already enrolled (entry {index})"


def chain_ended(title: str, state: str) -> str:
    return f"{title} is not allowed: this product is at '{state}', where its chain ends"


def already_recorded(title: str, index: int) -> str:
    return f"'{title}' was already recorded for this product (entry {index})"


def needs_first(title: str, before: Iterable[str], joiner: str, state: str) -> str:
    """``before`` are the titles of the steps still missing, joined by ``and`` or ``or``."""
    need = f" {joiner} ".join(mid(t) for t in before)
    return f"{title} needs {need} first; this product is at '{state}'"


def wrong_state(title: str, state: str, allowed: Iterable[str]) -> str:
    return (
        f"{title} is not allowed while this product is at '{state}' "
        f"(allowed at: {', '.join(allowed)})"
    )


def item_not_wanted(title: str) -> str:
    return f"'{title}' is about the whole product; do not name an item"


def item_needed(title: str, kind_title: str, candidates: Sequence[str]) -> str:
    which = ", ".join(candidates) if candidates else "none is ready"
    return f"'{title}' needs the {kind_title} it is about ({which})"


def item_not_of_product(item: str, coi: str, known: Sequence[str]) -> str:
    return f"Item {item} does not belong to {coi}; its items: {', '.join(known) or 'none yet'}"


def item_wrong_kind(title: str, kind_title: str, item: str, found_kind: str) -> str:
    return f"'{title}' needs a {kind_title}; {item} is a {found_kind} item"


def item_wrong_status(item: str, status: str, title: str, wanted: Iterable[str]) -> str:
    return f"{item} is '{status}'; '{title}' needs it {' or '.join(sorted(wanted))}"


# ------------------------------------------------------------------------------- time windows


def too_early(title: str, opens_ms: int, min_ms: int, started: str) -> str:
    return (
        f"'{title}' may not happen before {format_ms(opens_ms)} "
        f"({format_duration(min_ms)} after {mid(started)})"
    )


def window_closed(window_title: str, deadline_ms: int, max_ms: int, started: str) -> str:
    return (
        f"The {window_title} window closed at {format_ms(deadline_ms)} "
        f"({format_duration(max_ms)} after {mid(started)})"
    )


def window_deviation_pending(closed: str, deviation: int) -> str:
    return f"{closed}; deviation {deviation} awaits a QA disposition"


def window_deviation_disposed(closed: str, deviation: int, disposition: str) -> str:
    return f"{closed}; deviation {deviation} was dispositioned '{disposition}'"


def window_breach_opened(closed: str, title: str, now_ms: int, user: str) -> str:
    return (
        f"Opened automatically: {closed}; '{title}' was attempted at {format_ms(now_ms)} by {user}"
    )


def window_lapse_opened(window_title: str, deadline_ms: int, max_ms: int, started: str) -> str:
    """A window that ran out with nobody attempting its step (found by ``pending_breaches``)."""
    return (
        f"Opened automatically: the {window_title} window closed at {format_ms(deadline_ms)} "
        f"({format_duration(max_ms)} after {mid(started)})"
    )


# ------------------------------------------------------------------- QC, release, consequences


def field_value_opened(field_title: str, value: object, title: str, now_ms: int, user: str) -> str:
    return (
        f"Opened automatically: {field_title} was '{value}' at '{title}' "
        f"({format_ms(now_ms)}, {user})"
    )


def _with_unit(value: object, unit: str | None) -> str:
    return f"{value} {unit}" if unit else str(value)


def qc_cannot_pass(test_title: str, value: object, unit: str | None, specification: str) -> str:
    shown = _with_unit(value, unit)
    return (
        f"The {test_title} value {shown} is outside the specification "
        f"({specification}), so the result cannot be 'pass'"
    )


def qc_cannot_fail(test_title: str, value: object, unit: str | None, specification: str) -> str:
    shown = _with_unit(value, unit)
    return (
        f"The {test_title} value {shown} meets the specification "
        f"({specification}), so the result cannot be 'fail'"
    )


def qc_missing(test: str) -> str:
    return f"QC result '{test}' missing"


def qc_failed(test: str, index: int) -> str:
    return f"QC result '{test}' failed (entry {index})"


def deviation_open(index: int) -> str:
    return f"deviation {index} is open"


def deviation_rejected(index: int) -> str:
    return f"deviation {index} was dispositioned 'reject'"


def label_unreconciled(label: str) -> str:
    return f"label {label} was printed but neither applied nor voided"


def release_blocked(problems: Sequence[str]) -> str:
    return "Release blocked: " + "; ".join(problems)


# ------------------------------------------------------------------------------------ bedside


def bedside_wrong_coi(scanned: object, coi: str) -> str:
    return f"the bag's chain of identity {scanned} is not {coi}"


def bedside_wrong_bag(scanned: object, item: str) -> str:
    return f"the bag scanned is {scanned}, not {item}"


BEDSIDE_WRONG_PATIENT = "the wristband does not match the patient enrolled for this product"


def bedside_failed(mismatches: Sequence[str]) -> str:
    return "Bedside verification failed: " + "; ".join(mismatches)


def bedside_opened(text: str, user: str) -> str:
    return f"Opened automatically: {text} ({user})"


# ------------------------------------------------------------------------ deviations, labels


def no_such_deviation(number: int, open_ones: Sequence[int]) -> str:
    opened = ", ".join(str(i) for i in open_ones) or "none"
    return f"There is no deviation {number} on this product (open: {opened})"


def deviation_closed(number: int, closed_index: int | None) -> str:
    return f"Deviation {number} was closed at entry {closed_index}"


def deviation_disposed(number: int, disposition: str, index: int | None) -> str:
    return f"Deviation {number} already has the disposition '{disposition}' (entry {index})"


def deviation_needs_disposition(number: int) -> str:
    return f"Deviation {number} needs a QA disposition before it can be closed"


def label_exists(label: str, status: str) -> str:
    return f"Label {label} already exists on this product ({status})"


def no_label_to_reprint(label: object) -> str:
    return f"There is no label {label} on this product to reprint"


def void_before_reprint(label: object, status: str) -> str:
    return f"Void label {label} before reprinting it (it is {status})"


def label_for_closed_item(item: str, status: str) -> str:
    return (f"Item {item} is {status}: no label is issued for an item that is gone (consumed, "
            "infused, returned or destroyed)")


def items_unlabelled(items: Sequence[str], title: str) -> str:
    return (f"{', '.join(items)} {'has' if len(items) == 1 else 'have'} no label applied; "
            f"'{title}' needs every bag labelled: print its label (coi label), apply it and "
            "confirm by scanning it (coi labels apply)")


def no_such_label(label: str) -> str:
    return f"There is no label {label} on this product"


def label_wrong_status(label: str, status: str, title: str, needed: Sequence[str]) -> str:
    return f"Label {label} is {status}; '{title}' needs it {' or '.join(needed)}"


# -------------------------------------------------------------------------------- corrections


def not_a_step_entry(number: int, coi: str) -> str:
    return f"Entry {number} is not a recorded step of {coi}"


def correcting_a_correction(number: int, original: int) -> str:
    return f"Entry {number} is itself a correction; correct entry {original} instead"


def may_not_correct(
    title: str,
    roles: Iterable[str],
    others: frozenset[str],
    number: int,
    user: str,
    held: Iterable[str],
) -> str:
    """``others``: the roles beyond the target step's own that may correct it (QA's)."""
    also = role_words(others) if others else "QA"
    return (
        f"Only someone who may record '{title}' ({role_words(roles)}) or {also} may correct "
        f"entry {number}; {user} has roles: {has_roles(held)}"
    )


def correction_without_fields(title: str, correctable: Iterable[str]) -> str:
    fields = ", ".join(correctable)
    return f"A correction must give at least one corrected field of '{title}' ({fields})"


def not_correctable(spec: FieldSpec, title: str) -> str:
    return f"Field {field_label(spec)} of '{title}' cannot be corrected; open a deviation instead"


def correction_disagrees(test_title: str, result: object, value: object, spec: str) -> str:
    return (
        f"After this correction the {test_title} result '{result}' would not agree "
        f"with its value {value} ({spec})"
    )


# ---------------------------------------------------------------------------------- the replay


def out_of_order(last_index: int) -> str:
    return f"facts must be applied in ledger order (after {last_index})"


def cannot_apply(entry_type: str, subject: str, exc: Exception) -> str:
    return f"{entry_type} for {subject} cannot be applied: {exc!r}"


def subject_not_enrolled(subject: str) -> str:
    return f"{subject} is not enrolled"


def not_a_step_type(entry_type: str) -> str:
    return f"{entry_type!r} is not a step of the process"


NO_SIGNER = "the entry has no signer"
CORRECTION_VALUES_NOT_OBJECT = "correction values must be an object"


def not_text_or_int(value: Any) -> str:
    return f"field value {value!r} is not a string or an integer"


def not_scalar(value: Any) -> str:
    return f"expected a string or an integer, got {value!r}"


def process_refuses(reasons: Iterable[str]) -> str:
    """A recorded entry the rules refuse now, as they would have when it was recorded."""
    return "the process refuses this entry: " + "; ".join(reasons)


def data_differ(entry_type: str) -> str:
    """A recorded entry whose data are not what the rules produce from the same attempt."""
    return f"the recorded data of {entry_type} differ from what the process gives for it"
