"""``POST /labels``: confirmed frauds posted to the service count in their entities' history as a label
column counts in `fraudvae score`, on both state stores; idempotent, corrections counted, unknown ids
answered."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from test_history_labels import START, terminals
from test_service_history import redis_server  # noqa: F401 (a fixture)

from fraudvae import FraudVAE
from fraudvae_service.app import create_app
from fraudvae_service.settings import Settings


@pytest.fixture(scope="module")
def split() -> tuple[pd.DataFrame, pd.DataFrame]:
    df = terminals(n=8, days=30, seed=1)
    df["when"] = df["when"].dt.strftime("%Y-%m-%d %H:%M:%S")
    early = pd.to_datetime(df["when"]) < START + pd.Timedelta(days=17)
    return df[early], df[~early]


@pytest.fixture(scope="module")
def model(split, tmp_path_factory: pytest.TempPathFactory) -> Path:
    train, _ = split
    det = FraudVAE(label_column="is_fraud", id_column="tx", entity_columns=("terminal_id", "card_id"),
                   label_delay="2d", epochs=6, seed=0).fit(train)
    assert len(det.history_.tables["terminal_id"].pending) > 0  # labels of the last 2 days wait
    return det.save(tmp_path_factory.mktemp("labels") / "m")


def rows_of(df: pd.DataFrame) -> list[dict]:
    return json.loads(df.drop(columns="is_fraud").to_json(orient="records"))


def replay_with_labels(c: TestClient, test: pd.DataFrame, batch: int) -> np.ndarray:
    """Score the rows in batches, posting each batch's labels after it (and again: a retry)."""
    got: list[float] = []
    rows = rows_of(test)
    for i in range(0, len(rows), batch):
        r = c.post("/score", json={"transactions": rows[i: i + batch]})
        assert r.status_code == 200, r.text
        got += [x["score"] for x in r.json()["results"]]
        part = test.iloc[i: i + batch]
        labels = [{"transaction_id": t, "label": int(y)} for t, y in zip(part["tx"], part["is_fraud"], strict=True)]
        first = c.post("/labels", json={"labels": labels})
        assert first.status_code == 200, first.text
        assert first.json()["applied"] == len(labels) and first.json()["unknown"] == 0
        again = c.post("/labels", json={"labels": labels})
        assert again.json()["unchanged"] == len(labels) and again.json()["applied"] == 0
    return np.array(got)


@pytest.mark.parametrize("store", ["embedded", "redis"])
def test_labels_posted_between_requests_equal_the_labelled_file(model: Path, split, tmp_path: Path, store: str,
                                                                request) -> None:
    _, test = split
    test = test.head(400)
    det = FraudVAE.load(model)
    want = det.score_samples(test)  # the label column counts from 2 days after each transaction
    assert not np.allclose(want, det.score_samples(test.drop(columns="is_fraud")))  # the labels matter here
    if store == "redis":
        server = request.getfixturevalue("redis_server")
        settings = Settings(model=model, state_url=f"redis://127.0.0.1:{server['port']}/0")
    else:
        settings = Settings(model=model, state_dir=tmp_path / "state")
    with TestClient(create_app(settings)) as c:
        np.testing.assert_allclose(replay_with_labels(c, test, 37), want, rtol=1e-9)
        metrics = c.get("/metrics").text
        assert 'fraudvae_labels_total{outcome="applied"} 400.0' in metrics
        assert 'fraudvae_labels_total{outcome="unchanged"} 400.0' in metrics


def test_unknown_ids_and_changed_labels_are_answered(model: Path, split, tmp_path: Path) -> None:
    _, test = split
    rows = rows_of(test.head(5))
    with TestClient(create_app(Settings(model=model, state_dir=tmp_path / "state"))) as c:
        assert c.post("/score", json={"transactions": rows}).status_code == 200
        r = c.post("/labels", json={"labels": [{"transaction_id": rows[0]["tx"], "label": 1},
                                               {"transaction_id": "never-seen", "label": 1},
                                               {"transaction_id": rows[0]["tx"], "label": 0},
                                               {"transaction_id": rows[1]["tx"], "label": "fraud",
                                                "known_at": "2024-03-20 00:00:00"}]})
        assert r.status_code == 200, r.text
        body = r.json()
        assert (body["applied"], body["changed"], body["unknown"]) == (2, 1, 1)
        assert body["unknown_ids"] == ["never-seen"]
        bad = c.post("/labels", json={"labels": [{"transaction_id": rows[2]["tx"], "label": 7}]})
        assert bad.status_code == 422 and "label" in bad.json()["error"]["message"]
        bad = c.post("/labels", json={"labels": [{"transaction_id": rows[2]["tx"], "label": 1, "known_at": "soon"}]})
        assert bad.status_code == 422 and "known_at" in bad.json()["error"]["message"]
        assert c.post("/labels", json={"labels": []}).status_code == 422
        for body in (b'{"labels": [{"transaction_id": "\\ud800", "label": 1}]}',
                     b'{"labels": [{"transaction_id": "a", "label": 1, "known_at": "\\ud800"}]}',
                     b'{"labels": [{"transaction_id": "a", "label": NaN}]}', b"[" * 100_000):
            r = c.post("/labels", content=body, headers={"content-type": "application/json"})
            assert 400 <= r.status_code < 500, (body[:60], r.status_code, r.text)


def test_labels_need_a_model_that_keeps_them_and_a_key(model: Path, split, tmp_path: Path) -> None:
    train, _ = split
    plain = FraudVAE(label_column="is_fraud", id_column="tx", entity_columns=("terminal_id",), epochs=2,
                     seed=0).fit(train).save(tmp_path / "plain")
    with TestClient(create_app(Settings(model=plain, state_dir=tmp_path / "s1"))) as c:
        r = c.post("/labels", json={"labels": [{"transaction_id": "t1", "label": 1}]})
        assert r.status_code == 400 and "--label-delay" in r.json()["error"]["message"]
    with TestClient(create_app(Settings(model=model, state_dir=tmp_path / "s2", api_keys="sekret"))) as c:
        assert c.post("/labels", json={"labels": [{"transaction_id": "t1", "label": 1}]}).status_code == 401
        r = c.post("/labels", json={"labels": [{"transaction_id": "t1", "label": 1}]}, headers={"X-API-Key": "sekret"})
        assert r.status_code == 200 and r.json()["unknown"] == 1


def test_generated_label_requests_never_get_a_server_error(model: Path, split, tmp_path: Path) -> None:
    import httpx
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from test_service_process import serve

    _, test = split
    srv = serve(model, env={"FRAUDVAE_STATE_DIR": str(tmp_path / "state")})
    try:
        srv.wait_ready()
        rows = rows_of(test.head(20))
        assert httpx.post(srv.url + "/score", json={"transactions": rows}, timeout=30).status_code == 200
        schema = schemathesis.openapi.from_url(srv.url + "/openapi.json")
        op = next(r.ok() for r in schema.get_all_operations() if r.ok().path == "/labels")
        seen: set[int] = set()
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):
            @given(op.as_strategy(generation_mode=mode))
            @settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck), database=None)
            def check(case) -> None:
                response = case.call(base_url=srv.url)
                seen.add(response.status_code)
                assert response.status_code < 500, f"{response.status_code} {response.text[:300]}"

            check()
        assert 200 in seen and any(400 <= s < 500 for s in seen), seen
        # and the rows scored before are still known: a label for one of them is counted
        first = {"labels": [{"transaction_id": rows[0]["tx"], "label": 1}]}
        r = httpx.post(srv.url + "/labels", json=first, timeout=30)
        assert r.status_code == 200 and r.json()["unknown"] == 0
    finally:
        srv.stop()
