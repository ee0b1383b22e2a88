"""The service as a real process: `fraudvae serve` and `uvicorn service.app:app`, concurrent
clients, per-request isolation, SIGTERM draining, refusal of a bad model directory."""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from fraudvae import FraudVAE

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, cmd: list[str], port: int, env: dict | None = None) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, **(env or {})}, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)

    def wait_ready(self, timeout: float = 60) -> None:
        end = time.time() + timeout
        while time.time() < end:
            assert self.proc.poll() is None, self.proc.stdout.read()
            try:
                if httpx.get(self.url + "/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError("server never became ready")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()


@pytest.fixture(scope="module")
def rows(data: pd.DataFrame) -> list[dict]:
    return json.loads(data.iloc[:400].drop(columns=["is_fraud"]).to_json(orient="records"))


def serve(model_dir: Path, workers: int = 1) -> Server:
    port = free_port()
    return Server([sys.executable, "-m", "fraudvae", "serve", "--model", str(model_dir), "--port", str(port),
                   "--workers", str(workers), "--log-level", "warning"], port)


def test_concurrent_clients_get_their_own_rows_and_errors(model_dir: Path, rows: list[dict],
                                                          fitted: FraudVAE, data: pd.DataFrame) -> None:
    expected = fitted.score_samples_(data.iloc[:400])
    srv = serve(model_dir)
    try:
        srv.wait_ready()

        def one(i: int) -> bool:
            part = [dict(r) for r in rows[i * 10:(i + 1) * 10]]
            if i % 7 == 3:  # every seventh request is bad at its row 4
                part[4]["amount"] = "n/a"
            r = httpx.post(srv.url + "/score", json={"transactions": part}, timeout=30)
            if i % 7 == 3:
                err = r.json()["error"]
                return r.status_code == 422 and err["index"] == 4 and err["field"] == "amount"
            got = [x["score"] for x in r.json()["results"]]
            return r.status_code == 200 and np.allclose(got, expected[i * 10:(i + 1) * 10], rtol=1e-5)

        with ThreadPoolExecutor(16) as ex:
            assert all(ex.map(one, range(40)))
    finally:
        srv.stop()
    assert srv.proc.returncode == 0


def test_sigterm_finishes_requests_in_flight_then_exits_0(model_dir: Path, rows: list[dict]) -> None:
    srv = serve(model_dir)
    srv.wait_ready()
    payload = json.dumps({"transactions": rows}).encode()

    def slow_body():
        yield payload[: len(payload) // 2]
        time.sleep(1.0)
        yield payload[len(payload) // 2:]

    answers: list[bool] = []

    def upload() -> None:
        r = httpx.post(srv.url + "/score", content=slow_body(), headers={"content-type": "application/json"},
                       timeout=30)
        answers.append(r.status_code == 200 and len(r.json()["results"]) == len(rows))

    threads = [threading.Thread(target=upload) for _ in range(3)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    srv.proc.send_signal(signal.SIGTERM)
    for t in threads:
        t.join(30)
    assert srv.proc.wait(30) == 0
    assert answers == [True, True, True]


def test_several_workers_and_uvicorn_from_a_checkout(model_dir: Path, rows: list[dict]) -> None:
    srv = serve(model_dir, workers=2)
    port = free_port()
    plain = Server([sys.executable, "-m", "uvicorn", "service.app:app", "--port", str(port), "--log-level", "warning"],
                   port, env={"FRAUDVAE_MODEL": str(model_dir)})
    try:
        for s in (srv, plain):
            s.wait_ready()
        a = httpx.post(srv.url + "/score", json={"transactions": rows[:50]}).json()["results"]
        b = httpx.post(plain.url + "/score", json={"transactions": rows[:50]}).json()["results"]
        assert [x["score"] for x in a] == [x["score"] for x in b]
    finally:
        srv.stop()
        plain.stop()
    assert srv.proc.returncode == 0


def test_a_bad_model_directory_stops_serve_with_one_line(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "fraudvae", "serve", "--model", str(tmp_path / "missing")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "does not exist" in r.stderr
