"""Chain-of-identity benchmarks, each against a baseline measured in the same run.

(a) Rebuilding every product's state from the ledger (``coi.domain.replay.replay`` over the
    facts read from the database: every entry re-checked against the process) at 1,000,000
    entries, as a ratio to plain verification of the same ledger (``LedgerService.verify``:
    bytes, signatures, chain, tree, head). Also ``CoiService.verify`` (both, plus the comparison
    with the ``product_state`` table), as ``coi verify`` runs it.
(b) ``coi status`` (``CoiService.status()``) at 10,000 products; target < 200 ms. Baseline: a
    bare ``SELECT count(*) FROM product_state`` on the same database.

The ledgers are real: a site made by ``create_site`` (migrations, log key, genesis, users with
scrypt-wrapped keys), then products walked along ``coi.service.demo.PLAN`` by the staff. Each
step is decided by ``coi.domain.check.check`` exactly as ``CoiService.record`` decides it, signed
with ``coi.ledger.entry.sign`` and chained; rows, tree nodes (``merkle.TreeBuilder``) and the
head are inserted in batches, and the ``product_state`` table is written from the resulting
``ChainState`` with the service's own code. The result passes ``CoiService.verify`` (checked
once after each build). Built ledgers are cached under ``common.cache_dir()``.

Run: ``python bench/bench_chain.py [--entries 1000000] [--products 10000] [--quick]``.
"""

from __future__ import annotations

import argparse
import random
import shutil
import sqlite3
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import cache_dir, header, line, verdict  # noqa: E402

from coi.domain import isbt  # noqa: E402
from coi.domain.check import check  # noqa: E402
from coi.domain.facts import Attempt, Fact, Signer  # noqa: E402
from coi.domain.facts import patient_commitment as commit  # noqa: E402
from coi.domain.replay import replay  # noqa: E402
from coi.domain.rules.identity import item_closed  # noqa: E402
from coi.ledger import jcs, merkle  # noqa: E402
from coi.ledger.entry import (  # noqa: E402
    FORMAT_VERSION,
    SignerRef,
    Statement,
    SubjectLink,
    sign,
)
from coi.service.chain import AUTHOR_MEANING, SOON_MS, CoiService, fact_of  # noqa: E402
from coi.service.demo import (  # noqa: E402
    DEMO_FIN,
    DEMO_STAFF,
    PLAN,
    SCANNED_BY_STATION,
    MovableClock,
    Walk,
    create_site,
)
from coi.service.label_codes import label_id, next_number  # noqa: E402
from coi.service.ledger import Unlocked  # noqa: E402

T0 = 1_790_000_000_000
MIN, H, D = 60_000, 3_600_000, 86_400_000
# The plan's people; one key each (scrypt is paid once per build).
STAFF = tuple(s for s in DEMO_STAFF if s[0] != "ari")  # the demo staff but the auditor
ENTRIES_PER_PRODUCT = 1 + len(PLAN) + 3  # enrolment, the plan, one final bag's label
SCANNED = SCANNED_BY_STATION | {"wristband_commitment"}  # fields a station scans
LABELLER = "maya"  # who issues, prints and applies labels (as coi.service.demo.label_bags)
STAGGER = 7 * MIN  # products start this far apart


def _password(user: str) -> str:
    return f"{user}-bench-2026"


@dataclass
class Built:
    db: Path
    log_key: Path
    entries: int
    products: int

    def service(self) -> CoiService:
        return CoiService.open(str(self.db), str(self.log_key))


def _events(n_products: int, depth: list[int]) -> list[tuple[int, int, int]]:
    """(time, product, step) with step -1 = enrolment, in time order (ties by product)."""
    out = []
    for k in range(n_products):
        t0 = T0 + H + k * STAGGER
        out.append((t0, k, -1))
        for n in range(depth[k]):
            out.append((t0 + PLAN[n][1], k, n))
    out.sort()
    return out


def build(db: Path, log_key: Path, n_products: int, depth: list[int], *,
          chunk: int = 10_000, progress: bool = True) -> int:
    """A real site with ``n_products`` walked ``depth[k]`` plan steps deep; returns its size."""
    clock = MovableClock(T0)
    site = create_site(str(db), str(log_key), clock=clock, staff=STAFF, password=_password)
    svc = site.svc
    ledger = svc.ledger
    process = svc.process()
    people: dict[str, tuple[Unlocked, str, frozenset[str]]] = {}
    for user, name, roles in STAFF:
        people[user] = (site.people[user], name, frozenset(roles))
    store = ledger.store
    head = store.head()
    assert head is not None
    tz = ledger.genesis_tz
    chain = svc.chain()
    tree = merkle.TreeBuilder.from_frontier(head.size, [
        store.nodes(merkle.frontier_nodes(head.size))[i]
        for i in merkle.frontier_nodes(head.size)])
    prev, index, last_t = head.last_hash, head.size, head.last_time_ms
    links: dict[str, SubjectLink] = {}  # each product's last entry (format v2 back-links)
    year = 2026
    walks = []
    for k in range(n_products):
        coi = isbt.assign_coi_id(DEMO_FIN, year, k + 1).text
        cid = isbt.coi_id_from_text(coi)
        w = Walk(coi=coi, seq=k + 1, bags=1, patient_id=f"MRN{k + 1:07d}",
                 din=isbt.Din(DEMO_FIN, cid.year, f"{(k + 1) % 1_000_000:06d}").text)
        walks.append(w)
    p = "%s" if store.is_postgres else "?"
    sql_entry = ("INSERT INTO ledger_entry (idx, prev_hash, entry_hash, time_ms, type, subject, "
                 f"signer, statement, signatures) VALUES ({', '.join([p] * 9)})")
    sql_node = f"INSERT INTO tree_node (level, idx, hash) VALUES ({p}, {p}, {p})"
    sql_head = (f"UPDATE ledger_head SET size = {p}, root = {p}, last_hash = {p}, "
                f"last_time_ms = {p} WHERE id = 1")
    rows: list[tuple[object, ...]] = []
    nodes: list[tuple[int, int, bytes]] = []
    start = time.perf_counter()

    def flush() -> None:
        if not rows:
            return
        with ledger.engine.begin() as conn:
            conn.exec_driver_sql(sql_entry, rows)
            conn.exec_driver_sql(sql_node, nodes)
            conn.exec_driver_sql(sql_head, (index, tree.root(), prev.hex(), last_t))
        rows.clear()
        nodes.clear()
        if progress:
            el = time.perf_counter() - start
            print(f"  built {index:,} entries ({index / el:,.0f}/s)", flush=True)

    def emit(w: Walk, step: str, author: str, witness: str | None, item: str | None,
             fields: dict[str, str], t: int) -> None:
        nonlocal prev, index, last_t
        spec = process.steps[step]
        a_key, a_name, a_roles = people[author]
        meaning = AUTHOR_MEANING.get(spec.effect, "authored")
        signers = [Signer(author, a_name, meaning, a_roles)]
        refs = [SignerRef(author, a_key.public_key, a_name, meaning)]
        keys = [a_key.key]
        if witness is not None:
            w_key, w_name, w_roles = people[witness]
            wm = "verified" if spec.effect == "bedside_verification" else "witnessed"
            signers.append(Signer(witness, w_name, wm, w_roles))
            refs.append(SignerRef(witness, w_key.public_key, w_name, wm))
            keys.append(w_key.key)
        last_t = max(last_t, t)
        scanned = {k: "scanner" for k in fields if k in SCANNED}  # as a scan station enters
        decision = check(process, chain, Attempt(
            step=step, subject=w.coi, item=item, fields=fields, actor=signers[0],
            witness=signers[1] if len(signers) > 1 else None, now_ms=last_t, entry=scanned))
        assert decision.allowed and decision.entry_type, (step, w.coi, decision.reasons)
        data = jcs.normalise(dict(decision.data))
        st = Statement(log=head.origin, index=index, prev=prev, time_ms=last_t, tz=tz,
                       type=decision.entry_type, subject=w.coi, signers=tuple(refs), data=data,
                       version=FORMAT_VERSION, subject_prev=links.get(w.coi))
        e = sign(st, keys)
        links[w.coi] = SubjectLink(index, e.entry_hash)
        chain.apply(Fact(index=index, time_ms=last_t, type=st.type, subject=w.coi, data=data,
                         signers=tuple(signers)))
        rows.append((index, prev.hex(), e.entry_hash.hex(), last_t, st.type, w.coi, author,
                     e.statement_bytes, e.signatures_bytes))
        nodes.extend(tree.append(e.entry_hash))
        prev, index = e.entry_hash, index + 1

    def label_new_bags(w: Walk, step: str, t: int) -> None:
        """As ``coi.service.demo.label_bags``: bags a later step needs labelled are issued a
        label, printed and applied right after the step that made them."""
        spec = process.steps[step]
        product = chain.product(w.coi)
        if spec.creates is None or product is None:
            return
        kind = spec.creates.kind
        if not any(s.labelled_items == kind for s in process.steps.values()):
            return
        applied = {lab.item for lab in product.labels.values() if lab.status == "applied"}
        for item in sorted(i.id for i in product.items_of(kind)):
            if item in applied or item_closed(product.items[item].status):
                continue
            product = chain.product(w.coi) or product
            label = label_id(w.coi, item, next_number(product))
            emit(w, "label_issue", LABELLER, None, item,
                 {"label": label, "template": "4x2 zpl 203dpi"}, t)
            emit(w, "label_print", LABELLER, None, None, {"label": label}, t)
            emit(w, "label_apply", LABELLER, None, None, {"label": label}, t)

    for t, k, n in _events(n_products, depth):
        w = walks[k]
        secret = w.coi.encode()
        if n < 0:
            emit(w, "enrolment", "alice", None, None,
                 {"patient_commitment": commit(secret, w.patient_id),
                  "treatment_site": "A9999-HEMATOLOGY", "manufacturing_slot": f"S{k}"}, t)
        else:
            step, _off, author, witness, item, fn = PLAN[n]
            fields = dict(fn(w, t))
            if "wristband" in fields:
                fields["wristband_commitment"] = commit(secret, fields.pop("wristband"))
            emit(w, step, author, witness, item, fields, t)
            label_new_bags(w, step, t)
        if len(rows) >= chunk:
            flush()
    flush()
    with ledger.db.transaction() as tx:  # the state table, written by the service's own code
        for product in chain.products.values():
            svc._put_state(tx, product)
    ledger.engine.dispose()
    return index


def cached(kind: str, n_products: int, depth: list[int], *, progress: bool = True,
           check: bool = True) -> Built:
    d = cache_dir()
    name = f"chain-{kind}-{n_products}-v{FORMAT_VERSION}"
    db, key = d / f"{name}.db", d / f"{name}.db.logkey"
    if db.exists() and key.exists():
        size = sqlite3.connect(db).execute("SELECT size FROM ledger_head").fetchone()[0]
        return Built(db, key, size, n_products)
    tmp = d / f"{name}.building"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    t = time.perf_counter()
    if progress:
        print(f"building {name} ({n_products:,} products) in {d} ...", flush=True)
    size = build(tmp / "coi.db", tmp / "coi.db.logkey", n_products, depth, progress=progress)
    with sqlite3.connect(tmp / "coi.db") as c:
        c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    if progress:
        print(f"built {size:,} entries in {time.perf_counter() - t:,.1f} s"
              + ("; checking it with CoiService.verify ..." if check else ""), flush=True)
    if check:
        CoiService.open(str(tmp / "coi.db"), str(tmp / "coi.db.logkey")).verify()
    (tmp / "coi.db").rename(db)
    (tmp / "coi.db.logkey").rename(key)
    (tmp / "coi.db.phikey").rename(d / f"{name}.db.phikey")  # patients' identifiers open with it
    shutil.rmtree(tmp, ignore_errors=True)
    return Built(db, key, size, n_products)


# ------------------------------------------------------------------------------- (a) rebuild


def bench_rebuild(entries: int, *, check: bool = True) -> None:
    n_products = max(1, entries // ENTRIES_PER_PRODUCT)
    built = cached("full", n_products, [len(PLAN)] * n_products, check=check)
    header(f"(a) rebuild every product's state from the ledger: {built.entries:,} entries, "
           f"{n_products:,} products")
    svc = built.service()
    process = svc.process()

    t = time.perf_counter()
    res = svc.ledger.verify()
    t_verify = time.perf_counter() - t
    assert res.size == built.entries

    t = time.perf_counter()
    reg = svc.ledger.registry()
    types = process.entry_types
    facts = [fact_of(Statement.from_json(jcs.decode(r.statement)), reg)
             for r in svc.ledger.store.rows() if r.type in types]
    t_read = time.perf_counter() - t
    t = time.perf_counter()
    chain = replay(process, facts)
    t_replay = time.perf_counter() - t
    assert len(chain.products) == n_products
    del facts, chain

    t = time.perf_counter()
    svc2 = built.service()
    svc2.verify()
    t_coi_verify = time.perf_counter() - t

    line("LedgerService.verify (baseline)", t_verify, "s")
    line("  read + decode process facts", t_read, "s", baseline=t_verify)
    line("  replay (re-check + apply every fact)", t_replay, "s", baseline=t_verify)
    line("rebuild = read + replay", t_read + t_replay, "s", baseline=t_verify)
    line("CoiService.verify (coi verify: both + table)", t_coi_verify, "s", baseline=t_verify)
    line("rebuild rate", built.entries / (t_read + t_replay), "entries/s")
    line("verify rate", built.entries / t_verify, "entries/s")


# --------------------------------------------------------------------------------- (b) status


def bench_status(n_products: int, rounds: int) -> None:
    rng = random.Random(2026)
    depth = [rng.randrange(0, len(PLAN) + 1) for _ in range(n_products)]
    built = cached("status", n_products, depth)
    header(f"(b) coi status at {n_products:,} products ({built.entries:,} entries)")
    svc = built.service()
    # the site's clock at its last event, so windows are running out / exceeded as in real use
    head = svc.ledger.store.head()
    assert head is not None
    clock = MovableClock(head.last_time_ms)
    svc = CoiService.open(str(built.db), str(built.log_key), clock=clock)
    svc.status()  # warm: process loaded, connections opened

    def timed(fn: object) -> list[float]:
        out = []
        for _ in range(rounds):
            t = time.perf_counter()
            fn()  # type: ignore[operator]
            out.append(time.perf_counter() - t)
        return out

    def count() -> int:
        with svc.ledger.engine.connect() as c:
            return int(c.exec_driver_sql("SELECT count(*) FROM product_state").scalar() or 0)

    def queries() -> object:
        return svc.store.summary(soon_ms=SOON_MS, now_ms=clock.now_ms())

    assert count() == n_products
    base = statistics.median(timed(count))
    raw = statistics.median(timed(queries))
    got = timed(svc.status)
    s = svc.status()
    p50 = statistics.median(got)
    line("SELECT count(*) FROM product_state (baseline)", base * 1e3, "ms")
    line("the status queries alone (ChainStore.summary)", raw * 1e3, "ms", baseline=base)
    line("CoiService.status() p50", p50 * 1e3, "ms", baseline=base, target="< 200 ms")
    line("CoiService.status() max", max(got) * 1e3, "ms")
    print(f"  states: {len(s['by_state'])}, windows listed: {len(s['windows'])}, "
          f"products with open deviations: {len(s['open_deviations'])}")
    verdict(p50 < 0.200, f"coi status at {n_products:,} products under 200 ms (p50)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--entries", type=int, default=1_000_000, help="ledger size for (a)")
    ap.add_argument("--products", type=int, default=10_000, help="products for (b)")
    ap.add_argument("--rounds", type=int, default=21, help="status timings for (b)")
    ap.add_argument("--quick", action="store_true", help="20,000 entries and 1,000 products")
    ap.add_argument("--only", choices=("rebuild", "status"))
    ap.add_argument("--no-check", action="store_true",
                    help="skip the CoiService.verify check of a newly built ledger (a) (the "
                         "benchmark runs it anyway)")
    a = ap.parse_args(argv)
    if a.quick:
        a.entries, a.products = 20_000, 1_000
    if a.only != "status":
        bench_rebuild(a.entries, check=not a.no_check)
    if a.only != "rebuild":
        bench_status(a.products, a.rounds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
