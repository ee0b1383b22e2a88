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
import torch

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


def serve(model_dir: Path, workers: int = 1, env: dict | None = None, log_level: str = "warning") -> Server:
    port = free_port()
    return Server([sys.executable, "-m", "fraudvae", "serve", "--model", str(model_dir), "--port", str(port),
                   "--workers", str(workers), "--log-level", log_level], port, env)


def test_concurrent_clients_get_their_own_rows_and_errors(model_dir: Path, rows: list[dict],
                                                          fitted: FraudVAE, data: pd.DataFrame) -> None:
    expected = fitted.score_samples(data.iloc[:400])
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


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


def _stalled_upload(url: str, declared: int, sent: int) -> socket.socket:
    """A client that sends headers and `sent` bytes of a `declared`-byte body, then stops."""
    host, port = url.removeprefix("http://").split(":")
    s = socket.create_connection((host, int(port)))
    try:
        s.sendall(f"POST /score HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  f"Content-Length: {declared}\r\n\r\n".encode() + b" " * sent)
    except (ConnectionResetError, BrokenPipeError):
        pass  # refused part-way (503 past the in-flight budget) and closed: read below
    return s


def _status(s: socket.socket) -> bytes:
    """The status code the server answered on `s`, or b"reset" when it closed before we could read it."""
    s.settimeout(10)
    try:
        head = s.recv(64)
    except ConnectionResetError:
        return b"reset"
    return head.split(b" ")[1] if head else b"reset"


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads memory from /proc")
def test_stalled_uploads_are_bounded_timed_out_and_do_not_hold_shutdown(model_dir: Path, rows: list[dict]) -> None:
    """Clients that stall mid-body: the bytes being received at once are capped (503 past the cap),
    each stalled body is answered 408 at its deadline, a well-behaved client is served meanwhile; a
    client that stalls mid-headers is closed at the header deadline; SIGTERM with a stalled client
    connected exits 0 within the shutdown deadline."""
    env = {"FRAUDVAE_BODY_TIMEOUT_S": "3", "FRAUDVAE_MAX_BODY_BYTES_IN_FLIGHT": str(16 << 20),
           "FRAUDVAE_SHUTDOWN_TIMEOUT_S": "2", "FRAUDVAE_HEADER_TIMEOUT_S": "2"}
    srv = serve(model_dir, env=env, log_level="info")
    try:
        srv.wait_ready()
        before = _rss_mb(srv.proc.pid)
        stalled = [_stalled_upload(srv.url, 15 << 20, 6 << 20) for _ in range(12)]  # 72 MiB offered
        time.sleep(1.0)
        r = httpx.post(srv.url + "/score", json={"transactions": rows[:3]}, timeout=10)
        assert r.status_code == 200
        grown = _rss_mb(srv.proc.pid) - before
        assert grown < 60, f"server memory grew {grown:.0f} MB under 72 MiB of stalled uploads"
        answers = []
        for s in stalled:
            answers.append(_status(s))
            s.close()
        # past the budget: 503 and closed (a client still sending may see the reset first); within
        # it: 408 at the body deadline
        assert set(answers) <= {b"408", b"503", b"reset"} and b"408" in answers, answers
        assert answers.count(b"408") <= 3, answers  # 16 MiB of budget holds at most 2-3 of 6 MiB each
        host, port = srv.url.removeprefix("http://").split(":")
        half = socket.create_connection((host, int(port)))  # half its headers, then nothing
        half.sendall(b"POST /score HTTP/1.1\r\nHost: x\r\nContent-Ty")
        half.settimeout(10)
        t = time.monotonic()
        assert half.recv(64) == b"" and time.monotonic() - t < 5  # closed at the header deadline
        half.close()
        late = _stalled_upload(srv.url, 1 << 20, 1000)  # holds a partial body through the SIGTERM
        time.sleep(0.3)
        t = time.monotonic()
        srv.proc.send_signal(signal.SIGTERM)
        assert srv.proc.wait(15) == 0
        assert time.monotonic() - t < 8
        late.close()
        log = srv.proc.stdout.read()
        device = "cuda" if torch.cuda.is_available() else "cpu"  # the default device: the GPU when there is one
        assert f"ready on {device}" in log and "of 1" in log  # the startup log names version, device, workers
    finally:
        srv.stop()


def test_metrics_cover_every_worker(model_dir: Path, rows: list[dict]) -> None:
    """Two workers: whichever answers a scrape, the rows-scored counter counts both workers' rows,
    so it never goes backwards and ends at the rows sent."""
    srv = serve(model_dir, workers=2)
    try:
        srv.wait_ready()

        def scraped() -> float:
            text = httpx.get(srv.url + "/metrics", timeout=10).text
            return sum(float(line.split()[-1]) for line in text.splitlines()
                       if line.startswith("fraudvae_rows_scored_total"))

        seen, sent = [], 0
        for i in range(40):  # a new connection each: the workers share them out
            r = httpx.post(srv.url + "/score", json={"transactions": rows[i * 5:(i + 1) * 5]}, timeout=30)
            assert r.status_code == 200
            sent += 5
            seen.append(scraped())
        after = [scraped() for _ in range(10)]
        assert all(b >= a for a, b in zip(seen, seen[1:], strict=False)), seen
        assert after == [sent] * 10, after
        assert "fraudvae_threshold" in httpx.get(srv.url + "/metrics").text
        # the monitoring window spans both workers too: every read counts every row sent
        windows = [httpx.get(srv.url + "/monitor", timeout=10).json()["window"] for _ in range(8)]
        assert all(w["rows"] == sent for w in windows), windows
        assert max(w["workers_with_rows"] for w in windows) == 2, windows
    finally:
        srv.stop()
