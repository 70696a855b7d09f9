"""Each rule docs/ledger-format.md and docs/export.md state where an independent verifier, written
from the documents alone, once disagreed with coi: the document says it, and the code does it.

One test per rule: nesting depth, non-empty roles, reserved types, self-revocation, the @site
signer's name, signers of system.* entries, user.update's signer, a product bundle's scope, the
time zone list, the verifier key string's split, the witness key format, a cosigned checkpoint
in a bundle, and extracting the checkpoint with jq.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from coi.export.bundle import Scope, export_bundle
from coi.export.verifier import encode_line, verify_bundle
from coi.export.witness import new_key
from coi.ledger import jcs, note
from coi.ledger.entry import SITE_USER
from coi.ledger.errors import ProfileError, VerificationError
from coi.ledger.keys import generate, public_bytes
from coi.ledger.tzdb import RELEASE, ZONES
from coi.service.ledger import Party
from tests.conftest import Ledger
from tests.test_registry import (
    ADMIN_APPROVES,
    ALICE,
    ALICE_REF,
    BOB,
    GENESIS_SIGNERS,
    LOG,
    enrol,
    genesis,
    note_by,
    ref,
    refused,
    registry,
    revoke,
    stmt,
)

DOCS = Path(__file__).resolve().parent.parent / "docs"
FORMAT = (DOCS / "ledger-format.md").read_text(encoding="utf-8")
EXPORT = (DOCS / "export.md").read_text(encoding="utf-8")


def said(doc: str, *phrases: str) -> None:
    """The document states the rule (whitespace-insensitive: the text is reflowed freely)."""
    flat = " ".join(doc.split())
    for p in phrases:
        assert " ".join(p.split()) in flat, p


def test_nesting_counts_the_outermost_container_as_level_one() -> None:
    said(FORMAT, "the value itself, if it is an array or an object, is level 1",
         "`data` is at level 2 and may hold 14 more levels")
    deep: Any = {}
    for _ in range(14):  # data at level 2 holding 14 more levels: 16 in all
        deep = {"d": deep}
    jcs.encode({"data": deep})
    with pytest.raises(ProfileError, match="deeper than 16"):
        jcs.encode({"data": {"d": deep}})


def test_roles_must_be_a_non_empty_sorted_list() -> None:
    said(FORMAT, "a **non-empty** list of role names `[a-z][a-z0-9_]{0,31}`, sorted, unique")
    refused(registry(), enrol(2, "bob", BOB, "Bob Builder", roles=()), "non-empty list")
    refused(registry(), enrol(2, "bob", BOB, "Bob Builder", roles=("qa\n",)), "role names")
    upd = stmt(2, "user.update", (ADMIN_APPROVES,),
               {"user": "alice", "name": "Alice A", "roles": [], "reason": "x"})
    refused(registry(), upd, "non-empty list")


@pytest.mark.parametrize("type_", ["key.frobnicate", "user.promote", "ledger.reset",
                                   "key.enrol_all"])
def test_unknown_types_under_reserved_prefixes_are_refused(type_: str) -> None:
    said(FORMAT, "only the six types above exist: any other (`key.frobnicate`, say) is refused")
    refused(registry(), stmt(2, type_, (ALICE_REF,), {"n": 1}), "not a type of coi's")
    refused(registry(), stmt(2, type_, (ADMIN_APPROVES,), {"n": 1}), "not a type of coi's")


def test_any_system_type_is_the_sites_own() -> None:
    site = ref(SITE_USER, LOG, "Site log key", "recorded")
    registry().admit(stmt(2, "system.anything_new", (site,), {}))
    refused(registry(), stmt(2, "system.anything_new", (ALICE_REF,), {}), "signed by the site")


def test_self_revocation_is_authored_and_the_revoked_key_signs_it() -> None:
    said(FORMAT, "**valid for entry i exactly when e < i ≤ r**",
         "the user themselves (`authored`; any key of theirs valid at that index, the revoked "
         "one included: a **self-revocation**)")
    said(EXPORT, "not revoked or rotated away at an index r < i (a key still signs its own "
                 "revocation at r)")
    reg = registry(revoke(2, "alice", ALICE, ALICE_REF))  # alice's key signs its own revocation
    assert reg.keys[public_bytes(ALICE)].valid_at(2) and not reg.keys[public_bytes(ALICE)] \
        .valid_at(3)
    refused(reg, note_by(3, ALICE_REF), "revoked at entry 2")
    # 'approved' by a user who is not an administrator is no self-revocation
    refused(registry(), revoke(2, "alice", ALICE, replace(ALICE_REF, meaning="approved")),
            "not an administrator")
    refused(registry(), revoke(2, "alice", ALICE, replace(ALICE_REF, meaning="witnessed")),
            "approved by an administrator")
    # an administrator revoking a key of their own approves it
    registry(revoke(2, "admin", generate(bytes([10]) * 32), ADMIN_APPROVES))


def test_the_site_signer_is_named_site_log_key() -> None:
    said(FORMAT, "`Site log key` for every `@site` signer")
    bad = replace(GENESIS_SIGNERS[1], name="The Log")
    refused(_empty(), replace(genesis(), signers=(GENESIS_SIGNERS[0], bad)), "Site log key")
    site = ref(SITE_USER, LOG, "Log Key", "recorded")
    refused(registry(), stmt(2, "system.lockout", (site,), {}), "Site log key")


def _empty() -> Any:
    from coi.ledger.registry import KeyRegistry

    return KeyRegistry()


def test_system_entries_have_one_signer_the_site_recording() -> None:
    said(FORMAT, "exactly one: `@site` with the log key, named `Site log key` (`recorded`)")
    site = ref(SITE_USER, LOG, "Site log key", "recorded")
    refused(registry(), stmt(2, "system.refusal", (site, ALICE_REF), {}), "one signer")
    refused(registry(), stmt(2, "system.refusal", (replace(site, meaning="approved"),), {}),
            "'recorded'")


def test_user_update_has_one_admin_signer_other_than_the_user() -> None:
    said(FORMAT, "exactly one: an admin other than `user` (`approved`)")
    data = {"user": "admin", "name": "Ada Boss", "roles": ["admin", "qa"], "reason": "x"}
    refused(registry(), stmt(2, "user.update", (ADMIN_APPROVES,), data), "other than the user")
    data["user"] = "alice"
    extra = stmt(2, "user.update", (ADMIN_APPROVES, ref("alice", ALICE, "Alice Apheresis",
                                                        "witnessed")), data)
    refused(registry(), extra, "one administrator")
    unlock = stmt(2, "user.unlock", (ALICE_REF,), {"user": "alice", "reason": "x"})
    refused(registry(), unlock, "approved by an administrator")
    registry(replace(unlock, signers=(ADMIN_APPROVES,)))


def _resign(data: bytes, led: Ledger, change: Any) -> bytes:
    """``change`` each record, then recompute the manifest and sign it with the log key: a
    bundle the site itself could have written."""
    lines = [json.loads(x) for x in data.splitlines()[:-1]]
    body = b"".join(encode_line(change(r)) for r in lines)
    counts: dict[str, int] = {}
    shas: dict[str, Any] = {}
    for ln in body.splitlines(keepends=True):
        k = json.loads(ln)["kind"]
        counts[k] = counts.get(k, 0) + 1
        shas.setdefault(k, hashlib.sha256()).update(ln)
    whole = hashlib.sha256(body).hexdigest()
    origin = led.svc.origin()
    signed = note.sign_note(f"coi-bundle/v1\n{origin}\n{whole}\n", origin, led.svc.log_key())
    return body + encode_line({"kind": "manifest", "counts": counts,
                               "sha256": {k: h.hexdigest() for k, h in shas.items()},
                               "bundle_sha256": whole, "signature": signed})


def test_a_product_bundle_holds_every_entry_about_it_refusals_included(
        sqlite_ledger: Ledger, tmp_path: Path) -> None:
    said(EXPORT, "**refusals included** (`system.refusal`")
    led, coi = sqlite_ledger, "CHA99992600002B"
    led.svc.append("test.note", coi, {"n": 1}, [Party(led.people["alice"], "authored")])
    refusal = led.svc.record_system("system.refusal", coi, {"reasons": ["not allowed"]})
    out = tmp_path / "p.jsonl"
    export_bundle(led.svc.store, out, scope=Scope("coi", coi=coi), checkpoint=led.svc.checkpoint(),
                  log_key=led.svc.log_key(), created_ms=1)
    r = verify_bundle(out, led.svc.log_verifier_key())
    assert r.in_scope == 2 and r.last_index == refusal
    # An entry that matches the scope must be marked in scope, even by the site's own key.
    hidden = _resign(out.read_bytes(), led, lambda rec: {**rec, "in_scope": False}
                     if rec.get("index") == refusal else rec)
    out.write_bytes(hidden)
    with pytest.raises(VerificationError, match="marked out of scope matches") as info:
        verify_bundle(out)
    assert info.value.index == refusal


def test_time_zones_come_from_one_fixed_list_of_the_iana_database() -> None:
    said(FORMAT, f"the 598 zone and link names of the IANA time zone database **release "
                 f"{RELEASE}**", "not against the time zone data its machine happens to have")
    assert len(ZONES) == 598 and {"UTC", "Europe/Paris", "America/Argentina/Buenos_Aires",
                                  "Asia/Calcutta"} <= ZONES
    for bad in ("Mars/Olympus", "europe/paris", "Europe/Paris\n", "posix/Europe/Paris",
                "localtime", ""):
        assert bad not in ZONES
        refused(_empty(), stmt(0, "ledger.genesis", GENESIS_SIGNERS, _genesis_site_tz(bad)),
                "site.tz")


def _genesis_site_tz(tz: str) -> dict[str, Any]:
    return {**genesis().data, "site": {"tz": tz}}


def test_the_genesis_tz_is_the_sites() -> None:
    said(FORMAT, "that the genesis's own `tz` equals its `data.site.tz`")
    refused(_empty(), replace(genesis(), tz="Europe/Paris"), "site.tz")


def test_a_verifier_key_string_is_split_at_its_first_two_plus_signs() -> None:
    said(FORMAT, "split at its **first two `+` only**: the base64 part may itself contain `+`")
    said(EXPORT, "split at the first two `+` only")
    for seed in range(1, 200):
        vkey = note.verifier_key("example.org/log", public_bytes(generate(bytes([seed]) * 32)))
        if "+" in vkey.split("+", 2)[2]:
            break
    else:  # pragma: no cover - 199 keys without a '+' in base64 is beyond belief
        raise AssertionError("no key with '+' in its base64")
    parsed = note.parse_verifier_key(vkey)
    assert parsed.name == "example.org/log" and note.verifier_key(parsed.name,
                                                                   parsed.public_key) == vkey
    with pytest.raises(VerificationError):
        note.parse_verifier_key("a+b+" + vkey)


def test_the_witness_key_format(tmp_path: Path) -> None:
    said(EXPORT, '`{"format": "coi-witness-key/v1", "name": NAME, "private_key": B64}`',
         '`SHA-256(NAME ‖ "\\n" ‖ 0x04 ‖ public key)[0:4]`')
    said(FORMAT, '`SHA-256(name ‖ "\\n" ‖ 0x04 ‖ public key)[0:4]`')
    wk = new_key("witness.example", tmp_path / "w.key")
    saved = json.loads((tmp_path / "w.key").read_text())
    assert set(saved) == {"format", "name", "private_key"}
    assert saved["format"] == "coi-witness-key/v1" and saved["name"] == "witness.example"
    raw = base64.b64decode(saved["private_key"])
    assert len(raw) == 32 and raw == wk.key.private_bytes_raw()
    pub = public_bytes(wk.key)
    kid = hashlib.sha256(b"witness.example\n\x04" + pub).digest()[:4]
    key64 = base64.b64encode(b"\x04" + pub).decode()
    assert wk.verifier_key == f"witness.example+{kid.hex()}+{key64}"


def test_a_cosigned_checkpoint_reaches_a_bundle_only_when_given(sqlite_ledger: Ledger,
                                                                tmp_path: Path) -> None:
    said(EXPORT, "the log key's line only", "no `coi` command stores that copy back")
    led = sqlite_ledger
    plain = led.svc.checkpoint()
    assert plain.count("\u2014 ") == 1
    wk = new_key("witness.example", tmp_path / "w.key")
    cosigned = note.cosign(plain, wk.name, wk.key, 1_700_000_000)
    for given, lines in ((plain, 0), (cosigned, 1)):
        out = tmp_path / f"b{lines}.jsonl"
        export_bundle(led.svc.store, out, scope=Scope("all"), checkpoint=given,
                      log_key=led.svc.log_key(), created_ms=1)
        r = verify_bundle(out, led.svc.log_verifier_key())
        assert len(r.cosigner_lines) == lines
        rec = json.loads(out.read_text().splitlines()[1])
        assert rec["note"] == given


def test_the_checkpoint_is_extracted_with_jq_j(sqlite_ledger: Ledger) -> None:
    """``jq -r`` adds a newline after the note's own; a signed note then ends in an empty
    line, which Go's note.Open (and coi) refuse."""
    said(EXPORT, "`jq -j 'select(.kind==\"checkpoint\").note' bundle.jsonl > checkpoint.txt`")
    assert not re.search(r"jq -r 'select\(\.kind==\"checkpoint\"\)", EXPORT)
    cp = sqlite_ledger.svc.checkpoint()
    key = note.parse_verifier_key(sqlite_ledger.svc.log_verifier_key())
    note.open_note(cp, [key])
    with pytest.raises(VerificationError, match="malformed note"):
        note.open_note(cp + "\n", [key])
