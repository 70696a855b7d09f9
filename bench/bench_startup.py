"""Start-up time of the command line: ``coi --help`` and ``coi --version``.

Target (issue 19): within 3x of ``python -c 'import typer'``, the floor any Typer command line
pays, measured in the same run on the same machine. Each command is run ``--runs`` times in a
fresh interpreter, interleaved with the baseline so that a busy moment of a shared machine hits
both; the medians and their ratio are printed. ``coi demo --no-tui`` (a full build) is timed too
when ``--demo`` is given; its figure is printed beside the same baseline, with no target ratio
(most of it is scrypt, slow on purpose: see docs/cli.md).

    python bench/bench_startup.py [--runs 15] [--demo]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import header, line, verdict  # noqa: E402

TARGET = 3.0


def timed(cmd: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--demo", action="store_true", help="also time coi demo --no-tui")
    args = ap.parse_args()
    coi = shutil.which("coi")
    base = [coi] if coi else [sys.executable, "-m", "coi"]
    commands = {"coi --help": [*base, "--help"], "coi --version": [*base, "--version"]}
    baseline_cmd = [sys.executable, "-c", "import typer"]
    samples: dict[str, list[float]] = {"baseline": [], **{k: [] for k in commands}}
    for cmd in (baseline_cmd, *commands.values()):
        timed(cmd)  # warm the file cache once
    for _ in range(args.runs):
        samples["baseline"].append(timed(baseline_cmd))
        for name, cmd in commands.items():
            samples[name].append(timed(cmd))
    base_ms = statistics.median(samples["baseline"]) * 1000
    header(f"start-up, median of {args.runs} runs ({' '.join(base)})")
    line("baseline: python -c 'import typer'", base_ms, "ms")
    ok = True
    for name in commands:
        ms = statistics.median(samples[name]) * 1000
        line(name, ms, "ms", baseline=base_ms, target=f"<= {TARGET:.0f}x")
        ok = ok and ms <= TARGET * base_ms
    verdict(ok, f"coi --help and coi --version within {TARGET:.0f}x of importing typer")
    if args.demo:
        with tempfile.TemporaryDirectory() as d:
            s = timed([*base, "demo", "--no-tui", "--db", str(Path(d) / "demo.db")])
        header("coi demo --no-tui (20 products, 11 users)")
        line("build, users and tour printed", s * 1000, "ms", baseline=base_ms,
             target="<= 5 s (not met: see docs/cli.md)")


if __name__ == "__main__":
    main()
