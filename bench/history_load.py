"""The service with history features: `fraudvae serve` of a model fitted with `--entity-column
card_id` on the embedded store and on Redis, against the same data's model without entities, in
one run on the same machine: single-transaction requests (32 concurrent clients) and 100-row
requests (8 clients), then single transactions from 4 clients (the latency of a service that is
not saturated), each for a fixed time, every transaction a new id (so each one is applied to
the state, none a retry).

    python bench/history_load.py [--seconds 10] [--workers 2]

The load comes from wrk (two threads; each request a new transaction id, from a Lua script) or,
without wrk, from this process (asyncio, httpx: the figures are then the client's as much as the
server's); on the same cores as the server either way, so the comparison between the three is what
they are for.
Redis is measured when `redis-server` is installed (started here on a free port, persistence off).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd

from fraudvae import FraudVAE, example_transactions


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def transactions(n: int, seed: int, start: str) -> pd.DataFrame:
    df = example_transactions(rows=n, fraud_rate=0.0, seed=seed).drop(columns="is_fraud")
    rng = np.random.default_rng(seed)
    df["card_id"] = rng.integers(0, 2000, n)
    df["when"] = (pd.Timestamp(start) + pd.to_timedelta(np.sort(rng.uniform(0, 20 * 86400, n)), unit="s")
                  ).strftime("%Y-%m-%d %H:%M:%S")
    return df


async def load(url: str, rows: list[dict], per_request: int, clients: int, seconds: float) -> tuple[float, float, int]:
    """(rows/s, p99 ms, failed requests) of `clients` clients posting `per_request` rows each time."""
    counter = itertools.count()
    latencies: list[float] = []
    failed = 0
    end = time.perf_counter() + seconds

    async def client(c: httpx.AsyncClient) -> None:
        nonlocal failed
        while time.perf_counter() < end:
            k = next(counter)
            body = [dict(rows[(k * per_request + j) % len(rows)], transaction_id=f"t{k}-{j}")
                    for j in range(per_request)]
            t = time.perf_counter()
            r = await c.post(url + "/score", json={"transactions": body})
            latencies.append(time.perf_counter() - t)
            failed += r.status_code != 200

    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=clients)) as c:
        t0 = time.perf_counter()
        await asyncio.gather(*(client(c) for _ in range(clients)))
        took = time.perf_counter() - t0
    return len(latencies) * per_request / took, float(np.percentile(latencies, 99) * 1000), failed


WRK_SCRIPT = """
counter = 0
rows = {rows}
request = function()
  counter = counter + 1
  local body = string.gsub(rows[(counter % #rows) + 1], "__ID__", string.format("w%d-%d", {tag}, counter))
  return wrk.format("POST", nil, {{["Content-Type"] = "application/json"}}, body)
end
"""


def wrk_load(url: str, rows: list[dict], per_request: int, conns: int, seconds: float, tmp: Path,
             tag: int) -> tuple[float, float, int] | None:
    """(rows/s, p99 ms, non-2xx) from wrk (two threads, `conns` connections), each request a new id;
    None when wrk is not installed."""
    if not shutil.which("wrk"):
        return None
    bodies = []
    for k in range(0, 200 * per_request, per_request):
        body = [dict(rows[(k + j) % len(rows)], transaction_id=f"__ID__-{j}") for j in range(per_request)]
        bodies.append(json.dumps({"transactions": body}))
    script = tmp / f"load{tag}.lua"
    script.write_text(WRK_SCRIPT.format(rows="{" + ", ".join(json.dumps(b) for b in bodies) + "}", tag=tag))
    out = subprocess.run(["wrk", "-t2", f"-c{conns}", f"-d{int(seconds)}s", "--latency", "-s", str(script),
                          url + "/score"], capture_output=True, text=True, timeout=seconds + 60).stdout
    found = re.search(r"Requests/sec:\s+([\d.]+)", out)
    assert found is not None, out
    rps = float(found.group(1))
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    assert p99 is not None, out
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return rps * per_request, float(p99.group(1)) * {"us": 1e-3, "ms": 1, "s": 1e3}[p99.group(2)], \
        int(bad.group(1)) if bad else 0


def serve(model: Path, port: int, workers: int, env: dict[str, str]) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "fraudvae", "serve", "--model", str(model), "--port", str(port),
                             "--workers", str(workers), "--log-level", "warning"],
                            env={**os.environ, **env})
    end = time.time() + 90
    while time.time() < end:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    proc.kill()
    raise SystemExit("the server never became ready")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--workers", type=int, default=2)
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    train = transactions(20_000, 0, "2024-01-01")
    FraudVAE(id_column="transaction_id", drop=("card_id",), seed=0).fit(train).save(tmp / "plain")
    FraudVAE(id_column="transaction_id", entity_columns=("card_id",), seed=0).fit(train).save(tmp / "history")
    rows = json.loads(transactions(5_000, 1, "2024-01-21").drop(columns="transaction_id").to_json(orient="records"))
    setups = [("no history", tmp / "plain", {}),
              ("history, embedded store", tmp / "history", {"FRAUDVAE_STATE_DIR": str(tmp / "state")})]
    redis = None
    if shutil.which("redis-server"):
        rport = free_port()
        redis = subprocess.Popen(["redis-server", "--port", str(rport), "--bind", "127.0.0.1", "--save", "",
                                  "--appendonly", "no"], stdout=subprocess.DEVNULL)
        time.sleep(0.5)
        setups.append(("history, Redis store", tmp / "history", {"FRAUDVAE_STATE_URL": f"redis://127.0.0.1:{rport}/0"}))
    results = {}
    try:
        for name, model, env in setups:
            port = free_port()
            proc = serve(model, port, a.workers, env)
            try:
                url = f"http://127.0.0.1:{port}"
                asyncio.run(load(url, rows, 1, 8, 1.0))  # warm-up
                tag = len(results)
                single = wrk_load(url, rows, 1, 32, a.seconds, tmp, tag) \
                    or asyncio.run(load(url, rows, 1, 32, a.seconds))
                hundred = wrk_load(url, rows, 100, 8, a.seconds, tmp, tag + 10) \
                    or asyncio.run(load(url, rows, 100, 8, a.seconds))
                light = wrk_load(url, rows, 1, 4, a.seconds, tmp, tag + 20) \
                    or asyncio.run(load(url, rows, 1, 4, a.seconds))
                results[name] = (single, hundred, light)
            finally:
                proc.send_signal(signal.SIGTERM)
                proc.wait(30)
    finally:
        if redis is not None:
            redis.terminate()
    print(f"{'':<26}{'1-row rows/s':>14}{'p99 ms':>9}{'100-row rows/s':>16}{'p99 ms':>9}"
          f"{'4 clients: req/s':>18}{'p99 ms':>9}{'failed':>8}")
    for name, ((r1, p1, f1), (r100, p100, f100), (rl, pl, fl)) in results.items():
        print(f"{name:<26}{r1:>14,.0f}{p1:>9.1f}{r100:>16,.0f}{p100:>9.1f}{rl:>18,.0f}{pl:>9.1f}{f1 + f100 + fl:>8}")
    base = results["no history"]
    for name, (one, hundred, _) in results.items():
        if name != "no history":
            print(f"{name}: {one[0] / base[0][0]:.2f} of the no-history single-row rows/s, "
                  f"{hundred[0] / base[1][0]:.2f} of its 100-row rows/s")
    if redis is None:
        print("Redis not measured: redis-server is not installed")
    print("reproduce: python bench/history_load.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
