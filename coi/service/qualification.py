"""Installation qualification: what is installed here, checked against what it should be.

Owns the checks ``coi validate`` makes of the installation before it runs any test: the Python
and package versions; every installed file of coi against the hash its wheel's RECORD gives it
(a development install, whose RECORD carries no hashes, is a deviation: qualify a wheel
install); the site's database schema at the newest migration; the key files present and not
readable by group or others; the time zone database and the site's zone in it; the PostgreSQL
server's version when the site runs on PostgreSQL. Each check is ``passed``, ``failed`` or a
``deviation`` (not a failure of coi, but something the validation report must state).
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata as metadata
import json
import platform
import stat
import zoneinfo
from dataclasses import dataclass
from pathlib import Path

from coi.db.url import DatabaseUrl
from coi.service.errors import ConfigError
from coi.service.ledger import LedgerService
from coi.service.site import owner_only_problem

PACKAGES = ("coi", "cryptography", "sqlalchemy", "alembic", "psycopg", "typer",
            "textual", "rich", "qrcode", "zxing-cpp", "reportlab", "pillow", "python-stdnum",
            "fhir.resources", "pytest", "hypothesis")
TZDATA_FILES = (Path("/usr/share/zoneinfo/tzdata.zi"),)


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # passed | failed | deviation
    detail: str


def versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "platform": platform.platform()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def installed_files() -> Check:
    """Every file RECORD lists with a hash has that hash (RECORD itself has none)."""
    try:
        dist = metadata.distribution("coi")
    except metadata.PackageNotFoundError:
        return Check("installed files", "failed", "coi is not installed as a distribution")
    files = [f for f in dist.files or [] if f.hash is not None]
    direct = json.loads(dist.read_text("direct_url.json") or "{}")
    if not files or direct.get("dir_info", {}).get("editable"):
        return Check("installed files", "deviation",
                     "a development (editable) install: its RECORD lists no file hashes, so "
                     "the installed code cannot be checked against a released wheel; qualify "
                     "an installation made from the wheel")
    bad = []
    for f in files:
        assert f.hash is not None
        path = Path(str(f.locate()))
        try:
            digest = hashlib.new(f.hash.mode, path.read_bytes()).digest()
        except (OSError, ValueError):
            bad.append(f"{f} (unreadable)")
            continue
        if base64.urlsafe_b64encode(digest).rstrip(b"=").decode() != f.hash.value:
            bad.append(str(f))
    if bad:
        return Check("installed files", "failed",
                     f"{len(bad)} of {len(files)} files differ from RECORD: {', '.join(bad[:5])}")
    return Check("installed files", "passed", f"{len(files)} files match their RECORD hashes")


def _private(path: Path, what: str) -> Check:
    if not path.is_file():
        return Check(what, "failed", f"{path} is missing")
    problem = owner_only_problem(path)
    if problem is not None:
        return Check(what, "failed", problem)
    return Check(what, "passed", f"{path} present, mode {stat.S_IMODE(path.stat().st_mode):04o}")


def time_zones(site_tz: str | None) -> Check:
    try:
        zones = zoneinfo.available_timezones()
    except OSError as e:  # pragma: no cover - a broken system tz path
        return Check("time zone database", "failed", f"unreadable: {e}")
    if not zones:
        return Check("time zone database", "failed", "no IANA time zone database is installed "
                                                     "(install tzdata)")
    version = "unknown version"
    for f in TZDATA_FILES:
        if f.is_file():
            first = f.read_text(encoding="ascii", errors="replace").split("\n", 1)[0]
            version = first.removeprefix("# version ").strip() or version
    if site_tz is not None and site_tz not in zones:
        return Check("time zone database", "failed", f"the site's zone {site_tz} is not in the "
                                                     f"installed database ({version})")
    return Check("time zone database", "passed", f"{len(zones)} zones, tzdata {version}"
                 + (f"; the site's zone {site_tz} is present" if site_tz else ""))


def site_checks(db: str | None, log_key: str | None) -> list[Check]:
    """Schema, key files and (PostgreSQL) the server version of the site's ledger, if any."""
    url = DatabaseUrl.parse(db)
    if url.backend == "sqlite" and (url.sqlite_path is None or not url.sqlite_path.is_file()):
        return [Check("site ledger", "deviation", f"no ledger at {url.display}: the site's "
                                                  "schema and keys were not checked")]
    svc = LedgerService.open(db, log_key)
    try:
        try:
            svc.require_initialised()
        except ConfigError as e:
            return [Check("database schema", "failed", str(e))]
        checks = [Check("database schema", "passed",
                        f"{url.display} is at the newest migration this coi ships"),
                  _private(svc.site.log_key_path, "log key file"),
                  _private(svc.site.phi_key_path, "PHI key file")]
        genesis = svc.registry().genesis
        tz = str(genesis.site.get("tz", "")) if genesis is not None else ""
        checks.append(time_zones(tz or None))
        if url.backend == "postgresql":
            checks.append(Check("PostgreSQL server", "passed", svc.store.server_version()))
        return checks
    finally:
        svc.db.dispose()
