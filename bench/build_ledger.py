"""Build real, verifiable ledgers of any size quickly, for the benchmarks.

``LedgerService.init`` and ``enrol`` make a real site (schema by migrations, log key, genesis,
users with scrypt-wrapped keys: a few seconds of key derivation, once). Then ``bulk_append``
writes many entries without the per-append transaction: each one is a real statement signed with
``coi.ledger.entry.sign`` by enrolled users and chained to the previous entry's hash; the entries,
the tree nodes ``merkle.TreeBuilder`` completes and the new head go in with batched inserts, one
transaction per chunk. The result passes ``LedgerService.verify``.

``cached_ledger(size)`` keeps built ledgers under ``common.cache_dir()`` keyed by size and shape.
Run on its own to build (and optionally verify) one::

    python bench/build_ledger.py 20000 [--witness] [--verify]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sqlite3
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import cache_dir  # noqa: E402

from coi.ledger import merkle  # noqa: E402
from coi.ledger.clock import FixedClock  # noqa: E402
from coi.ledger.entry import (  # noqa: E402
    FORMAT_VERSION,
    SignerRef,
    Statement,
    SubjectLink,
    envelope_bytes,
    pae,
    sign,
    signatures_json,
)
from coi.ledger.keys import key_id  # noqa: E402
from coi.service.ledger import LedgerService, Unlocked  # noqa: E402

ORIGIN = "coi.bench/a9999"
PASSWORDS = {"admin": "admin-password-1", "alice": "alice-password-1", "bob": "bob-password-12"}
NAMES = {"admin": "Ada Admin", "alice": "Alice Apheresis", "bob": "Bob Builder"}
ROLES = {"alice": ["apheresis"], "bob": ["apheresis", "manufacturing"]}
SUBJECT = "A999926000012"
ENTRY_TYPE = "bench.note"


@dataclass
class Site:
    svc: LedgerService
    people: dict[str, Unlocked]
    db: str
    log_key: Path


def new_site(db: str, log_key: Path, *, clock: FixedClock | None = None) -> Site:
    """A real site: genesis with an administrator, then alice and bob enrolled and unlocked."""
    clock = clock or FixedClock()
    svc = LedgerService.open(db, str(log_key), clock=clock)
    svc.init(origin=ORIGIN, admin="admin", admin_name=NAMES["admin"],
             admin_password=PASSWORDS["admin"], tz="Europe/Paris", site_data={"fin": "A9999"})
    people = {"admin": svc.unlock("admin", PASSWORDS["admin"])}
    for u in ("alice", "bob"):
        clock.advance(1000)
        svc.enrol(people["admin"], user=u, name=NAMES[u], roles=ROLES[u], password=PASSWORDS[u])
        people[u] = svc.unlock(u, PASSWORDS[u])
    return Site(svc=svc, people=people, db=db, log_key=log_key)


def bulk_append(svc: LedgerService, parties: Sequence[tuple[Unlocked, str]], n: int, *,
                chunk: int = 20_000, progress: bool = False) -> None:
    """Append ``n`` signed ``bench.note`` entries by ``parties`` (author first), fast."""
    store = svc.store
    head = store.head()
    assert head is not None
    reg = svc.registry()
    refs = []
    for who, meaning in parties:
        rec = reg.user(who.user)
        assert rec is not None and rec.key == who.public_key, f"{who.user} is not enrolled"
        refs.append(SignerRef(who.user, who.public_key, rec.name, meaning))
    signers, keys = tuple(refs), [who.key for who, _m in parties]
    kids = [key_id(r.key) for r in refs]
    tz = svc.genesis_tz
    frontier = store.nodes(merkle.frontier_nodes(head.size))
    tree = merkle.TreeBuilder.from_frontier(
        head.size, [frontier[i] for i in merkle.frontier_nodes(head.size)])
    prev, t = head.last_hash, head.last_time_ms
    last = store.last_on_subject(SUBJECT, head.size)  # the back-link of the first (format v2)
    link = None if last is None else SubjectLink(*last)
    p = "%s" if store.is_postgres else "?"
    sql_entry = ("INSERT INTO ledger_entry (idx, prev_hash, entry_hash, time_ms, type, subject, "
                 f"signer, statement, signatures) VALUES ({', '.join([p] * 9)})")
    sql_node = f"INSERT INTO tree_node (level, idx, hash) VALUES ({p}, {p}, {p})"
    sql_head = (f"UPDATE ledger_head SET size = {p}, root = {p}, last_hash = {p}, "
                f"last_time_ms = {p} WHERE id = 1")
    start, lo, end = time.perf_counter(), head.size, head.size + n
    while lo < end:
        hi = min(lo + chunk, end)
        entries, nodes = [], []
        for i in range(lo, hi):
            t += 7
            st = Statement(log=head.origin, index=i, prev=prev, time_ms=t, tz=tz,
                           type=ENTRY_TYPE, subject=SUBJECT, signers=signers,
                           data={"n": i, "step": "apheresis.label", "text": "bench entry"},
                           version=FORMAT_VERSION, subject_prev=link)
            body, sig_bytes, entry_hash = _sign_fast(st, keys, kids)
            if i == lo:  # the shortcut must give exactly what coi's own sign() gives
                e = sign(st, keys)
                assert (e.statement_bytes, e.signatures_bytes, e.entry_hash) == (
                    body, sig_bytes, entry_hash), "fast signing differs from coi's sign()"
            entries.append((i, prev.hex(), entry_hash.hex(), t, ENTRY_TYPE, SUBJECT,
                            signers[0].user, body, sig_bytes))
            nodes += tree.append(entry_hash)
            prev = entry_hash
            link = SubjectLink(i, entry_hash)
        with svc.engine.begin() as conn:
            conn.exec_driver_sql(sql_entry, entries)
            conn.exec_driver_sql(sql_node, nodes)
            conn.exec_driver_sql(sql_head, (hi, tree.root(), prev.hex(), t))
        if progress:
            el = time.perf_counter() - start
            print(f"  built {hi:,} entries ({(hi - head.size) / el:,.0f}/s)", flush=True)
        lo = hi


# For statements of ASCII keys, ASCII strings and small integers (what bulk_append writes), the
# standard library's sorted compact JSON is RFC 8785: it spares the pure-Python encoder.
_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def _sign_fast(st: Statement, keys: Sequence[Ed25519PrivateKey], kids: Sequence[str]
               ) -> tuple[bytes, bytes, bytes]:
    """``coi.ledger.entry.sign`` for bulk_append's statements: (statement, signatures, hash)."""
    body = _JSON.encode(st.to_json()).encode()
    msg = pae(body)
    sigs = _JSON.encode(signatures_json([(kid, k.sign(msg)) for kid, k in zip(kids, keys,
                                                                                strict=True)]))
    sig_bytes = sigs.encode()
    return body, sig_bytes, merkle.leaf_hash(envelope_bytes(body, sig_bytes))


@dataclass(frozen=True)
class Built:
    db: Path
    log_key: Path
    size: int
    signatures_per_entry: int

    def open(self) -> LedgerService:
        return LedgerService.open(str(self.db), str(self.log_key))


def cached_ledger(size: int, *, witness: bool = False, progress: bool = True) -> Built:
    """A SQLite ledger of exactly ``size`` entries (genesis and enrolments included), built once.

    Entries are signed by alice alone, or by alice and bob as witness with ``witness``.
    """
    sigs = 2 if witness else 1
    name = f"ledger-{size}-{sigs}sig-v{FORMAT_VERSION}"
    d = cache_dir()
    db, key = d / f"{name}.db", d / f"{name}.db.logkey"
    if db.exists() and key.exists():
        from coi.db.database import Database
        from coi.db.url import DatabaseUrl

        database = Database.open(DatabaseUrl.parse(str(db)))
        database.upgrade()  # a ledger cached by an older coi: bring its schema up to date
        database.dispose()
        return Built(db, key, size, sigs)
    tmp = Path(tempfile.mkdtemp(prefix=f"{name}.building-", dir=d))  # private to this build
    t0 = time.perf_counter()
    site = new_site(str(tmp / "coi.db"), tmp / "coi.db.logkey")
    head = site.svc.store.head()
    assert head is not None and size >= head.size
    parties = [(site.people["alice"], "authored")]
    if witness:
        parties.append((site.people["bob"], "witnessed"))
    if progress:
        print(f"building a ledger of {size:,} entries in {d} ...", flush=True)
    bulk_append(site.svc, parties, size - head.size, progress=progress)
    site.svc.engine.dispose()
    with sqlite3.connect(tmp / "coi.db") as c:  # fold the WAL in, so the file stands alone
        c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    with sqlite3.connect(tmp / "coi.db") as c:
        got = c.execute("SELECT size FROM ledger_head").fetchone()[0]
    assert got == size, f"built {got} entries, not {size}"
    (tmp / "coi.db").rename(db)
    (tmp / "coi.db.logkey").rename(key)
    shutil.rmtree(tmp, ignore_errors=True)
    if progress:
        print(f"built in {time.perf_counter() - t0:,.1f} s", flush=True)
    return Built(db, key, size, sigs)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("size", type=int, nargs="?", default=20_000)
    ap.add_argument("--witness", action="store_true", help="two signatures per entry")
    ap.add_argument("--verify", action="store_true", help="verify the result with coi")
    a = ap.parse_args(argv)
    built = cached_ledger(a.size, witness=a.witness)
    print(f"{built.db} ({built.db.stat().st_size / 2**20:,.0f} MiB)")
    if a.verify:
        t = time.perf_counter()
        res = built.open().verify()
        print(f"verified {res.size:,} entries in {time.perf_counter() - t:,.1f} s, "
              f"root {res.root.hex()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
