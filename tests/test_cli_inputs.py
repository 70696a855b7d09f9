"""The command line's JSON reader (``--data``, patient files), property-tested: every JSON object
within the ledger's profile reads back as itself, and anything else — a key given twice, a
float, nesting past 16 levels, text that is not JSON — is a usage error (exit 2), never another
exception, whatever the text."""

from __future__ import annotations

import json
from typing import Any

import pytest
import typer
from hypothesis import given
from hypothesis import strategies as st

from coi.cli.inputs import MAX_JSON_DEPTH, _nesting, json_object

scalars = st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | st.text(max_size=20)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=30)
objects = st.dictionaries(st.text(max_size=8), values, max_size=6)


def usage_error(text: str) -> bool:
    try:
        json_object(text, "--data", "{}")
    except typer.Exit as e:
        return e.exit_code == 2
    return False


@given(objects)
def test_an_object_in_profile_reads_back_as_itself(obj: dict[str, Any]) -> None:
    assert json_object(json.dumps(obj), "--data", "{}") == obj


@given(objects, st.text(max_size=8), values, values)
def test_a_key_given_twice_is_refused(obj: dict[str, Any], key: str, a: Any, b: Any) -> None:
    body = json.dumps(obj)[1:-1]
    dup = json.dumps(key)
    text = "{" + (body + ", " if body else "") + f"{dup}: {json.dumps(a)}, {dup}: {json.dumps(b)}}}"
    assert usage_error(text)


@given(st.integers(MAX_JSON_DEPTH, 3000))
def test_deep_nesting_is_refused_before_parsing(depth: int) -> None:
    assert usage_error('{"a": ' + "[" * depth + "]" * depth + "}")


@given(st.floats(allow_nan=False, allow_infinity=False).filter(lambda f: f != int(f)))
def test_a_float_is_refused(f: float) -> None:
    assert usage_error(json.dumps({"dose": f}))


@given(st.text(max_size=200))
def test_any_text_is_an_object_or_a_usage_error(text: str) -> None:
    try:
        out = json_object(text, "--data", "{}")
    except typer.Exit as e:
        assert e.exit_code == 2
    else:
        assert isinstance(out, dict)


@pytest.mark.parametrize(("text", "depth"), [("{}", 1), ('{"a": "[[["}', 1), ("[[{}]]", 3),
                                             ('["\\"]["]', 1)])
def test_nesting_skips_brackets_inside_strings(text: str, depth: int) -> None:
    assert _nesting(text) == depth
