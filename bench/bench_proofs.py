"""Inclusion-proof latency at a million entries, against pymerkle's SqliteTree on the same leaves.

The ledger is a real one (signed entries, built once by ``build_ledger.py`` and cached; ~1M
entries take a few minutes). coi answers a proof from its stored complete-subtree nodes: one
query for O(log n) node rows, then ``merkle.inclusion_proof``. Two figures: the store path alone
(``LedgerStore.nodes`` + ``merkle.inclusion_proof``) and the whole service call
(``LedgerService.prove_inclusion``: head, nodes, proof, root, self-check, base64). Target:
p99 <= 1 ms. The baseline is pymerkle 7's ``SqliteTree`` filled with the very same leaves (each
entry's DSSE envelope, so both compute identical RFC 6962 leaf hashes, and the roots are checked
to be equal), timed cold (a freshly opened tree) and warm (its subroot cache filled).

Run: ``python bench/bench_proofs.py [SIZE] [--quick] [--proofs 2000] [--pymerkle-proofs 30]``.
SIZE defaults to 1,000,000; ``--quick`` means 100,000.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from build_ledger import cached_ledger  # noqa: E402
from common import cache_dir, header, line, percentiles, verdict  # noqa: E402

from coi.db.repo import LedgerStore  # noqa: E402
from coi.db.tx import Tx  # noqa: E402
from coi.ledger import merkle  # noqa: E402
from coi.ledger.entry import envelope_bytes  # noqa: E402

TARGET_P99_MS = 1.0


def envelopes(store: LedgerStore, size: int) -> Iterator[bytes]:
    for row in store.rows(0, size, batch=20_000):
        yield envelope_bytes(row.statement, row.signatures)


def pymerkle_tree(store: LedgerStore, size: int, root: bytes) -> Path:
    """A pymerkle SqliteTree over the ledger's leaves, built once; its root must be ours."""
    from pymerkle import SqliteTree

    path = cache_dir() / f"pymerkle-{size}.db"
    if not path.exists():
        tmp = path.with_suffix(".building")
        tmp.unlink(missing_ok=True)
        t = time.perf_counter()
        with SqliteTree(str(tmp)) as tree:
            tree.append_entries(envelopes(store, size))
        tmp.rename(path)
        print(f"  (pymerkle tree built in {time.perf_counter() - t:.1f} s)")
    with SqliteTree(str(path)) as tree:
        if tree.get_size() != size or tree.get_root() != root:
            raise SystemExit("pymerkle's tree does not have coi's root: not the same leaves")
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("size", type=int, nargs="?", default=1_000_000)
    ap.add_argument("--quick", action="store_true", help="100,000 entries")
    ap.add_argument("--proofs", type=int, default=2000)
    ap.add_argument("--pymerkle-proofs", type=int, default=30)
    a = ap.parse_args(argv)
    size = 100_000 if a.quick else a.size
    built = cached_ledger(size)
    svc = built.open()
    head = svc.store.head()
    assert head is not None and head.size == size
    rng = random.Random(6962)
    indices = [rng.randrange(size) for _ in range(a.proofs)]
    header(f"inclusion proofs at {size:,} entries ({a.proofs} random indices)")

    # coi, store path: one query for the planned nodes, then the proof.
    store_t: list[float] = []
    with svc.engine.connect() as conn:
        tx = Tx(conn)  # one connection for every read, as before
        for i in indices[:50]:  # warm up the page cache, as a running service would be
            merkle.inclusion_proof(i, size, svc.store.nodes(merkle.inclusion_plan(i, size), tx=tx))
        for i in indices:
            t = time.perf_counter()
            nodes = svc.store.nodes(merkle.inclusion_plan(i, size), tx=tx)
            proof = merkle.inclusion_proof(i, size, nodes)
            store_t.append(time.perf_counter() - t)
    leaf = svc.store.nodes([(0, indices[-1])])[(0, indices[-1])]
    merkle.verify_inclusion(leaf, indices[-1], size, proof, head.root)

    # coi, the whole service call (what `coi prove inclusion` does).
    svc_t: list[float] = []
    for i in indices:
        t = time.perf_counter()
        svc.prove_inclusion(i)
        svc_t.append(time.perf_counter() - t)

    # pymerkle SqliteTree on the same leaves.
    from pymerkle import SqliteTree

    path = pymerkle_tree(svc.store, size, head.root)
    with SqliteTree(str(path)) as tree:
        t = time.perf_counter()
        tree.prove_inclusion(indices[0] + 1)  # pymerkle counts leaves from 1
        cold = time.perf_counter() - t
        warm_t: list[float] = []
        for i in indices[1:a.pymerkle_proofs + 1]:
            t = time.perf_counter()
            tree.prove_inclusion(i + 1)
            warm_t.append(time.perf_counter() - t)

    s, v, w = percentiles(store_t), percentiles(svc_t), percentiles(warm_t)
    line("pymerkle SqliteTree, cold (first proof)", cold * 1e3, "ms")
    line(f"pymerkle SqliteTree, warm p50 ({len(warm_t)} proofs) (baseline)", w["p50"], "ms")
    line("pymerkle SqliteTree, warm p99", w["p99"], "ms")
    line("coi store nodes + inclusion_proof, p50", s["p50"], "ms")
    line("coi store nodes + inclusion_proof, p99", s["p99"], "ms",
         target=f"<= {TARGET_P99_MS} ms")
    line("coi LedgerService.prove_inclusion, p50", v["p50"], "ms")
    line("coi LedgerService.prove_inclusion, p99", v["p99"], "ms",
         target=f"<= {TARGET_P99_MS} ms")
    line("speed-up of coi store p50 over pymerkle warm p50", w["p50"] / s["p50"], "x")
    line("speed-up of coi service p50 over pymerkle warm p50", w["p50"] / v["p50"], "x")
    line("speed-up of coi service p50 over pymerkle cold", cold * 1e3 / v["p50"], "x")
    ok = s["p99"] <= TARGET_P99_MS and v["p99"] <= TARGET_P99_MS
    verdict(ok, f"p99 {s['p99']:.3f} ms (store), {v['p99']:.3f} ms (service) at {size:,}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
