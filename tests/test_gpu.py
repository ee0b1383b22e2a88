"""The GPU path: run only where CUDA is available (skipped elsewhere, as on the CI machine)."""

import json
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
import torch
from test_service_process import Server, free_port

from fraudvae import FraudVAE

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


@cuda
def test_the_library_scores_on_the_gpu_as_on_the_cpu(model_dir: Path, data: pd.DataFrame) -> None:
    cpu = FraudVAE.load(model_dir, device="cpu").score(data.iloc[:2000])
    gpu_det = FraudVAE.load(model_dir, device="cuda")
    assert gpu_det.device_.type == "cuda"
    gpu = gpu_det.score(data.iloc[:2000])
    assert np.allclose(gpu["score"], cpu["score"], rtol=1e-6, atol=0)
    assert (gpu["flag"] == cpu["flag"]).all()


def service_batches_requests(model_dir: Path, data: pd.DataFrame, device: str) -> None:
    """`fraudvae serve --device DEVICE`: 40 concurrent requests score as the library does on the
    CPU (within 1e-6 relative) and share forward passes."""
    expected = FraudVAE.load(model_dir, device="cpu").score_samples(data.iloc[:400])
    rows = json.loads(data.iloc[:400].drop(columns=["is_fraud"]).to_json(orient="records"))
    port = free_port()
    srv = Server([sys.executable, "-m", "fraudvae", "serve", "--model", str(model_dir), "--port", str(port),
                  "--device", device, "--workers", "1", "--log-level", "warning"], port,
                 {"FRAUDVAE_MAX_WAIT_MS": "20"})
    try:
        srv.wait_ready()
        assert httpx.get(srv.url + "/model").json()["device"].startswith(device)

        def one(i: int) -> list[float]:
            r = httpx.post(srv.url + "/score", json={"transactions": rows[i * 10:(i + 1) * 10]}, timeout=60)
            assert r.status_code == 200, r.text
            return [x["score"] for x in r.json()["results"]]

        with ThreadPoolExecutor(20) as pool:
            got = np.concatenate(list(pool.map(one, range(40))))
        assert np.allclose(got, expected, rtol=1e-6, atol=0)
        lines = httpx.get(srv.url + "/metrics").text.splitlines()
        value = {name: float(line.split()[-1]) for line in lines for name in
                 ("fraudvae_batch_requests_sum", "fraudvae_batch_requests_count") if line.startswith(name)}
        assert value["fraudvae_batch_requests_sum"] == 40
        assert value["fraudvae_batch_requests_count"] < 40  # requests shared forward passes
    finally:
        srv.stop()


@cuda
def test_the_service_batches_requests_on_the_gpu(model_dir: Path, data: pd.DataFrame) -> None:
    service_batches_requests(model_dir, data, "cuda")


@cuda
def test_a_row_scores_the_same_alone_and_in_any_batch_on_the_gpu(model_dir: Path, data: pd.DataFrame) -> None:
    """On CUDA the float32 network runs on blocks of one shape: a row keeps its score (within 1e-9
    relative; its bits where the probe chose float32) alone, in batches of any size and place."""
    det = FraudVAE.load(model_dir, device="cuda")
    scorer = det._scorer()
    whole = det.score_samples(data.iloc[:1000])
    for size in (1, 7, 333):
        for start in (0, 5, 990 - size):
            got = det.score_samples(data.iloc[start: start + size])
            if scorer.fast is not None:
                np.testing.assert_array_equal(got, whole[start: start + size])
            np.testing.assert_allclose(got, whole[start: start + size], rtol=1e-9, atol=0)
