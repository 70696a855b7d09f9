"""The command line as seen from outside: every command, its arguments and options, its
``--help``, and the order ``coi --help`` lists them in.

The commands live in one Typer app per group (``coi/cli/*_cmd.py``), registered in one place
(``coi.cli.main``); this test pins what that assembly must add up to, so that moving a command
between modules cannot rename, drop, reorder or re-option it unnoticed.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from coi.cli.main import app

runner = CliRunner()

# Command path -> its arguments (upper case) and options, in the order --help shows them.
COMMANDS: dict[str, str] = {
    "init": "--origin --admin --admin-name --fin --tz --db --log-key --password-file",
    "migrate": "--db --log-key",
    "append": "TYPE --subject --data --as --witness --db --log-key --password-file "
              "--witness-password-file",
    "verify": "--db --checkpoint --jobs",
    "checkpoint": "-o/--output --force --db --log-key",
    "log-key": "--db",
    "label": "ID --format/-f --as -o/--output --size --dpi --isbt --item --product-code "
             "--printer --signed --final --expiry --product-name --storage --send --queue --db "
             "--log-key --password-file",
    "parse": "TEXT",
    "enrol": "--patient-file --treatment-site --slot --as --witness --db --log-key "
             "--password-file --witness-password-file",
    "record": "STEP --coi --as --item --field --witness --keyed-reason --db --log-key "
              "--password-file "
              "--witness-password-file",
    "steps": "--db",
    "show": "COI --db --json",
    "status": "--db --json --limit",
    "export": "-o/--output --coi --since --until --all --fhir --html --quiet/-q --force --db "
              "--log-key",
    "verify-export": "PATH --trust --trust-bundle-key",
    "report": "BUNDLE -o/--output --trust --force",
    "verify-chain": "FILES --coi --trust",
    "tui": "--db --log-key --station --idle-minutes --printer",
    "demo": "--db --products --station --idle-minutes --no-tui --federation",
    "backup": "-o/--output --force/--no-force --db --log-key",
    "restore": "BACKUP_FILE --checkpoint --db --log-key",
    "validate": "-o/--output --tests --postgres --only --sign-as --password-file --db --log-key",
    "user add": "USER --name --role --as --db --log-key --password-file --new-password-file",
    "user revoke": "USER --reason --as --db --log-key --password-file",
    "user reset": "USER --reason --as --db --log-key --password-file --new-password-file",
    "user rotate": "USER --reason --db --log-key --password-file --new-password-file",
    "user unlock": "USER --reason --as --db --log-key --password-file",
    "user list": "--db --json",
    "prove inclusion": "INDEX --size --db",
    "prove consistency": "OLD NEW --db",
    "labels apply": "ID LABEL --scan --as --station --db --log-key --password-file",
    "labels void": "ID LABEL --grounds --as --db --log-key --password-file",
    "labels reprint": "ID LABEL --grounds --format/-f --as -o/--output --size --dpi --isbt "
                      "--product-code --signed --send --queue --db --log-key --password-file",
    "labels check": "--scan --as --coi --item --station --db --log-key --password-file",
    "labels list": "ID --db --json",
    "witness init": "--name -o/--output",
    "witness cosign": "CHECKPOINT --key --state --log-key -o/--output --proof --force",
    "patient show": "PATIENT --as --db --log-key --password-file",
    "patient erase": "PATIENT --reason --as --witness --db --log-key --password-file "
                     "--witness-password-file",
    "partner add": "NAME --log-key --fin --role --as --db --site-log-key --password-file",
    "partner list": "--db --log-key --json",
    "partner remove": "NAME --reason --as --db --log-key --password-file",
    "handoff export": "--coi --to -o/--output --as --force --db --log-key --password-file",
    "handoff receive": "PATH --as --ack --db --log-key --password-file",
    "handoff ack": "PATH --as --db --log-key --password-file",
}
GROUPS = {"": ["init", "migrate", "append", "verify", "checkpoint", "log-key", "label", "parse",
               "enrol", "record", "steps", "show", "status", "export", "verify-export",
               "report", "verify-chain", "tui", "demo", "backup", "restore", "validate", "user",
               "prove", "labels", "witness", "patient", "partner", "handoff"],
          "user": ["add", "revoke", "reset", "rotate", "unlock", "list"],
          "prove": ["inclusion", "consistency"],
          "labels": ["apply", "void", "reprint", "check", "list"],
          "witness": ["init", "cosign"],
          "patient": ["show", "erase"],
          "partner": ["add", "list", "remove"],
          "handoff": ["export", "receive", "ack"]}

def _tree(cmd: Any, path: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if hasattr(cmd, "list_commands"):
        ctx = cmd.context_class(cmd)
        for name in cmd.list_commands(ctx):
            out.update(_tree(cmd.get_command(ctx, name), [*path, name]))
    else:
        out[" ".join(path)] = cmd
    return out


def _params(cmd: Any) -> str:
    return " ".join((p.metavar or p.name.upper()) if p.param_type_name == "argument"
                    else "/".join(p.opts + p.secondary_opts) for p in cmd.params)


def test_every_command_is_there_with_its_options_in_order() -> None:
    tree = _tree(typer.main.get_command(app), [])
    assert list(tree) == list(COMMANDS)
    assert {path: _params(cmd) for path, cmd in tree.items()} == COMMANDS


@pytest.mark.parametrize("path", list(COMMANDS))
def test_every_command_has_help(path: str) -> None:
    args = path.split()
    r = runner.invoke(app, [*args, "--help"], terminal_width=100)
    assert r.exit_code == 0, r.output
    assert r.output.startswith(f"Usage: coi {path} "), r.output
    summary = r.output.split("\n\n")[1].strip()
    assert summary and summary[0].isupper(), f"coi {path} has no help text"
    for flag in COMMANDS[path].split():
        if flag.startswith("-"):
            assert flag.split("/")[0] in r.output, f"coi {path} --help lacks {flag}"
    assert runner.invoke(app, [*args, "-h"], terminal_width=100).output == r.output


@pytest.mark.parametrize("group", list(GROUPS))
def test_groups_list_their_commands_in_order_and_need_one(group: str) -> None:
    args = group.split()
    r = runner.invoke(app, [*args, "--help"], terminal_width=100)
    assert r.exit_code == 0
    listed = r.output.split("Commands:\n")[1].splitlines()
    assert [line.split()[0] for line in listed if line.startswith("  ")] == GROUPS[group]
    bare = runner.invoke(app, args, terminal_width=100)
    assert bare.exit_code == 2 and "Usage: coi" in bare.output


def test_unknown_command_is_a_usage_error() -> None:
    r = runner.invoke(app, ["frobnicate"])
    assert r.exit_code == 2 and "No such command" in r.output


def test_console_script_and_python_m_agree() -> None:
    """The installed ``coi`` and ``python -m coi`` assemble the same command line."""
    exe = shutil.which("coi")
    runs = [[sys.executable, "-m", "coi", "--help"]] + ([[exe, "--help"]] if exe else [])
    outputs = [subprocess.run(cmd, capture_output=True, text=True, timeout=120,
                              env={"COLUMNS": "100", "PATH": "/usr/bin:/bin"})
               for cmd in runs]
    for out in outputs:
        assert out.returncode == 0, out.stderr
        for name in GROUPS[""]:
            assert f"\n  {name} " in out.stdout
    assert len({o.stdout.split("\n", 1)[1] for o in outputs}) == 1
