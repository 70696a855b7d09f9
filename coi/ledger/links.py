"""Per-subject back-links: each version 2 statement names the previous entry on its subject.

Owns the rule of docs/ledger-format.md §3 ("Back-links") that every verifier applies, whole
ledger or bundle: a version 2 statement's ``subject_prev`` is ``{"index", "hash"}`` of the
previous entry with the same ``subject`` (any version), or null when there is none; a version 1
statement carries no link and may not follow a version 2 statement on its subject. Because the
link is inside what the author signs, dropping, reordering or replacing an earlier entry of a
product breaks a signature the operator cannot make again (only its log key: not enough).

``SubjectLinks`` checks a whole ledger (every entry is seen, so "previous" is exact);
``bundle_link_problem`` judges a bundle, which holds only some entries, and names the entry
that is missing, substituted or out of the chain.
"""

from __future__ import annotations

from typing import NamedTuple

from coi.ledger.entry import Statement, SubjectLink
from coi.ledger.errors import VerificationError


class LastOnSubject(NamedTuple):
    """The last entry seen on a subject: its index, entry hash and statement version."""

    index: int  # type: ignore[assignment]  # (shadows tuple.index)
    hash: bytes
    version: int


class Opening(NamedTuple):
    """The first entry on a subject in a batch: what its back-link must be checked against."""

    index: int  # type: ignore[assignment]  # (shadows tuple.index)
    subject: str
    version: int
    claim: SubjectLink | None


def link_problem(st: Statement, last: LastOnSubject | None) -> str | None:
    """Why ``st`` cannot follow ``last`` (the previous entry on its subject, None if it is the
    first), or None when its back-link is right."""
    return claim_problem(st.version, st.subject, st.subject_prev, last)


def claim_problem(version: int, subject: str, claim: SubjectLink | None,
                  last: LastOnSubject | None) -> str | None:
    """``link_problem`` from a statement's version, subject and ``subject_prev`` alone."""
    if version < 2:
        if last is not None and last.version >= 2:
            return (f"a version {version} statement after version 2 entry {last.index} on "
                    f"subject {subject!r}: once linked, every later entry must link")
        return None
    if last is None:
        if claim is None:
            return None
        return (f"subject_prev names entry {claim.index}, but no earlier entry is on subject "
                f"{subject!r}")
    if claim is None:
        return (f"subject_prev is null, but entry {last.index} is an earlier entry on subject "
                f"{subject!r}")
    if claim.index != last.index:
        return (f"subject_prev names entry {claim.index}, but the previous entry on subject "
                f"{subject!r} is entry {last.index}")
    if claim.hash != last.hash:
        return (f"subject_prev names entry {claim.index} with another hash than that entry's "
                "(it was replaced)")
    return None


class SubjectLinks:
    """The last entry on each subject of a ledger fed whole, in index order."""

    def __init__(self) -> None:
        self.last: dict[str, LastOnSubject] = {}

    def check(self, index: int, st: Statement, entry_hash: bytes) -> None:
        """Raise VerificationError(index) if ``st``'s back-link is wrong; then remember it."""
        problem = link_problem(st, self.last.get(st.subject))
        if problem is not None:
            raise VerificationError(problem, index=index)
        self.last[st.subject] = LastOnSubject(index, entry_hash, st.version)


def bundle_link_problem(st: Statement, index: int, before: LastOnSubject | None,
                        what: str = "the product") -> str | None:
    """Why entry ``index`` does not chain to ``before``, the entry on its subject just before
    it **in the bundle** (None if it is the first there), or None.

    A claim beyond ``before`` means the entry it names was dropped; a claim before it means
    ``before`` is not in the chain (inserted or moved); the same index with another hash means
    the entry was substituted.
    """
    if st.version < 2:
        if before is not None and before.version >= 2:
            return link_problem(st, before)
        return None
    claim: SubjectLink | None = st.subject_prev
    if claim is None:
        if before is None:
            return None
        return (f"entry {index} says it is the first entry of {what}, but the bundle holds "
                f"entry {before.index} of it before: that entry is not in its chain")
    if before is None or claim.index > before.index:
        return (f"entry {claim.index} of {what} is missing from the bundle (entry {index} "
                "links to it): it was dropped")
    if claim.index < before.index:
        return (f"entry {before.index} is not in the back-link chain of {what} (entry {index} "
                f"links to entry {claim.index}): inserted or moved")
    if claim.hash != before.hash:
        return (f"entry {claim.index} of {what} was substituted: its hash is not the one entry "
                f"{index} links to")
    return None
