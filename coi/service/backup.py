"""Backups that prove themselves and restores that never overwrite a ledger (EU GMP Annex 11 §7.2).

``backup`` signs the checkpoint of the head at backup time, copies the live database online
(SQLite's backup API; ``pg_dump`` for PostgreSQL) while stations keep writing, restores the copy
to a scratch database and verifies it there in full against that checkpoint (every signature,
the tree, the process replay), and only then reports it good. The checkpoint is also written
beside the backup (``FILE.checkpoint``): keep it apart from the backup, since a checkpoint that
travels only inside the copy it vouches for proves little.

``restore`` writes a backup into a database that does not exist yet (never over a ledger),
verifies it, and compares it with the checkpoints kept elsewhere (saved with ``coi checkpoint``,
written beside a backup, or acknowledged by a partner): what the backup lacks against the newest
of them is reported as a range of entries to recover from partners' hand-off files or exports.
A restore that does not verify is removed again and reported. Keys are never part of a backup:
the log key (and the PHI key) are files of their own.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from coi.db import backup as copies
from coi.db.url import DatabaseUrl
from coi.ledger import note
from coi.ledger.errors import VerificationError
from coi.service.chain import verify_all
from coi.service.errors import ConfigError
from coi.service.ledger import LedgerService


@dataclass(frozen=True)
class BackupResult:
    path: Path
    checkpoint_path: Path
    checkpoint: str  # signed at backup time
    size: int  # entries the checkpoint covers
    entries: int  # entries the verified copy holds (at least ``size``: writers kept writing)
    sha256: str  # of the backup file


@dataclass(frozen=True)
class RestoreResult:
    target: str  # the restored database, as shown to people
    entries: int
    newest_size: int | None  # the newest kept checkpoint's size, if any was given
    missing: tuple[int, int] | None  # [first, last] entries the backup lacks against it


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _new_file(path: Path, force: bool) -> Path:
    path = Path(path)
    if not path.parent.is_dir():
        raise ConfigError(f"folder {path.parent} does not exist")
    if path.exists() and (path.is_dir() or not force):
        raise ConfigError(f"{path} exists: choose a new file name (or --force to replace a "
                          "backup file)")
    return path


def backup(svc: LedgerService, output: Path, *, force: bool = False) -> BackupResult:
    """Copy the live ledger to ``output``, then prove the copy restores and verifies."""
    svc.require_initialised()
    output = _new_file(output, force)
    cp_path = _new_file(output.with_name(output.name + ".checkpoint"), force)
    signed = svc.checkpoint()
    size = note.open_checkpoint(signed, note.parse_verifier_key(svc.log_verifier_key()))[0].size
    url = svc.db.url
    if url.backend == "sqlite":
        assert url.sqlite_path is not None
        copies.copy_sqlite(url.sqlite_path, output)
    else:
        copies.dump_postgres(url, output)
    try:
        entries = _verify_copy(output, url, svc.site.log_key_path, signed)
    except VerificationError:
        output.unlink(missing_ok=True)
        raise
    tmp = cp_path.with_name(f".{cp_path.name}.tmp")
    tmp.write_text(signed, encoding="utf-8")
    tmp.replace(cp_path)
    return BackupResult(path=output, checkpoint_path=cp_path, checkpoint=signed,
                        size=size, entries=entries,
                        sha256=_sha256(output))


def _verify_copy(copy: Path, url: DatabaseUrl, log_key: Path, signed: str) -> int:
    """Restore ``copy`` to a scratch database and verify it there against ``signed``."""
    if url.backend == "sqlite":
        with tempfile.TemporaryDirectory(prefix="coi-backup-check-") as d:
            scratch = Path(d) / "restored.db"
            shutil.copyfile(copy, scratch)
            return _verified_size(str(scratch), log_key, [signed])
    with copies.scratch_postgres(url, copy) as scratch_url:
        return _verified_size(scratch_url.driver_url, log_key, [signed])


def _verified_size(db: str, log_key: Path, checkpoints: Sequence[str]) -> int:
    svc = LedgerService.open(db, str(log_key))
    try:
        return verify_all(svc, checkpoints=checkpoints).size
    finally:
        svc.db.dispose()


def restore(backup_file: Path, target: str | None, *, checkpoints: Sequence[str] = (),
            log_key: str | None = None) -> RestoreResult:
    """Restore ``backup_file`` into ``target`` (a new SQLite file or a new PostgreSQL database),
    verify it, and report what it lacks against the newest of ``checkpoints``."""
    if not target:
        raise ConfigError("give the database to restore into with --db (a new file or a new "
                          "PostgreSQL database name)")
    url = DatabaseUrl.parse(target)
    backup_file = Path(backup_file)
    if not backup_file.is_file():
        raise ConfigError(f"backup file {backup_file} not found")
    if url.backend == "sqlite":
        assert url.sqlite_path is not None
        if url.sqlite_path.exists():
            raise ConfigError(f"{url.sqlite_path} exists: coi never restores over a ledger; "
                              "restore into a new file")
        if not copies.is_sqlite_database(backup_file):
            raise ConfigError(f"{backup_file} is not a SQLite backup made by coi backup")
        copies.copy_sqlite(backup_file, url.sqlite_path)
    else:
        if not copies.is_postgres_dump(backup_file):
            raise ConfigError(f"{backup_file} is not a PostgreSQL backup (pg_dump custom format) "
                              "made by coi backup")
        copies.restore_postgres(backup_file, url)
    try:
        svc = LedgerService.open(url.driver_url, log_key)
        try:
            svc.require_initialised()
            entries = verify_all(svc).size
            newest, missing = _against(svc, entries, checkpoints)
        finally:
            svc.db.dispose()
    except (VerificationError, ConfigError):
        _remove(url)
        raise
    return RestoreResult(target=url.display, entries=entries, newest_size=newest,
                         missing=missing)


def _against(svc: LedgerService, entries: int, checkpoints: Sequence[str]
             ) -> tuple[int | None, tuple[int, int] | None]:
    """The newest kept checkpoint's size and the entries the restored ledger lacks against it;
    a checkpoint that contradicts the restored history (another root at its size) fails."""
    vkey = note.parse_verifier_key(svc.log_verifier_key())
    newest: int | None = None
    for text in checkpoints:
        try:
            cp, _ = note.open_checkpoint(text, vkey, origin=svc.origin())
        except VerificationError as e:
            raise VerificationError(f"a kept checkpoint does not check out: {e.reason}") from None
        if cp.size <= entries and cp.size > 0 and svc.root_at(cp.size) != cp.root:
            raise VerificationError(f"the kept checkpoint of size {cp.size} has another root "
                                    "than the restored ledger at that size: the backup and "
                                    "the checkpoint are different histories (a fork)")
        newest = cp.size if newest is None else max(newest, cp.size)
    if newest is None or newest <= entries:
        return newest, None
    return newest, (entries, newest - 1)


def _remove(url: DatabaseUrl) -> None:
    if url.backend == "sqlite":
        assert url.sqlite_path is not None
        for suffix in ("", "-wal", "-shm"):
            Path(str(url.sqlite_path) + suffix).unlink(missing_ok=True)
    else:
        copies.drop_postgres(url)
