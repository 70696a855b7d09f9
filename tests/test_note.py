"""Signed notes, checkpoints and cosignatures against the C2SP specs and Go's x/mod/sumdb/note."""

from __future__ import annotations

import base64
import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from coi.ledger import note
from coi.ledger.errors import VerificationError
from coi.ledger.note import (
    ALG_COSIGNATURE_V1,
    ALG_ED25519,
    MAX_SIGNATURES,
    Checkpoint,
    NoteVerifier,
    add_signature,
    cosign,
    cosignature_message,
    cosigner_key,
    format_checkpoint,
    key_id,
    open_checkpoint,
    open_note,
    parse_checkpoint,
    parse_verifier_key,
    sign_note,
    verifier_key,
    verify_cosignature,
)

# golang.org/x/mod/sumdb/note note_test.go
PETER_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
PETER_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
ENOCH_VKEY = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
PETER_SIG = (
    "— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotp"
    "RZb6KE6RyyBwJnAM=\n"
)
ENOCH_SIG = (
    "— EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox3"
    "3WWd1RvMc+QQ=\n"
)
# transparency-dev/formats note/note_cosigv1_test.go: a type 0x01 key and a native 0x04 key.
SIGSTORE_TEST_VKEY = "TEST+7997405c+AQcC+FTVKf0jlTdHDY3rbevmnKxxPjigCXlVtGe6RIr6"
REMORA_COSIGNER_VKEY = "remora.n621.de+da77ade7+BOvN63jn/bLvkieywe8R6UYAtVtNbZpXh34x7onlmtw2"
# C2SP tlog-checkpoint / tlog-cosignature examples.
SPEC_CHECKPOINT = (
    "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
)
SPEC_COSIGNATURE = (
    "jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dlrDJsX3b2oyin1nPZqhf5nNo0xUe+mbIU"
    "BkBIfZ+qnA=="
)

ROOT = bytes.fromhex("5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328")
ORIGIN = "coi.example/site-1"
URLSAFE_ROOT = base64.urlsafe_b64encode(b"\xff" * 32).decode()


def peter_key() -> Ed25519PrivateKey:
    seed = base64.b64decode(PETER_SKEY.split("+", 4)[4])
    assert seed[0] == ALG_ED25519
    return Ed25519PrivateKey.from_private_bytes(seed[1:])


def make_key(n: int) -> Ed25519PrivateKey:
    """Deterministic test keys, so failures reproduce."""
    return Ed25519PrivateKey.from_private_bytes(bytes([n]) * 32)


LOG_KEY = make_key(1)
WITNESS_KEY = make_key(2)
LOG = NoteVerifier.from_public_key(ORIGIN, LOG_KEY.public_key())
WITNESS = parse_verifier_key(cosigner_key("witness.example/w1", WITNESS_KEY.public_key()))


def checkpoint_note(size: int = 8, root: bytes = ROOT) -> str:
    return sign_note(format_checkpoint(ORIGIN, size, root), ORIGIN, LOG_KEY)


# --- Keys ---------------------------------------------------------------------------------------


def test_verifier_key_and_key_id_match_go() -> None:
    key = peter_key()
    assert verifier_key("PeterNeumann", key.public_key()) == PETER_VKEY
    v = parse_verifier_key(PETER_VKEY)
    assert (v.name, v.key_id.hex(), v.algorithm) == ("PeterNeumann", "c74f20a3", ALG_ED25519)
    assert key_id("PeterNeumann", v.public_key) == bytes.fromhex("c74f20a3")
    assert v.vkey == PETER_VKEY
    assert str(v) == "PeterNeumann+c74f20a3"


def test_keys_with_plus_in_base64_and_cosigner_keys_parse() -> None:
    assert parse_verifier_key(SIGSTORE_TEST_VKEY).key_id.hex() == "7997405c"
    remora = parse_verifier_key(REMORA_COSIGNER_VKEY)
    assert remora.algorithm == ALG_COSIGNATURE_V1
    assert remora.key_id == key_id("remora.n621.de", remora.public_key, ALG_COSIGNATURE_V1)
    assert cosigner_key("remora.n621.de", remora.public_key) == REMORA_COSIGNER_VKEY


def test_every_mangling_of_a_verifier_key_is_refused() -> None:
    """Go's TestNewVerifier: every proper substring and every single-byte increment fails."""
    b = PETER_VKEY
    for i in range(len(b) + 1):
        for j in range(i + 1, len(b) + 1):
            if (i, j) != (0, len(b)):
                with pytest.raises(VerificationError):
                    parse_verifier_key(b[i:j])
    for i in range(len(b)):
        mangled = b[:i] + chr(ord(b[i]) + 1) + b[i + 1 :]
        with pytest.raises(VerificationError):
            parse_verifier_key(mangled)


@pytest.mark.parametrize(
    ("vkey", "reason"),
    [
        # Go: wrong length key, with adjusted key hash; unknown algorithm, with adjusted key hash.
        (
            "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==",
            "not canonical base64",  # Go accepts its non-canonical padding; coi does not
        ),
        ("PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "type 0x65"),
        ("PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "does not match"),
        ("Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "space"),
        ("+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "empty"),
        ("PeterNeumann+c74f_0a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "8 hex digits"),
        ("PeterNeumann+c74f20a3", "<name>+<key id>+<key>"),
        ("rekor.sigstore.dev+12345678+THIS_IS_NOT_BASE64!", "base64"),
        ("rekor.sigstore.dev+12345678+AwEB", "type 0x03"),
    ],
)
def test_bad_verifier_keys_say_why(vkey: str, reason: str) -> None:
    with pytest.raises(VerificationError, match=reason.replace("+", r"\+")):
        parse_verifier_key(vkey)


def test_a_key_of_the_wrong_length_is_refused() -> None:
    long_key = bytes([ALG_ED25519]) + bytes(range(33))
    kid = hashlib.sha256(b"PeterNeumann\n" + long_key).digest()[:4]
    vkey = f"PeterNeumann+{kid.hex()}+{base64.b64encode(long_key).decode()}"
    with pytest.raises(VerificationError, match="32 bytes, got 33"):
        parse_verifier_key(vkey)


def test_verifier_refuses_an_inconsistent_key_id() -> None:
    v = parse_verifier_key(PETER_VKEY)
    with pytest.raises(ValueError, match="key id"):
        NoteVerifier("PeterNeumann", b"\x00\x00\x00\x00", v.public_key)


# --- Signed notes -------------------------------------------------------------------------------


def test_sign_note_matches_go_golden_output() -> None:
    assert sign_note(TEXT, "PeterNeumann", peter_key()) == TEXT + "\n" + PETER_SIG


def test_open_with_one_known_key_ignores_the_other() -> None:
    opened = open_note(TEXT + "\n" + PETER_SIG + ENOCH_SIG, [parse_verifier_key(PETER_VKEY)])
    assert opened.text == TEXT
    assert opened.verified_names == ("PeterNeumann",)
    assert opened.unknown_lines == (ENOCH_SIG[:-1],)


def test_open_with_both_keys_verifies_both() -> None:
    verifiers = [parse_verifier_key(PETER_VKEY), parse_verifier_key(ENOCH_VKEY)]
    opened = open_note(TEXT + "\n" + PETER_SIG + ENOCH_SIG, verifiers)
    assert opened.verified_names == ("PeterNeumann", "EnochRoot")
    assert opened.unknown_lines == ()
    # Bytes in, same result; a duplicated identical verifier is harmless.
    again = open_note((TEXT + "\n" + PETER_SIG).encode(), [verifiers[0], verifiers[0]])
    assert again.verified_names == ("PeterNeumann",)


def test_open_without_a_trusted_signature_is_refused() -> None:
    with pytest.raises(VerificationError, match="no signature from a trusted key"):
        open_note(TEXT + "\n" + PETER_SIG + ENOCH_SIG, [])
    with pytest.raises(VerificationError, match="no signature from a trusted key"):
        open_note(TEXT + "\n" + ENOCH_SIG, [parse_verifier_key(PETER_VKEY)])


def test_changed_text_is_refused() -> None:
    tampered = TEXT.replace("answer", "Answer") + "\n" + PETER_SIG
    with pytest.raises(
        VerificationError, match=r"invalid signature for key PeterNeumann\+c74f20a3"
    ):
        open_note(tampered, [parse_verifier_key(PETER_VKEY)])


def test_changed_signature_byte_is_refused() -> None:
    line = PETER_SIG[len("— PeterNeumann ") : -1]
    raw = bytearray(base64.b64decode(line))
    raw[10] ^= 1
    tampered = TEXT + "\n— PeterNeumann " + base64.b64encode(bytes(raw)).decode() + "\n"
    with pytest.raises(VerificationError, match="invalid signature"):
        open_note(tampered, [parse_verifier_key(PETER_VKEY)])
    # Go's "Invalid signature" case: four extra base64 characters.
    grown = TEXT + "\n" + PETER_SIG[:60] + "ABCD" + PETER_SIG[60:]
    with pytest.raises(VerificationError, match="67 bytes, not 64"):
        open_note(grown, [parse_verifier_key(PETER_VKEY)])


def test_a_known_bad_signature_refuses_the_note_even_beside_a_good_one() -> None:
    bad = PETER_SIG[:60] + ("A" if PETER_SIG[60] != "A" else "B") + PETER_SIG[61:]
    with pytest.raises(VerificationError, match="invalid signature"):
        open_note(TEXT + "\n" + PETER_SIG + bad, [parse_verifier_key(PETER_VKEY)])


def test_wrong_key_is_an_unknown_key() -> None:
    other = NoteVerifier.from_public_key("PeterNeumann", make_key(9).public_key())
    with pytest.raises(VerificationError, match="no signature from a trusted key"):
        open_note(TEXT + "\n" + PETER_SIG, [other])


def test_one_key_under_two_signature_types_has_two_ids() -> None:
    real = parse_verifier_key(PETER_VKEY)
    cosig = NoteVerifier.from_public_key("PeterNeumann", real.public_key, ALG_COSIGNATURE_V1)
    assert cosig.key_id != real.key_id
    opened = open_note(TEXT + "\n" + PETER_SIG, [real, cosig])
    assert opened.verified_names == ("PeterNeumann",)


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (TEXT, "no blank line"),
        (TEXT + "\n", "no signature lines"),
        (TEXT + "\n" + PETER_SIG[:-1], "does not end in a newline"),
        ("\x01" + TEXT + "\n" + PETER_SIG, "control character U\\+0001"),
        (TEXT.encode() + b"\xff\n" + PETER_SIG.encode(), "UTF-8"),
        (
            TEXT + "\n" + "— Bad Name x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FF\n",
            "base64",
        ),
        (TEXT + "\n" + PETER_SIG + "Unexpected line.\n", "not a signature line"),
        (TEXT + "\n" + "— a+b " + PETER_SIG.split(" ")[2], "contains '\\+'"),
        (TEXT + "\n" + "— PeterNeumann AAAA\n", "too short"),
        (TEXT + "\n" + "—  x08go\n", "must not be empty"),
        (TEXT + "\n" + PETER_SIG * (MAX_SIGNATURES + 1), "more than the limit of 100"),
        (TEXT + "\r\n" + PETER_SIG, "control character U\\+000D"),
    ],
)
def test_malformed_notes_are_refused(message: str | bytes, reason: str) -> None:
    with pytest.raises(VerificationError, match=f"malformed note: .*{reason}"):
        open_note(message, [parse_verifier_key(PETER_VKEY)])


def test_oversized_notes_are_refused() -> None:
    huge = "x" * note.MAX_NOTE_BYTES + "\n\n" + PETER_SIG
    with pytest.raises(VerificationError, match="more than the limit"):
        open_note(huge, [parse_verifier_key(PETER_VKEY)])


def test_sixteen_signatures_are_accepted() -> None:
    keys = [make_key(20 + i) for i in range(16)]
    signed = sign_note(TEXT, "k0", keys[0])
    for i, key in enumerate(keys[1:], start=1):
        signed = add_signature(signed, f"k{i}", key)
    verifiers = [NoteVerifier.from_public_key(f"k{i}", k.public_key()) for i, k in enumerate(keys)]
    assert open_note(signed, verifiers).verified_names == tuple(f"k{i}" for i in range(16))


def test_add_signature_keeps_lines_and_replaces_its_own() -> None:
    both = add_signature(TEXT + "\n" + ENOCH_SIG, "PeterNeumann", peter_key())
    assert both == TEXT + "\n" + ENOCH_SIG + PETER_SIG
    assert add_signature(both, "PeterNeumann", peter_key()) == both


def test_sign_note_refuses_bad_input() -> None:
    with pytest.raises(ValueError, match="newline"):
        sign_note("abc", "PeterNeumann", peter_key())
    with pytest.raises(ValueError, match="'\\+'"):
        sign_note(TEXT, "a+b", peter_key())
    with pytest.raises(ValueError, match="space"):
        sign_note(TEXT, "bad name", peter_key())
    with pytest.raises(ValueError, match="control"):
        sign_note("a\tb\n", "PeterNeumann", peter_key())


def test_text_with_blank_lines_round_trips() -> None:
    text = "Note\n\nwith a blank line\n\n"
    signed = sign_note(text, "k", make_key(5))
    opened = open_note(signed, [NoteVerifier.from_public_key("k", make_key(5).public_key())])
    assert opened.text == text


# --- Checkpoints --------------------------------------------------------------------------------


def test_spec_checkpoint_parses() -> None:
    cp = parse_checkpoint(SPEC_CHECKPOINT)
    assert cp == Checkpoint("example.com/behind-the-sofa", 20852163, cp.root, ())
    assert base64.b64encode(cp.root).decode() == "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I="
    assert format_checkpoint(cp.origin, cp.size, cp.root) == SPEC_CHECKPOINT


def test_checkpoint_round_trip_with_extensions() -> None:
    text = format_checkpoint(ORIGIN, 0, ROOT, ["ext one", "ext two"])
    assert text == f"{ORIGIN}\n0\n{base64.b64encode(ROOT).decode()}\next one\next two\n"
    assert parse_checkpoint(text) == Checkpoint(ORIGIN, 0, ROOT, ("ext one", "ext two"))


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (f"{ORIGIN}\n8\n", "at least 3"),
        (f"{ORIGIN}\n8\n{base64.b64encode(ROOT).decode()}", "end in a newline"),
        (f"\n8\n{base64.b64encode(ROOT).decode()}\n", "origin line is empty"),
        (f"{ORIGIN}\n08\n{base64.b64encode(ROOT).decode()}\n", "leading zeros"),
        (f"{ORIGIN}\n+8\n{base64.b64encode(ROOT).decode()}\n", "decimal"),
        (f"{ORIGIN}\n1_0\n{base64.b64encode(ROOT).decode()}\n", "decimal"),
        (f"{ORIGIN}\n٣\n{base64.b64encode(ROOT).decode()}\n", "decimal"),
        (f"{ORIGIN}\n-1\n{base64.b64encode(ROOT).decode()}\n", "decimal"),
        (f"{ORIGIN}\n{2**64}\n{base64.b64encode(ROOT).decode()}\n", "64 bits"),
        (f"{ORIGIN}\n8\n{base64.b64encode(ROOT[:31]).decode()}\n", "31 bytes"),
        (f"{ORIGIN}\n8\n{URLSAFE_ROOT}\n", "base64"),
        (f"{ORIGIN}\n8\n{base64.b64encode(ROOT).decode()}\n\n", "extension line 1 is empty"),
    ],
)
def test_bad_checkpoints_are_refused(text: str, reason: str) -> None:
    with pytest.raises(VerificationError, match=reason):
        parse_checkpoint(text)


def test_format_checkpoint_refuses_bad_fields() -> None:
    with pytest.raises(ValueError, match="origin"):
        format_checkpoint("", 1, ROOT)
    with pytest.raises(ValueError, match="origin"):
        format_checkpoint("a\nb", 1, ROOT)
    with pytest.raises(ValueError, match="tree size"):
        format_checkpoint(ORIGIN, -1, ROOT)
    with pytest.raises(ValueError, match="32 bytes"):
        format_checkpoint(ORIGIN, 1, ROOT[:16])
    with pytest.raises(ValueError, match="extension"):
        format_checkpoint(ORIGIN, 1, ROOT, [""])


def test_open_checkpoint_requires_the_log_key() -> None:
    signed = checkpoint_note()
    cp, opened = open_checkpoint(signed, LOG, origin=ORIGIN)
    assert (cp.origin, cp.size, cp.root) == (ORIGIN, 8, ROOT)
    assert opened.verified_names == (ORIGIN,)
    # Only a witness signed: refused, even though the witness is trusted.
    witnessed_only = sign_note(format_checkpoint(ORIGIN, 8, ROOT), "w", make_key(3))
    w = NoteVerifier.from_public_key("w", make_key(3).public_key())
    with pytest.raises(VerificationError, match="not signed by the log key"):
        open_checkpoint(witnessed_only, LOG, cosigners=[w])
    with pytest.raises(VerificationError, match="origin"):
        open_checkpoint(signed, LOG, origin="coi.example/other-site")


def test_a_changed_checkpoint_root_is_refused() -> None:
    signed = checkpoint_note()
    b64 = base64.b64encode(ROOT).decode()
    forged = signed.replace(b64, base64.b64encode(bytes(32)).decode())
    with pytest.raises(VerificationError, match="invalid signature"):
        open_checkpoint(forged, LOG)


# --- Cosignatures -------------------------------------------------------------------------------


def test_spec_cosignature_layout() -> None:
    """The C2SP example: key id ‖ u64 big-endian time 1679315147 ‖ 64-byte signature."""
    raw = base64.b64decode(SPEC_COSIGNATURE)
    assert len(raw) == 4 + 8 + 64
    assert int.from_bytes(raw[4:12], "big") == 1679315147
    # transparency-dev/formats TestCoSigV1Timestamp.
    other = base64.b64decode(
        "ZGhGuQAAAABm/qTPeyKXD+R2rzyQsxPiP8mXum7qq/iF0u4vanlqJyocWODBt97w9uL+8qT7S5gxEHWWOworDcFiEB"
        "YJXORmnFBOBA=="
    )
    assert int.from_bytes(other[4:12], "big") == 1727964367


def test_cosignature_message_is_the_spec_example() -> None:
    assert cosignature_message(SPEC_CHECKPOINT, 1679315147) == (
        b"cosignature/v1\ntime 1679315147\nexample.com/behind-the-sofa\n20852163\n"
        b"CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
    )
    with pytest.raises(ValueError, match="2\\^63"):
        cosignature_message(SPEC_CHECKPOINT, 2**63)


def test_cosignature_round_trip() -> None:
    signed = checkpoint_note()
    cosigned = cosign(signed, WITNESS.name, WITNESS_KEY, 1_790_000_000)
    assert cosigned.startswith(signed)
    line = cosigned[len(signed) :]
    assert line.startswith("— witness.example/w1 ")
    raw = base64.b64decode(line.split(" ")[2])
    assert raw[:4] == WITNESS.key_id == key_id(WITNESS.name, WITNESS.public_key, 0x04)
    assert int.from_bytes(raw[4:12], "big") == 1_790_000_000
    # The signature is Ed25519 over the cosignature/v1 message.
    body = signed.split("\n\n")[0] + "\n"
    WITNESS_KEY.public_key().verify(raw[12:], cosignature_message(body, 1_790_000_000))

    assert verify_cosignature(cosigned, WITNESS) == 1_790_000_000
    cp, opened = open_checkpoint(cosigned, LOG, cosigners=[WITNESS])
    assert cp.size == 8
    assert opened.verified_names == (ORIGIN, WITNESS.name)
    assert opened.cosigned_at == {WITNESS.name: 1_790_000_000}
    # A verifier that trusts only the log ignores the cosignature line.
    assert open_note(cosigned, [LOG]).unknown_lines == (line[:-1],)


def test_cosignature_refusals() -> None:
    signed = checkpoint_note()
    cosigned = cosign(signed, WITNESS.name, WITNESS_KEY, 1_790_000_000)
    with pytest.raises(VerificationError, match="no cosignature from witness.example/w1"):
        verify_cosignature(signed, WITNESS)
    # The same witness key as a plain Ed25519 key has another key id: no cosignature found.
    plain = NoteVerifier.from_public_key(WITNESS.name, WITNESS_KEY.public_key())
    with pytest.raises(VerificationError, match="not a cosigner key"):
        verify_cosignature(cosigned, plain)
    # A cosignature is not valid as a plain signature over the note, nor the reverse.
    plain_signed = add_signature(signed, WITNESS.name, WITNESS_KEY)
    forged_line = plain_signed[len(signed) :]
    raw = base64.b64decode(forged_line.split(" ")[2])
    as_cosig = base64.b64encode(WITNESS.key_id + (0).to_bytes(8, "big") + raw[4:]).decode()
    with pytest.raises(VerificationError, match="invalid cosignature"):
        verify_cosignature(signed + f"— {WITNESS.name} {as_cosig}\n", WITNESS)
    # A changed timestamp breaks it.
    line = cosigned[len(signed) :]
    changed = bytearray(base64.b64decode(line.split(" ")[2]))
    changed[11] ^= 1
    retimed = signed + f"— {WITNESS.name} {base64.b64encode(bytes(changed)).decode()}\n"
    with pytest.raises(VerificationError, match="invalid cosignature"):
        verify_cosignature(retimed, WITNESS)
    # A cosignature over another checkpoint does not carry over.
    other = checkpoint_note(9, bytes(32))
    moved = other + line
    with pytest.raises(VerificationError, match="invalid cosignature"):
        open_checkpoint(moved, LOG, cosigners=[WITNESS])
    # Wrong length.
    short = signed + f"— {WITNESS.name} {base64.b64encode(WITNESS.key_id + bytes(64)).decode()}\n"
    with pytest.raises(VerificationError, match="64 bytes, not 72"):
        verify_cosignature(short, WITNESS)


def test_only_checkpoints_are_cosigned() -> None:
    with pytest.raises(ValueError, match="only a checkpoint"):
        cosign(sign_note("hello\n", "k", make_key(4)), "w", WITNESS_KEY, 1)
    with pytest.raises(ValueError, match="timestamp"):
        cosign(checkpoint_note(), "w", WITNESS_KEY, -1)


def test_module_exports_are_present() -> None:
    for name in note.__all__:
        assert hasattr(note, name)
