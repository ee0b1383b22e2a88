"""Service throughput: `fraudvae serve` against a bare FastAPI endpoint that parses the same payload
into per-row pydantic models and returns a dummy score, in turn (A B A B, best of two), in one run.

    python bench/service_load.py [--seconds 8] [--workers N] [--device auto|cpu|cuda]

Needs wrk (`apt-get install wrk`). Fits a model on example data first (seeded). Prints rows/s for
1000-row requests (8 connections) and requests/s with p99 latency for single-row requests (64
connections), then in-process `FraudVAE.score` of the same rows on the same machine (issue 34: the
service's 1000-row rows/s >= 0.5 of it); every run has a bounded duration and stops by itself.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pandas as pd

from fraudvae import FraudVAE, example_transactions

BARE = '''
import sys
from fastapi import FastAPI
from pydantic import BaseModel
class Txn(BaseModel):
{fields}
class Req(BaseModel):
    transactions: list[Txn]
class Result(BaseModel):
    score: float
    flag: bool
class Resp(BaseModel):
    results: list[Result]
app = FastAPI()
@app.post("/score", response_model=Resp)
async def score(req: Req) -> Resp:
    return Resp(results=[Result(score=1.0, flag=False) for t in req.transactions])
@app.get("/readyz")
async def readyz() -> bool:
    return True
if __name__ == "__main__":
    import uvicorn
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait(url: str, proc: subprocess.Popen, timeout: float = 90) -> None:
    end = time.time() + timeout
    while time.time() < end and proc.poll() is None:
        try:
            if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.3)
    raise SystemExit(f"{url} never became ready")


def wrk(url: str, script: Path, conns: int, seconds: int) -> tuple[float, float, int]:
    out = subprocess.run(["wrk", "-t2", f"-c{conns}", f"-d{seconds}s", "--latency", "-s", str(script), url + "/score"],
                         capture_output=True, text=True, timeout=seconds + 60).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    p99ms = float(p99.group(1)) * {"us": 1e-3, "ms": 1, "s": 1e3}[p99.group(2)]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return rps, p99ms, int(bad.group(1)) if bad else 0


def _timed(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=int, default=8)
    ap.add_argument("--workers", type=int, help="fraudvae serve --workers (default: its own)")
    ap.add_argument("--device", default="auto", help="fraudvae serve --device: auto, cpu or cuda")
    a = ap.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    tmp = Path(tempfile.mkdtemp())
    data = example_transactions(rows=5000, fraud_rate=0.0, seed=5)
    det = FraudVAE(id_column="transaction_id", seed=0).fit(data.drop(columns="is_fraud"))
    det.save(tmp / "model")
    rows = json.loads(example_transactions(1000, 0.0, seed=6).drop(columns="is_fraud").to_json(orient="records"))
    types = {"numeric": "float | None", "binary": "bool | None", "categorical": "str | None"}
    fields = "\n".join(f"    {c.name}: {types[c.role]}" for c in det.schema_.columns)
    (tmp / "bare.py").write_text(textwrap.dedent(BARE).replace("{fields}", fields))
    scripts = {}
    for n in (1000, 1):
        scripts[n] = tmp / f"post{n}.lua"
        body = json.dumps({"transactions": rows[:n]})
        scripts[n].write_text(f'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
                              f"wrk.body = {json.dumps(body)}\n")
    ports = {"bare": free_port(), "fraudvae": free_port()}
    extra = (["--workers", str(a.workers)] if a.workers else []) + ["--device", a.device]
    procs = {"bare": subprocess.Popen([sys.executable, str(tmp / "bare.py"), str(ports["bare"])]),
             "fraudvae": subprocess.Popen([sys.executable, "-m", "fraudvae", "serve", "--model", str(tmp / "model"),
                                           "--port", str(ports["fraudvae"]), "--log-level", "warning", *extra])}
    best: dict[tuple[str, int], tuple[float, float, int]] = {}
    try:
        for name in procs:
            wait(f"http://127.0.0.1:{ports[name]}", procs[name])
        for name in ["bare", "fraudvae"] * 2:
            for n, conns in ((1000, 8), (1, 64)):
                r = wrk(f"http://127.0.0.1:{ports[name]}", scripts[n], conns, a.seconds)
                if (name, n) not in best or r[0] > best[(name, n)][0]:
                    best[(name, n)] = r
    finally:
        for p in procs.values():
            p.send_signal(signal.SIGTERM)
            p.wait(30)
    b1k, o1k, b1, o1 = best[("bare", 1000)], best[("fraudvae", 1000)], best[("bare", 1)], best[("fraudvae", 1)]
    print(f"1000-row requests, 8 connections: fraudvae {o1k[0] * 1000:,.0f} rows/s (p99 {o1k[1]:.0f} ms) vs bare "
          f"{b1k[0] * 1000:,.0f} rows/s (p99 {b1k[1]:.0f} ms): x{o1k[0] / b1k[0]:.2f} (target >= 2)")
    print(f"1-row requests, 64 connections: fraudvae {o1[0]:,.0f} req/s (p99 {o1[1]:.1f} ms) vs bare {b1[0]:,.0f} "
          f"req/s (p99 {b1[1]:.1f} ms): x{o1[0] / b1[0]:.2f} req/s (target >= 0.8), x{o1[1] / b1[1]:.2f} p99 "
          f"(target <= 2)")
    print(f"non-2xx answers: fraudvae {o1k[2] + o1[2]}, bare {b1k[2] + b1[2]}")
    # in-process scoring of the same rows on the same machine (after the servers have stopped)
    frame = pd.DataFrame(rows * 100)
    det.score(frame.head(1000))
    inproc = max(len(frame) / _timed(lambda: det.score(frame)) for _ in range(3))
    print(f"in-process FraudVAE.score of the same rows (100,000 at once): {inproc:,.0f} rows/s; the service's "
          f"1000-row requests reach {o1k[0] * 1000 / inproc:.2f} of it (target >= 0.5)")
    print("reproduce: python bench/service_load.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
