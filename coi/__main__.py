"""`python -m coi …` runs the coi command (the same as the `coi` console script)."""

from coi.cli.main import run

run()
