"""Properties of the PHI store's sealing (real AES-GCM, real random keys) and of the birth-date
check at enrolment: what is sealed opens only unchanged, under the same PHI key, for the same
CoI identifier; a date of birth is accepted only as a real past date written YYYY-MM-DD."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from coi.service.enrolment import DATE, _check_birth_date
from coi.service.errors import ConfigError, Refused, VerificationError
from coi.service.phi import NONCE_BYTES, PhiKey, Sealed, new_phi_key

KEY = new_phi_key("coi.test/a9999")
COIS = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=32)
IDS = st.dictionaries(st.text(max_size=30), st.text(max_size=200), max_size=20)
NOW_MS = 1_790_000_000_000  # 2026-09-21


@settings(max_examples=300)
@given(coi=COIS, secret=st.binary(min_size=32, max_size=32), ids=IDS)
def test_what_is_sealed_opens_unchanged(coi: str, secret: bytes, ids: dict[str, str]) -> None:
    sealed = KEY.seal(coi, secret, ids)
    opened = KEY.open(coi, sealed)
    assert opened.secret == secret and opened.identifiers == ids
    assert sealed.key_id == KEY.key_id
    # fresh patient key and nonces every time: the same record never seals to the same bytes
    again = KEY.seal(coi, secret, ids)
    assert again.wrapped_key != sealed.wrapped_key and again.sealed != sealed.sealed


@settings(max_examples=500)
@given(data=st.data(), ids=IDS)
def test_any_changed_byte_is_refused(data: st.DataObject, ids: dict[str, str]) -> None:
    sealed = KEY.seal("CHA999926000001", b"s" * 32, ids)
    which = data.draw(st.sampled_from(["wrapped_key", "sealed"]))
    blob = getattr(sealed, which)
    at = data.draw(st.integers(0, len(blob) - 1))
    flip = data.draw(st.integers(1, 255))
    changed = blob[:at] + bytes([blob[at] ^ flip]) + blob[at + 1:]
    bad = Sealed(**{**sealed.__dict__, which: changed})
    with pytest.raises(VerificationError, match="does not open"):
        KEY.open("CHA999926000001", bad)


@settings(max_examples=200)
@given(cut=st.integers(0, NONCE_BYTES + 40), other=COIS)
def test_a_shortened_record_or_another_coi_is_refused(cut: int, other: str) -> None:
    sealed = KEY.seal("CHA999926000001", b"s" * 32, {"name": "A B"})
    with pytest.raises(VerificationError):
        KEY.open("CHA999926000001", Sealed(sealed.key_id, sealed.wrapped_key,
                                           sealed.sealed[:cut]))
    if other != "CHA999926000001":
        with pytest.raises(VerificationError, match="record of " + re.escape(other)):
            KEY.open(other, sealed)


def test_another_phi_key_is_named_not_tried() -> None:
    sealed = KEY.seal("CHA999926000001", b"s" * 32, {})
    other = new_phi_key(KEY.origin)
    assert other.key_id != KEY.key_id
    with pytest.raises(ConfigError, match=f"sealed under PHI key {KEY.key_id}"):
        other.open("CHA999926000001", sealed)
    # a forged key id does not help either: the wrapped key does not open under another key
    forged = PhiKey(origin=KEY.origin, key=other.key)
    with pytest.raises(VerificationError):
        forged.open("CHA999926000001", Sealed(forged.key_id, sealed.wrapped_key, sealed.sealed))


@settings(max_examples=2_000)
@given(st.text(max_size=14))
@example("1961-02-03")
@example("1961-02-29")
@example("0000-01-01")
@example("1961-2-3")
def test_a_birth_date_is_accepted_only_as_a_real_past_date(text: str) -> None:
    try:
        _check_birth_date(text, NOW_MS)
    except Refused:
        return
    assert DATE.fullmatch(text)
    assert dt.date.fromisoformat(text) <= dt.date(2026, 9, 21)


@given(st.dates(max_value=dt.date(2026, 9, 21)))
def test_every_past_date_is_accepted(day: dt.date) -> None:
    _check_birth_date(day.isoformat(), NOW_MS)
