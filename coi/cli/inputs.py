"""What the command line reads from people and files, read defensively.

Every file is read with a bound (``/dev/zero`` or a huge file is refused, never read whole),
decoded as UTF-8 with a clear message when it is not, and JSON is read strictly: an object, no
duplicate keys (which one would be signed?), no floats, no deeper than the ledger's profile
allows. Each problem is a usage error (exit 2) that records nothing.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import typer

from coi.cli.failsafe import EXIT_USAGE, fail

MAX_PASSWORD_FILE = 4 * 1024
MAX_JSON_DEPTH = 16  # the ledger's JSON profile (coi.ledger.jcs.MAX_DEPTH)
MAX_JSON_TEXT = 64 * 1024
MAX_CHECKPOINT_BYTES = 64 * 1024  # a signed note with its cosignatures (coi.ledger.note)


def read_bounded(path: Path, limit: int, what: str) -> bytes:
    """The bytes of ``path``, at most ``limit`` of them, or a usage error saying why not."""
    try:
        if path.is_dir():
            fail(f"{what} {path} is a folder: give a file", EXIT_USAGE)
        with path.open("rb") as f:
            data = f.read(limit + 1)
    except OSError as e:
        fail(f"cannot read {what} {path}: {e.strerror or e}", EXIT_USAGE)
    if len(data) > limit:
        fail(f"{what} {path} is larger than {limit:,} bytes: give the right file", EXIT_USAGE)
    return data


def decode_utf8(data: bytes, what: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        fail(f"{what} is not UTF-8 text (byte {e.start}): save it as UTF-8 and try again",
             EXIT_USAGE)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"the key {k!r} appears twice")
        out[k] = v
    return out


def _no_float(text: str) -> Any:
    raise ValueError(f"{text} is a fraction; floats are not allowed, use an integer or a "
                     "decimal string")


def _depth(value: Any) -> int:
    deepest, stack = 0, [(value, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, dict | list):
            deepest = max(deepest, d)
            stack.extend((x, d + 1) for x in (v.values() if isinstance(v, dict) else v))
    return deepest


def json_object(text: str, what: str, example: str) -> dict[str, Any]:
    """``text`` as a JSON object, strictly (see the module docstring)."""
    if len(text) > MAX_JSON_TEXT:
        fail(f"{what} is longer than {MAX_JSON_TEXT:,} characters", EXIT_USAGE)
    # Before parsing: the parser recurses once per bracket.
    if _nesting(text) > MAX_JSON_DEPTH:
        fail(f"{what} is nested deeper than {MAX_JSON_DEPTH} levels: give a flatter JSON object",
             EXIT_USAGE)
    try:
        obj = json.loads(text, object_pairs_hook=_no_duplicates, parse_float=_no_float)
    except RecursionError:
        fail(f"{what} is nested deeper than {MAX_JSON_DEPTH} levels: give a flatter JSON object",
             EXIT_USAGE)
    except ValueError as e:
        fail(f"{what} is not usable JSON ({e}); write it like {example}", EXIT_USAGE)
    if not isinstance(obj, dict):
        fail(f"{what} must be a JSON object, e.g. {example}", EXIT_USAGE)
    if _depth(obj) > MAX_JSON_DEPTH:
        fail(f"{what} is nested deeper than {MAX_JSON_DEPTH} levels: give a flatter JSON object",
             EXIT_USAGE)
    return obj


def _nesting(text: str) -> int:
    """The deepest bracket nesting of JSON text, strings skipped."""
    depth = deepest = 0
    in_str = esc = False
    for ch in text:
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


_stdin: tuple[object, list[str]] | None = None  # (the stream read, its unread lines)


def read_password(path: Path | None, prompt: str, *, confirm: bool = False) -> str:
    """A password from a file, from stdin ('-', one line per password asked), or a prompt
    (typed twice when ``confirm``: a mismatch is refused)."""
    global _stdin
    if path is None:
        if not sys.stdin.isatty():
            fail(f"{prompt}: no terminal to prompt on; use --password-file", EXIT_USAGE)
        first = str(typer.prompt(prompt, hide_input=True))
        if not first:
            fail(f"{prompt}: a password cannot be empty", EXIT_USAGE)
        if confirm and str(typer.prompt(f"{prompt} (again)", hide_input=True)) != first:
            fail("the two passwords differ: nothing was changed; run the command again",
                 EXIT_USAGE)
        return first
    if str(path) == "-":
        # One password per line, in the order asked; read once per input stream (a second
        # invocation in the same process, e.g. from a test runner, gets its own stream).
        if _stdin is None or _stdin[0] is not sys.stdin:
            raw = sys.stdin.buffer.read(MAX_PASSWORD_FILE + 1) if hasattr(sys.stdin, "buffer") \
                else sys.stdin.read(MAX_PASSWORD_FILE + 1).encode("utf-8")
            if len(raw) > MAX_PASSWORD_FILE:
                fail(f"standard input is longer than {MAX_PASSWORD_FILE:,} bytes: give one "
                     "password per line", EXIT_USAGE)
            _stdin = (sys.stdin, decode_utf8(raw, "standard input").splitlines())
        lines = _stdin[1]
        if not lines:
            fail(f"{prompt}: standard input has no more password lines", EXIT_USAGE)
        return lines.pop(0)
    text = decode_utf8(read_bounded(path, MAX_PASSWORD_FILE, "password file"),
                       f"password file {path}")
    lines = text.splitlines()
    if not lines or not lines[0]:
        fail(f"password file {path} is empty", EXIT_USAGE)
    return lines[0]
