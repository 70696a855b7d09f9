"""Registers the commands that live in their own modules onto the main Typer app."""

from __future__ import annotations

from coi.cli import (
    chain_cmd,  # noqa: F401
    export_cmd,  # noqa: F401
)
