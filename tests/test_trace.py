"""Requirements traced to tests: every requirement has a test, every marker names a requirement,
and docs/compliance.md is the matrix generated from both (CI fails when it is stale)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from coi.validation.trace import (
    TraceError,
    load_requirements,
    main,
    marked_tests,
    problems,
    render,
    repo_paths,
    requirements_text,
)

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.req("VALIDATION")
def test_every_requirement_has_a_test_and_every_marker_a_requirement() -> None:
    """Every requirement in requirements.toml is named by at least one test, and no test names
    an unknown requirement."""
    reqs = load_requirements()
    tests = marked_tests(ROOT / "tests")
    assert len(reqs) >= 20 and len(tests) >= len(reqs)
    assert problems(reqs, tests) == []


def test_compliance_md_is_the_generated_matrix() -> None:
    tests_dir, doc = repo_paths()
    expected = render(load_requirements(), marked_tests(tests_dir))
    assert doc.read_text(encoding="utf-8") == expected, (
        "docs/compliance.md is stale: run python -m coi.validation.trace --write")


def test_the_check_command_agrees(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--check"]) == 0
    assert capsys.readouterr().err == ""


def test_markers_are_read_from_functions_methods_and_modules(tmp_path: Path) -> None:
    (tmp_path / "test_a.py").write_text(textwrap.dedent('''
        import pytest
        pytestmark = [pytest.mark.slow, pytest.mark.req("AUDIT-TRAIL")]

        @pytest.mark.req("LOCKOUT", "AUDIT-TRAIL")
        def test_one():
            """Locks after five failures. More words here."""

        def test_two():
            pass

        class TestGroup:
            @pytest.mark.req("PHI")
            async def test_three(self):
                pass

        def helper():
            pass
    '''))
    (tmp_path / "conftest.py").write_text("x = 1\n")
    found = {t.node: t for t in marked_tests(tmp_path)}
    name = tmp_path.name
    assert set(found) == {f"{name}/test_a.py::test_one", f"{name}/test_a.py::test_two",
                          f"{name}/test_a.py::TestGroup::test_three"}
    one = found[f"{name}/test_a.py::test_one"]
    assert one.requirements == ("AUDIT-TRAIL", "LOCKOUT")
    assert one.asserts == "Locks after five failures."
    assert found[f"{name}/test_a.py::test_two"].asserts == "Two."
    assert found[f"{name}/test_a.py::TestGroup::test_three"].requirements == ("AUDIT-TRAIL",
                                                                               "PHI")


def test_gaps_and_unknown_ids_are_named(tmp_path: Path) -> None:
    (tmp_path / "test_b.py").write_text(
        'import pytest\n\n@pytest.mark.req("NO-SUCH")\ndef test_x():\n    pass\n')
    found = problems(load_requirements(), marked_tests(tmp_path))
    assert f"{tmp_path.name}/test_b.py::test_x names unknown requirement NO-SUCH" in found
    assert any(p.startswith("requirement LOCKOUT (11.300(d)) has no test") for p in found)


@pytest.mark.parametrize("source", [
    'import pytest\nIDS = "A"\n@pytest.mark.req(IDS)\ndef test_x(): pass\n',
    'import pytest\n@pytest.mark.req()\ndef test_x(): pass\n',
    'import pytest\n@pytest.mark.req("A", reason="x")\ndef test_x(): pass\n',
])
def test_a_marker_must_name_ids_as_literals(tmp_path: Path, source: str) -> None:
    (tmp_path / "test_c.py").write_text(source)
    with pytest.raises(TraceError):
        marked_tests(tmp_path)


@pytest.mark.parametrize(("edit", "message"), [
    (lambda t: t.replace('id = "LOCKOUT"', 'id = "AUDIT-TRAIL"'), "used twice"),
    (lambda t: t.replace('id = "LOCKOUT"', 'id = "lockout"'), "UPPER-CASE"),
    (lambda t: t.replace('id = "LOCKOUT"', 'id = "LOCKOUT\\n"'), "UPPER-CASE"),
    (lambda t: t.replace('met_by = "Five failures', 'metby = "Five failures'), "exactly"),
    (lambda t: t.replace('clause = "11.300(d)"', 'clause = "  "'), "non-empty"),
    (lambda t: t + "\n[other]\nx = 1\n", "only"),
    (lambda t: t + "\n[[requirement\n", "TOML"),
])
def test_a_malformed_requirements_file_is_refused(edit, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(TraceError, match=message):
        load_requirements(edit(requirements_text()))


def test_an_unknown_id_stops_a_pytest_run_before_anything_runs(tmp_path: Path) -> None:
    (tmp_path / "conftest.py").write_text("from tests.conftest import pytest_collection_modifyitems"
                                          "  # noqa: F401\n")
    (tmp_path / "test_d.py").write_text(
        'import pytest\n\n@pytest.mark.req("NO-SUCH")\ndef test_x():\n    pass\n')
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          "--rootdir", str(tmp_path), "-c", "/dev/null", str(tmp_path)],
                         cwd=ROOT, capture_output=True, text=True, timeout=120,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 4, out.stdout + out.stderr  # usage error: nothing ran
    assert "names 'NO-SUCH'" in out.stdout + out.stderr
