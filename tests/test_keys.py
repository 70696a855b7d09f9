"""Private keys at rest: scrypt (N=2**17, r=8, p=1) + AES-256-GCM, and nothing weaker accepted.

Each unwrap derives a key with scrypt on purpose (~0.4 s): one wrapped key is shared by the
module, and only the cases that must reach the AEAD unwrap.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from coi.ledger.errors import KeyError_
from coi.ledger.keys import (
    SCRYPT_N,
    SCRYPT_P,
    SCRYPT_R,
    WRAP_FORMAT,
    WrappedKey,
    generate,
    key_id,
    public_bytes,
    unwrap,
    wrap,
)

PASSWORD = "correct horse battery"
KEY = generate(bytes(range(32)))


@pytest.fixture(scope="module")
def wrapped() -> WrappedKey:
    return wrap(KEY, PASSWORD)


def _edit(w: WrappedKey, change: Any) -> str:
    obj = json.loads(w.to_json())
    change(obj)
    return json.dumps(obj)


def _flip_b64(s: str, byte: int = 0) -> str:
    b = bytearray(base64.b64decode(s))
    b[byte] ^= 0x01
    return base64.b64encode(bytes(b)).decode()


def test_wrap_unwrap_round_trip(wrapped: WrappedKey) -> None:
    again = WrappedKey.from_json(wrapped.to_json())
    assert again == wrapped
    key = unwrap(again, PASSWORD)
    assert key.private_bytes_raw() == KEY.private_bytes_raw()


@pytest.mark.req("KEY-PROTECTION")
def test_stored_form_names_strong_parameters_and_hides_the_key(wrapped: WrappedKey) -> None:
    obj = json.loads(wrapped.to_json())
    assert obj["format"] == WRAP_FORMAT
    assert obj["kdf"] == {"name": "scrypt", "n": 2**17, "r": 8, "p": 1,
                          "salt": obj["kdf"]["salt"]}
    assert (SCRYPT_N, SCRYPT_R, SCRYPT_P) == (2**17, 8, 1)
    assert obj["aead"]["name"] == "AES-256-GCM"
    assert len(base64.b64decode(obj["kdf"]["salt"])) == 16
    assert len(base64.b64decode(obj["aead"]["nonce"])) == 12
    secret = KEY.private_bytes_raw()
    assert base64.b64encode(secret).decode() not in wrapped.to_json()
    assert secret not in wrapped.ciphertext
    assert obj["public_key"] == base64.b64encode(public_bytes(KEY)).decode()


def test_each_wrap_uses_fresh_salt_and_nonce(wrapped: WrappedKey) -> None:
    other = wrap(KEY, PASSWORD)
    assert other.salt != wrapped.salt and other.nonce != wrapped.nonce
    assert other.ciphertext != wrapped.ciphertext


def test_wrong_password_is_a_clear_error(wrapped: WrappedKey) -> None:
    with pytest.raises(KeyError_, match="wrong password"):
        unwrap(wrapped, PASSWORD + "!")


def test_short_password_refused() -> None:
    with pytest.raises(KeyError_, match="at least 8"):
        wrap(KEY, "short")


@pytest.mark.parametrize(("field", "change"), [
    ("salt", lambda o: o["kdf"].__setitem__("salt", _flip_b64(o["kdf"]["salt"]))),
    ("nonce", lambda o: o["aead"].__setitem__("nonce", _flip_b64(o["aead"]["nonce"]))),
    ("ciphertext", lambda o: o.__setitem__("ciphertext", _flip_b64(o["ciphertext"], 5))),
    ("tag", lambda o: o.__setitem__("ciphertext", _flip_b64(o["ciphertext"], -1))),
    ("public_key", lambda o: o.__setitem__(
        "public_key", base64.b64encode(public_bytes(generate())).decode())),
    ("n raised", lambda o: o["kdf"].__setitem__("n", 2**18)),
    ("r raised", lambda o: o["kdf"].__setitem__("r", 9)),
])
def test_tampered_fields_fail_to_open(wrapped: WrappedKey, field: str, change: Any) -> None:
    """The AEAD (with the public key as associated data) catches any change to the sealed key."""
    tampered = WrappedKey.from_json(_edit(wrapped, change))
    with pytest.raises(KeyError_, match="wrong password .*damaged"):
        unwrap(tampered, PASSWORD)


@pytest.mark.parametrize(("what", "change", "why"), [
    ("n lowered", lambda o: o["kdf"].__setitem__("n", 2**16), "outside the accepted range"),
    ("n tiny", lambda o: o["kdf"].__setitem__("n", 2), "outside the accepted range"),
    ("n huge", lambda o: o["kdf"].__setitem__("n", 2**23), "outside the accepted range"),
    ("r lowered", lambda o: o["kdf"].__setitem__("r", 1), "outside the accepted range"),
    ("p zero", lambda o: o["kdf"].__setitem__("p", 0), "outside the accepted range"),
    ("n as text", lambda o: o["kdf"].__setitem__("n", "131072"), "not integers"),
    ("n as bool", lambda o: o["kdf"].__setitem__("r", True), "not integers"),
    ("n missing", lambda o: o["kdf"].pop("n"), "not integers"),
    ("kdf pbkdf2", lambda o: o["kdf"].__setitem__("name", "pbkdf2"), "not scrypt"),
    ("cipher", lambda o: o["aead"].__setitem__("name", "AES-128-CBC"), "not AES-256-GCM"),
    ("format", lambda o: o.__setitem__("format", "other/v0"), "format"),
    ("salt missing", lambda o: o["kdf"].pop("salt"), "salt is missing"),
    ("salt not b64", lambda o: o["kdf"].__setitem__("salt", "***"), "salt is not base64"),
    ("nonce not b64", lambda o: o["aead"].__setitem__("nonce", "@@"), "nonce is not base64"),
    ("ciphertext gone", lambda o: o.pop("ciphertext"), "ciphertext is missing"),
    ("public key not b64", lambda o: o.__setitem__("public_key", 7), "public key is missing"),
])
def test_weak_or_malformed_parameters_refused_before_any_work(wrapped: WrappedKey, what: str,
                                                              change: Any, why: str) -> None:
    with pytest.raises(KeyError_, match=why):
        WrappedKey.from_json(_edit(wrapped, change))


@pytest.mark.parametrize("text", ["", "not json", "[]", "null", '{"format": 1}'])
def test_garbage_refused(text: str) -> None:
    with pytest.raises(KeyError_):
        WrappedKey.from_json(text)


def test_unwrap_refuses_weak_parameters_even_when_built_in_code(wrapped: WrappedKey) -> None:
    from dataclasses import replace

    for weak in (replace(wrapped, n=2**14), replace(wrapped, r=4), replace(wrapped, p=0)):
        with pytest.raises(KeyError_, match="weaker"):
            unwrap(weak, PASSWORD)


def test_key_ids_and_deterministic_keys() -> None:
    pub = public_bytes(KEY)
    assert public_bytes(generate(bytes(range(32)))) == pub
    kid = key_id(pub)
    assert len(kid) == 16 and int(kid, 16) >= 0
    assert key_id(public_bytes(generate())) != kid
    with pytest.raises(ValueError):
        key_id(pub[:31])


def test_service_stores_keys_with_these_parameters(sqlite_ledger: Any) -> None:
    for _kid, _user, text in sqlite_ledger.svc.store.user_keys():
        w = WrappedKey.from_json(text)
        assert (w.n, w.r, w.p) == (2**17, 8, 1)
