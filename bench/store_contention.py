"""Two workers on one history state store, without HTTP or scoring: each a process applying
requests of `--rows` transactions (the first worker `--large` rows, when given) as fast as it can
for `--seconds`, over `--cards` cards, every transaction a new id. Prints each worker's rows,
failed calls, p99 call time and rows computed again (another worker changed their cards meanwhile),
and the total rows/s: how the store's concurrency control holds
up (lost tries, starved large requests, work done under the write lock).

    python bench/store_contention.py [--store sqlite|redis] [--cards 2000] [--rows 100] [--large 800]

The model is fitted on synthetic card transactions (`bench/history_load.py`'s) with
`entity_columns=("card_id",)`; Redis is started on a free port when `--store redis` (needs
redis-server).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from history_load import transactions  # noqa: E402

from fraudvae import FraudVAE  # noqa: E402
from fraudvae.history.store import open_state_store  # noqa: E402


def worker(where: dict, model: str, wid: int, rows: int, cards: int, seconds: float, q: mp.Queue) -> None:
    det = FraudVAE.load(model)
    store = open_state_store(det.history_.spec, det.history_, **where)
    df = transactions(20_000, 100 + wid, "2025-02-01")
    df["card_id"] = np.random.default_rng(wid).integers(0, cards, len(df))
    done, failed, times, i = 0, 0, [], 0
    end = time.time() + seconds
    while time.time() < end:
        lo = (i * rows) % (len(df) - rows)
        part = df.iloc[lo: lo + rows]
        t = time.perf_counter()
        try:
            store.apply({c: part[c].tolist() for c in part.columns}, rows, [f"w{wid}-{i}-{j}" for j in range(rows)])
            done += rows
        except Exception:
            failed += 1
        times.append(time.perf_counter() - t)
        i += 1
    q.put((wid, rows, done, failed, len(times), float(np.percentile(times, 99)) * 1000, getattr(store, "redone", 0)))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", choices=("sqlite", "redis"), default="sqlite")
    ap.add_argument("--cards", type=int, default=2000)
    ap.add_argument("--rows", type=int, default=100, help="rows per request")
    ap.add_argument("--large", type=int, help="the first worker's rows per request (default --rows)")
    ap.add_argument("--seconds", type=float, default=8)
    a = ap.parse_args()
    tmp = tempfile.mkdtemp()
    FraudVAE(entity_columns=("card_id",), time_columns=("when",), epochs=3, seed=0).fit(
        transactions(20_000, 0, "2025-01-01")).save(tmp + "/m")
    redis = None
    if a.store == "redis":
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        redis = subprocess.Popen(["redis-server", "--port", str(port), "--save", "", "--appendonly", "no"],
                                 stdout=subprocess.DEVNULL)
        time.sleep(0.5)
        where: dict = {"url": f"redis://127.0.0.1:{port}/0"}
    else:
        where = {"folder": Path(tmp) / "state"}
    try:
        det = FraudVAE.load(tmp + "/m")
        open_state_store(det.history_.spec, det.history_, **where)  # seeded once, before the workers
        q: mp.Queue = mp.Queue()
        procs = [mp.Process(target=worker, args=(where, tmp + "/m", w, a.large if (w == 0 and a.large) else a.rows,
                                                 a.cards, a.seconds, q)) for w in range(2)]
        for p in procs:
            p.start()
        results = sorted(q.get() for _ in procs)
        for p in procs:
            p.join()
    finally:
        if redis is not None:
            redis.terminate()
    for wid, rows, done, failed, calls, p99, redone in results:
        print(f"worker {wid} ({rows}-row requests): {done:,} rows in {calls} calls, {failed} failed, p99 {p99:.1f} ms, "
              f"{redone:,} rows computed again")
    print(f"total {sum(r[2] for r in results) / a.seconds:,.0f} rows/s ({a.store}, {a.cards:,} cards)")
    print("reproduce: python bench/store_contention.py " + " ".join(sys.argv[1:]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
