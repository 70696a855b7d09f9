"""Where a site's ledger lives: the database URL, the log (checkpoint) key file and the PHI
key file.

The log key signs checkpoints and the site's own ``system.*`` entries (refusals, failed logins,
lockouts, automatic deviations). It lives in a file outside the database, readable only by its
owner (mode 0600): whoever can read it can sign checkpoints, but cannot sign as any person.
The PHI key (``coi.service.phi``) lives beside it, by default ``<db>.phikey``, or where
``COI_PHI_KEY`` says: it unwraps each patient's own key, so the database alone never reveals a
patient's identifiers.
"""

from __future__ import annotations

import base64
import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from coi.db.url import ConfigError, DatabaseUrl

LOG_KEY_FORMAT = "coi-log-key/v1"


@dataclass(frozen=True)
class Site:
    db: DatabaseUrl
    log_key_path: Path
    phi_key_path: Path

    @property
    def db_url(self) -> str:
        """The database's URL as shown to people (any password hidden)."""
        return self.db.display

    @classmethod
    def resolve(cls, db: str | None = None, log_key: str | None = None,
                phi_key: str | None = None) -> Site:
        """``--db`` and ``--log-key`` (or their environment variables, or the defaults), and
        the PHI key (``COI_PHI_KEY``, or beside the log key), each parsed once here."""
        url = DatabaseUrl.parse(db)
        if log_key is None:
            log_key = os.environ.get("COI_LOG_KEY")
        if log_key is None:
            if url.sqlite_path is not None:
                log_key = str(url.sqlite_path) + ".logkey"
            else:
                log_key = f"coi-{url.database or 'coi'}.logkey"
        path = _key_path(log_key, "log")
        if phi_key is None:
            phi_key = os.environ.get("COI_PHI_KEY")
        if phi_key is None:
            phi_key = str(path.with_name(path.name.removesuffix(".logkey") + ".phikey"))
        return cls(db=url, log_key_path=path, phi_key_path=_key_path(phi_key, "PHI"))


def _key_path(text: str, what: str) -> Path:
    try:
        return Path(text).expanduser().resolve()
    except (OSError, RuntimeError, ValueError) as e:
        raise ConfigError(f"the {what} key file {text!r} cannot be used ({e})") from None


def owner_only_problem(path: Path) -> str | None:
    """Why the key file at ``path`` is not private (readable by group or others), or None.

    The one check of a key file's permissions: the installation qualification reports it, and
    the PHI key is refused when it fails."""
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        return f"{path} has mode {mode:04o}: make it readable by its owner only (chmod 600)"
    return None


def write_log_key(path: Path, origin: str, key: Ed25519PrivateKey) -> None:
    """Create the key file atomically with mode 0600; refuse to overwrite one."""
    if path.exists():
        raise ConfigError(f"log key file {path} already exists; refusing to overwrite it")
    body = json.dumps({"format": LOG_KEY_FORMAT, "origin": origin,
                       "private_key": base64.b64encode(key.private_bytes_raw()).decode()})
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, body.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def read_log_key(path: Path) -> tuple[str, Ed25519PrivateKey]:
    try:
        obj = json.loads(path.read_text())
        if obj.get("format") != LOG_KEY_FORMAT:
            raise ValueError
        raw = base64.b64decode(obj["private_key"], validate=True)
        return str(obj["origin"]), Ed25519PrivateKey.from_private_bytes(raw)
    except FileNotFoundError:
        raise ConfigError(f"log key file {path} not found (set --log-key or COI_LOG_KEY)") from None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        raise ConfigError(f"log key file {path} is not a {LOG_KEY_FORMAT} file") from None
