"""The sentences of the rules added in process 1.2.0: QC history and exceptional release,
return, disposal and destruction, and how a scan-only field was entered.

Kept beside :mod:`coi.domain.messages` (the rest of the refusal texts) and written the same way:
say what is wrong and what to do. Pure: text in, text out.
"""

from __future__ import annotations

from collections.abc import Iterable

# --------------------------------------------------------------------- QC is a history


def qc_already_has(test: str, index: int, result: str) -> str:
    return (
        f"QC test '{test}' already has a result (entry {index}, {result}); a result is never "
        f"replaced: record a retest with retest_of={index} and retest_reason (e.g. the OOS "
        "investigation that calls for it)"
    )


def retest_not_latest(test: str, named: int, latest: int | None) -> str:
    if latest is None:
        return f"retest_of={named}: QC test '{test}' has no result yet; leave retest_of out"
    return (
        f"retest_of={named} is not the latest result of QC test '{test}': a retest follows "
        f"entry {latest}"
    )


RETEST_NEEDS_REASON = (
    "a retest needs retest_reason: say why the test is repeated (e.g. the OOS investigation)"
)
REASON_WITHOUT_RETEST = "retest_reason is for a retest: name the result it follows in retest_of"


def oos_needs_exceptional(tests: Iterable[str]) -> str:
    names = ", ".join(sorted(set(tests)))
    return (
        f"an out-of-specification QC result was recorded ({names}); release goes only through "
        "exceptional release: QA dispositions every OOS deviation 'proceed', the treating "
        "physician records exceptional_release_request, and QA names it in physician_request"
    )


def oos_deviation_not_proceed(index: int, disposition: str | None) -> str:
    if disposition is None:
        return f"OOS deviation {index} has no QA disposition yet (exceptional release needs "\
            "'proceed')"
    return f"OOS deviation {index} was dispositioned '{disposition}'"


def no_oos_deviation(test: str, index: int) -> str:
    return (
        f"the failed '{test}' result (entry {index}) has no OOS deviation after it: open one "
        "(kind oos_result) and have QA disposition it"
    )


def no_such_request(number: int, coi: str) -> str:
    return (
        f"physician_request={number} is not an exceptional release request of {coi}: name the "
        "entry the treating physician recorded"
    )


def request_before_oos(number: int, last_oos: int) -> str:
    return (
        f"the exceptional release request (entry {number}) came before the OOS result at entry "
        f"{last_oos}: the physician must request release knowing every result; record a new "
        "request"
    )


NOT_EXCEPTIONAL = (
    "physician_request names an exceptional release, but no QC result is out of specification: "
    "leave physician_request out"
)
NO_OOS_TO_REQUEST = (
    "there is no out-of-specification QC result to release exceptionally; an exceptional "
    "release request is for a product with an OOS result"
)

# --------------------------------------------------------- return, disposal, destruction


def item_already_final(item: str, status: str) -> str:
    return f"{item} is already '{status}': nothing more can happen to it"



# ------------------------------------------------------------- how a scanned field was entered


def unknown_entry_method(field: str, method: str, methods: Iterable[str]) -> str:
    return f"'{field}' was entered by {method!r}; coi knows {', '.join(methods)}"


def keyed_needs_witness(fields: Iterable[str]) -> str:
    return (
        f"{', '.join(fields)} must be scanned; keyed by hand it needs a witness who checked "
        "the label (--witness) and a reason (--keyed-reason), or scan it at a station"
    )


def keyed_needs_reason(fields: Iterable[str]) -> str:
    return (
        f"{', '.join(fields)} keyed by hand needs a reason (--keyed-reason, e.g. 'scanner "
        "broken'), or scan it at a station"
    )


REASON_WITHOUT_KEYED = "a keyed-entry reason is for a scan-only field keyed by hand; leave it out"
