"""Registers the commands that live in their own modules onto the main Typer app.

One plain ``import`` line per module (kept apart so that adding a module is a one-line change).
"""

from __future__ import annotations

import coi.cli.chain_cmd  # noqa: F401
import coi.cli.export_cmd  # noqa: F401
import coi.cli.label_cmd  # noqa: F401
from coi.cli import tui_cmd  # noqa: F401
