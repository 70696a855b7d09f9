"""A verify worker process: checks the batches it is given, answers each, exits at its input's end.

A worker is a plain ``python -S -c BOOT`` child started by ``pool`` that imports only this
package, the ledger core and what its ``ReaderSource`` needs (``coi.db.reads``: a database
driver, no SQLAlchemy): it is ready in a fraction of a second, where a ``multiprocessing``
child would re-import the parent's main module (the whole CLI or TUI) first. It speaks pickle
over its stdin and stdout: it reads ``sys.path``, then ``(source, origin)``, answers ``READY``,
then for each ``(lo, hi, span, sizes, everything)`` answers ``("ok", (Batch, bad node or
None))`` or ``("failed", traceback)``. At the end of its input it closes its reader and exits
at once.

The worker turns its own cyclic garbage collector off: nothing it checks is in a cycle, and
the collector would keep walking a batch's objects to find nothing. That is this process's
own business; the pool never touches its caller's collector.
"""

from __future__ import annotations

import gc
import os
import pickle
import sys
import traceback
from typing import Any, BinaryIO

from coi.verify_pool.batch import Reader, ReaderSource, check_range

READY = "ready"

BOOT = ("import pickle, sys; i = sys.stdin.buffer; sys.path[:] = pickle.load(i); "
        "from coi.verify_pool.worker import serve; serve(i, sys.stdout.buffer)")
"""The worker's ``python -c`` program."""


def serve(inp: BinaryIO, out: BinaryIO) -> None:
    """The worker's loop (see the module's docstring)."""
    sys.stdout = sys.stderr  # a stray print must not land in the answers
    gc.disable()  # this worker process's own collector (see the module's docstring)
    try:
        source: ReaderSource
        source, origin = pickle.load(inp)
        reader: Reader = source.open()
    except Exception:
        _send(out, ("failed", traceback.format_exc()))
        return
    _send(out, READY)
    while True:
        try:
            job = pickle.load(inp)
        except EOFError:  # told to stop: everything asked has been answered
            break
        try:
            answer: Any = ("ok", check_range(reader, origin, *job))
        except Exception:  # reported to the parent, which raises it there
            answer = ("failed", traceback.format_exc())
        _send(out, answer)
    reader.close()
    out.flush()
    sys.stderr.flush()
    # Exit now: the interpreter's own shutdown (freeing every module) takes longer than a small
    # ledger's last batch, and the verifier waits for this process to end.
    os._exit(0)


def _send(out: BinaryIO, obj: Any) -> None:
    out.write(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))
    out.flush()
