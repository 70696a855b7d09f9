"""Sending a rendered label to a printer: raw TCP (port 9100) or a CUPS queue (``lp -o raw``).

A label counts as printed only once the printer side accepted every byte (``docs/labels.md``,
"Sending labels to a printer"):

- **raw TCP** (Zebra, JetDirect, port 9100): every byte is written, the sending side of the
  connection is closed, and the printer must close its side in turn (it has read everything up
  to the end); a refused or reset connection, a timeout, or a printer that never closes is a
  :class:`PrinterError`;
- **CUPS**: ``lp -d QUEUE -o raw`` must take the whole label on its standard input and exit 0
  (the job was accepted by the spooler); ``lp`` missing, a non-zero exit or a timeout is a
  :class:`PrinterError` with what ``lp`` said.

Destinations are parsed with :func:`parse_tcp` and :func:`parse_queue`, whole-string matches.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
from dataclasses import dataclass
from typing import Final

from coi.labels.errors import LabelError

__all__ = ["DEFAULT_PORT", "PrinterError", "Queue", "Tcp", "parse_queue", "parse_tcp",
           "printer_id", "send"]

DEFAULT_PORT: Final = 9100
TIMEOUT_S: Final = 10.0
_HOST_RE: Final = re.compile(
    r"(?P<host>[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}"
    r"[A-Za-z0-9])?)*|\[[0-9A-Fa-f:.]{2,45}\])(?::(?P<port>[0-9]{1,5}))?")
_QUEUE_RE: Final = re.compile(r"[A-Za-z0-9_.-]{1,127}")


class PrinterError(LabelError):
    """The printer did not accept the label; the message says what happened."""


@dataclass(frozen=True)
class Tcp:
    host: str
    port: int = DEFAULT_PORT

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"tcp:{host}:{self.port}"


@dataclass(frozen=True)
class Queue:
    name: str

    def __str__(self) -> str:
        return f"cups:{self.name}"


def printer_id(to: Tcp | Queue) -> str:
    """The destination as the ledger records a printer (an identifier): ``TCP-10-0-0-7-9100``,
    ``CUPS-ZEBRA-3``."""
    return re.sub(r"[^A-Z0-9]+", "-", str(to).upper()).strip("-")[:64]


def parse_tcp(text: str) -> Tcp:
    """``HOST`` or ``HOST:PORT`` (an IPv6 address in brackets); the port defaults to 9100."""
    m = _HOST_RE.fullmatch(text.strip())
    port = int(m["port"]) if m is not None and m["port"] else DEFAULT_PORT
    if m is None or not 1 <= port <= 65535:
        raise LabelError(f"{text[:80]!r} is not a printer address: give HOST or HOST:PORT "
                         "(e.g. 10.0.0.7 or zebra-3.lab:9100)")
    return Tcp(m["host"].strip("[]"), port)


def parse_queue(text: str) -> Queue:
    """A CUPS queue name: letters, digits, ``_``, ``.`` and ``-``."""
    if not _QUEUE_RE.fullmatch(text.strip()):
        raise LabelError(f"{text[:80]!r} is not a CUPS queue name (letters, digits, '_', '.', "
                         "'-'); `lpstat -p` lists the queues")
    return Queue(text.strip())


def send(data: bytes, to: Tcp | Queue, *, timeout_s: float = TIMEOUT_S) -> None:
    """Deliver ``data`` to ``to``; return only once the printer side accepted every byte."""
    if isinstance(to, Tcp):
        _send_tcp(data, to, timeout_s)
    else:
        _send_cups(data, to, timeout_s)


def _send_tcp(data: bytes, to: Tcp, timeout_s: float) -> None:
    try:
        with socket.create_connection((to.host, to.port), timeout=timeout_s) as conn:
            conn.sendall(data)
            conn.shutdown(socket.SHUT_WR)
            while True:  # the printer closes its side once it has read to the end
                chunk = conn.recv(4096)
                if not chunk:
                    return
    except TimeoutError:
        raise PrinterError(f"printer {to} did not take the label within {timeout_s:g} s") from None
    except OSError as e:
        raise PrinterError(f"printer {to}: {e.strerror or e}") from None


def _send_cups(data: bytes, to: Queue, timeout_s: float) -> None:
    lp = shutil.which("lp")
    if lp is None:
        raise PrinterError("the CUPS command lp is not installed on this computer")
    try:
        done = subprocess.run([lp, "-d", to.name, "-o", "raw", "-"], input=data,
                              capture_output=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        raise PrinterError(f"lp did not take the label for {to} within {timeout_s:g} s") from None
    except OSError as e:
        raise PrinterError(f"lp could not be run: {e.strerror or e}") from None
    if done.returncode != 0:
        said = " ".join(done.stderr.decode("utf-8", "replace").split())[:200]
        raise PrinterError(f"lp refused the label for {to} (exit {done.returncode}): "
                           f"{said or 'no message'}")
