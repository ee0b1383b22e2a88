"""The service through FastAPI's TestClient: contract, consistency with the library, bad input."""

import gc
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st

from fraudvae import FraudVAE
from fraudvae_service.app import create_app
from fraudvae_service.keys import key_counts, key_signatures
from fraudvae_service.schemas import PROOF_BYTES
from fraudvae_service.settings import Settings

JSON = {"content-type": "application/json"}


def records(df: pd.DataFrame) -> list[dict]:
    return json.loads(df.drop(columns=["is_fraud"]).to_json(orient="records"))


@pytest.fixture(scope="module")
def client(model_dir: Path):
    with TestClient(create_app(Settings(model=model_dir, max_request_rows=500, max_body_bytes=1 << 20))) as c:
        yield c


@pytest.fixture(scope="module")
def rows(data: pd.DataFrame) -> list[dict]:
    return records(data.iloc[:300])


def test_scores_equal_the_library(client: TestClient, rows: list[dict], data: pd.DataFrame, fitted: FraudVAE) -> None:
    r = client.post("/score", json={"transactions": rows})
    assert r.status_code == 200
    body = r.json()
    expected = fitted.score(data.iloc[:300])
    got = body["results"]
    assert len(got) == 300
    assert np.allclose([x["score"] for x in got], expected["score"], rtol=1e-9, atol=0)  # batch-independent
    assert [x["flag"] for x in got] == expected["flag"].tolist()
    assert all((x["score"] > body["threshold"]) == x["flag"] for x in got)
    assert np.allclose([x["p_value"] for x in got], expected["p_value"])
    assert [";".join(x["top_features"]) for x in got] == expected["top_features"].tolist()
    assert [x["id"] for x in got] == data["transaction_id"].iloc[:300].tolist()  # the id column is echoed
    assert body["model_version"] == fitted.version_ and body["threshold"] == pytest.approx(fitted.threshold_.value)


def test_null_is_a_missing_value_and_extra_fields_are_ignored(client: TestClient, rows: list[dict]) -> None:
    row = {**rows[0], "amount": None, "merchant_category": None, "not_a_column": [1, 2]}
    r = client.post("/score", json={"transactions": [row]})
    assert r.status_code == 200
    assert math.isfinite(r.json()["results"][0]["score"])


def bad_requests(good: dict) -> dict[str, tuple[dict, int, int | None, str | None]]:
    """name: (request kwargs, status, index, field)."""
    def raw(text: str) -> dict:
        return {"content": text.encode(), "headers": JSON}

    body = json.dumps({"transactions": [good, good]})
    amount = json.dumps(good["amount"])
    second = body.rfind(f'"amount": {amount}')
    def at_second(value: str) -> dict:
        return raw(body[:second] + f'"amount": {value}' + body[second + len(f'"amount": {amount}'):])

    return {
        "invalid JSON": (raw("{not json"), 400, None, None),
        "a list, not an object": ({"json": [good]}, 422, None, None),
        "no transactions key": ({"json": {"rows": [good]}}, 422, None, "transactions"),
        "null transactions": ({"json": {"transactions": None}}, 422, None, "transactions"),
        "empty batch": ({"json": {"transactions": []}}, 422, None, "transactions"),
        "a transaction that is a string": ({"json": {"transactions": [good, "x"]}}, 422, 1, None),
        "a required column missing": ({"json": {"transactions": [good, {k: v for k, v in good.items()
                                                                        if k != "amount"}]}}, 422, 1, "amount"),
        "text in a numeric column": ({"json": {"transactions": [good, {**good, "amount": "12"}]}}, 422, 1, "amount"),
        "a boolean in a numeric column": ({"json": {"transactions": [good, {**good, "amount": True}]}}, 422, 1,
                                          "amount"),
        "an object as a value": ({"json": {"transactions": [good, {**good, "amount": {"x": 1}}]}}, 422, 1, "amount"),
        "an array as a category": ({"json": {"transactions": [good, {**good, "merchant_category": [1]}]}}, 422, 1,
                                   "merchant_category"),
        "NaN literal": (at_second("NaN"), 422, 1, "amount"),
        "Infinity literal": (at_second("-Infinity"), 422, 1, "amount"),
        "a number overflowing a double": (at_second("1e400"), 422, 1, "amount"),
        "an integer overflowing a double": (at_second("9" * 400), 422, 1, "amount"),
        "too many rows": ({"json": {"transactions": [good] * 501}}, 413, None, "transactions"),
        "a body over the limit": (raw('{"transactions": [' + " " * (2 << 20) + "]}"), 413, None, None),
        "wrong content type": ({"content": b"amount=3", "headers": {"content-type": "text/plain"}}, 415, None, None),
        "no content type": ({"content": json.dumps({"transactions": [good]}).encode()}, 415, None, None),
    }


@pytest.mark.parametrize("case", list(bad_requests({"amount": 1.0})))
def test_bad_input_is_a_4xx_naming_the_place(client: TestClient, rows: list[dict], case: str) -> None:
    kwargs, status, index, field = bad_requests(rows[0])[case]
    r = client.post("/score", **kwargs)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["status"] == status and error["message"]
    assert (error["index"], error["field"]) == (index, field), error
    assert client.get("/healthz").status_code == 200


def test_metrics_count_what_was_served(client: TestClient, rows: list[dict]) -> None:
    before = client.get("/metrics").text
    client.post("/score", json={"transactions": rows[:7]})
    after = client.get("/metrics").text

    def value(text: str, name: str) -> float:
        line = next(x for x in text.splitlines() if x.startswith(name + " "))
        return float(line.split()[-1])

    assert value(after, "fraudvae_rows_scored_total") - value(before, "fraudvae_rows_scored_total") == 7
    assert value(after, "fraudvae_score_count") - value(before, "fraudvae_score_count") == 7
    for name in ("fraudvae_request_seconds", "fraudvae_batch_rows", "fraudvae_queue_rows", "fraudvae_rows_flagged",
                 "fraudvae_score"):
        assert f"# TYPE {name}" in after


def test_health_readiness_model_and_docs(client: TestClient, fitted: FraudVAE) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json()["model_version"] == fitted.version_
    info = client.get("/model").json()
    assert info["model_version"] == fitted.version_ and info["threshold"] == pytest.approx(fitted.threshold_.value)
    assert {c["name"] for c in info["schema"]["columns"]} == set(fitted.schema_.names())
    doc = client.get("/openapi.json").json()
    ref = doc["paths"]["/score"]["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    body = doc["components"]["schemas"][ref.rsplit("/", 1)[1]]
    item = body["properties"]["transactions"]["items"]
    assert set(item["required"]) == set(fitted.schema_.names())
    assert "ScoreResponse" in json.dumps(doc["paths"]["/score"]["post"]["responses"]["200"])


def test_api_keys(model_dir: Path, rows: list[dict]) -> None:
    with TestClient(create_app(Settings(model=model_dir, api_keys="k-one, k-two"))) as c:
        payload = {"transactions": rows[:1]}
        assert c.post("/score", json=payload).status_code == 401
        assert c.post("/score", json=payload, headers={"X-API-Key": "k-on"}).status_code == 401
        assert c.post("/score", json=payload, headers={"X-API-Key": "k-two"}).status_code == 200
        assert c.get("/model").status_code == 401
        assert c.get("/model", headers={"X-API-Key": "k-one"}).status_code == 200
        assert c.get("/healthz").status_code == 200  # probes stay open


def test_a_bad_model_directory_refuses_to_start(tmp_path: Path, model_dir: Path) -> None:
    from fraudvae import ModelFileError

    with pytest.raises(ModelFileError, match="does not exist"):
        with TestClient(create_app(Settings(model=tmp_path / "nope"))):
            pass
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in model_dir.iterdir():
        (broken / f.name).write_bytes(f.read_bytes())
    (broken / "model.json").write_text((broken / "model.json").read_text().replace('"threshold"', '"thresh0ld"', 1))
    with pytest.raises(ModelFileError, match="sha256"):
        with TestClient(create_app(Settings(model=broken))):
            pass


def test_not_ready_before_the_model_is_loaded(model_dir: Path) -> None:
    c = TestClient(create_app(Settings(model=model_dir)))  # no `with`: the lifespan has not run
    assert c.get("/readyz").status_code == 503
    assert c.post("/score", json={"transactions": [{"amount": 1}]}).status_code == 503
    assert c.get("/healthz").status_code == 200


def test_time_columns_take_json_strings_and_name_a_bad_transaction(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    n = 800
    t = pd.Timestamp("2024-03-04") + pd.to_timedelta(rng.integers(0, 28, n), unit="D") \
        + pd.to_timedelta(rng.uniform(8 * 3600, 22 * 3600, n).round(), unit="s")
    df = pd.DataFrame({"ts": pd.Series(t).sort_values().dt.strftime("%Y-%m-%dT%H:%M:%S").to_numpy(),
                       "amount": rng.lognormal(3, 0.5, n), "kind": rng.choice(["a", "b"], n)})
    det = FraudVAE(epochs=3, seed=0).fit(df)
    det.save(tmp_path / "m")
    with TestClient(create_app(Settings(model=tmp_path / "m"))) as c:
        rows = json.loads(df.head(20).to_json(orient="records"))
        r = c.post("/score", json={"transactions": rows})
        assert r.status_code == 200
        np.testing.assert_allclose([x["score"] for x in r.json()["results"]], det.score_samples(df.head(20)),
                                   rtol=1e-9)
        rows[4]["ts"] = "yesterday"
        r = c.post("/score", json={"transactions": rows})
        assert r.status_code == 422
        err = r.json()["error"]
        assert err["index"] == 4 and err["field"] == "ts" and "'yesterday'" in err["message"]


@pytest.mark.parametrize("kind", ["latin-1", "deep"])
def test_undecodable_bodies_are_400_not_500(client: TestClient, rows: list[dict], kind: str) -> None:
    body = json.dumps({"transactions": rows[:2]}).encode()
    if kind == "latin-1":  # a Latin-1 client's "café": not UTF-8
        body = body.replace(b'"transaction_id": "', b'"transaction_id": "caf\xe9', 1)
    else:  # an ignored extra field nested past any parser's limit
        body = body.replace(b'"amount": ', b'"x": ' + b"[" * 5000 + b"]" * 5000 + b', "amount": ', 1)
    r = client.post("/score", content=body, headers=JSON)
    assert r.status_code == 400 and r.json()["error"]["status"] == 400, r.text
    assert client.post("/score", json={"transactions": rows[:2]}).status_code == 200


@pytest.mark.parametrize("depth, nan", [(65, False), (1000, False), (65, True)])
def test_the_nesting_limit_is_the_services_not_the_interpreters(client: TestClient, rows: list[dict], depth: int,
                                                               nan: bool) -> None:
    """An ignored extra field nested past 64 levels is refused on every Python (how deep a parser goes
    before a RecursionError differs: 1,000 levels passed msgspec on 3.12), on the strict path and on
    the lenient one (a NaN sends the body through Python's json); 64 levels, brackets within strings
    and escaped quotes are scored."""
    body = json.dumps({"transactions": rows[:2]}).encode()
    nested = b"[" * (depth - 3) + b"]" * (depth - 3)
    r = client.post("/score", content=body.replace(b'"amount": ', b'"x": ' + nested + b', "amount": ', 1), headers=JSON)
    assert r.status_code == 400 and "nested too deeply" in r.json()["error"]["message"], r.text
    assert depth == 1000 or f"{depth} levels" in r.json()["error"]["message"]  # 3.11's parser stops at 1,000
    if nan:
        r = client.post("/score", headers=JSON, content=body.replace(b'"amount": ', b'"x": [' + nested + b', NaN], '
                                                                     b'"amount": ', 1))
        assert r.status_code == 400 and f"{depth + 1} levels" in r.json()["error"]["message"], r.text
    fine = b'"x": ' + b"[" * 61 + b'"\\\"]]]"' + b"]" * 61 + b', "y": "[[[[{{{{", "amount": '
    r = client.post("/score", content=body.replace(b'"amount": ', fine, 1), headers=JSON)
    assert r.status_code == 200 and len(r.json()["results"]) == 2, r.text


@pytest.mark.parametrize("bad_id", ["18446744073709551616", "-9223372036854775809", '"\\ud800"', "1.5", "true",
                                    '"' + "x" * 300 + '"', '{"a": ' * 900 + "1" + "}" * 900])
def test_ids_that_cannot_be_echoed_are_422_naming_the_transaction(client: TestClient, rows: list[dict],
                                                                   bad_id: str) -> None:
    body = json.dumps({"transactions": rows[:3]})
    wanted = json.dumps(rows[1]["transaction_id"])
    body = body.replace(f'"transaction_id": {wanted}', f'"transaction_id": {bad_id}', 1)
    r = client.post("/score", content=body.encode(), headers=JSON)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["index"] == 1 and r.json()["error"]["field"] == "transaction_id"
    ok = client.post("/score", json={"transactions": rows[:2]})
    assert ok.status_code == 200  # the server is fine afterwards


def test_a_non_finite_score_is_never_a_200(model_dir: Path, rows: list[dict], monkeypatch) -> None:
    from fraudvae import Scores

    with TestClient(create_app(Settings(model=model_dir))) as c:
        real = FraudVAE.score_encoded

        def broken(self, encoded):
            s = real(self, encoded)
            return Scores(np.full(len(s), np.nan), s.flag, s.p_value, s.top_features, s.contributions)

        monkeypatch.setattr(FraudVAE, "score_encoded", broken)
        r = c.post("/score", json={"transactions": rows[:3]})
        assert r.status_code == 500 and "non-finite" in r.json()["error"]["message"]


def test_an_api_key_protects_everything_but_the_probes(model_dir: Path, rows: list[dict]) -> None:
    with TestClient(create_app(Settings(model=model_dir, api_keys="k-one"))) as c:
        for path in ("/metrics", "/openapi.json", "/docs", "/model"):
            assert c.get(path).status_code == 401, path
            assert c.get(path, headers={"X-API-Key": "k-one"}).status_code == 200, path
        assert c.get("/readyz").status_code == 200 and c.get("/healthz").status_code == 200
        twice = [("x-api-key", "k-one"), ("x-api-key", "k-two"), ("content-type", "application/json")]
        for method, path in (("POST", "/score"), ("GET", "/model")):
            r = c.request(method, path, headers=twice, content=json.dumps({"transactions": rows[:1]}))
            assert r.status_code == 400 and "X-API-Key" in r.json()["error"]["message"], path
    with TestClient(create_app(Settings(model=model_dir, api_keys="k-one", public_metrics=True))) as c:
        assert c.get("/metrics").status_code == 200  # opened for a cluster-internal scraper
        assert c.get("/model").status_code == 401


def test_http_manners(client: TestClient, rows: list[dict]) -> None:
    import gzip

    r = client.get("/score")
    assert r.status_code == 405 and r.headers["allow"] == "POST"
    body = json.dumps({"transactions": rows[:5]}).encode()
    r = client.post("/score", content=body, headers={"content-type": "application/json; charset=latin-1"})
    assert r.status_code == 415 and "latin-1" in r.json()["error"]["message"]
    utf8 = {"content-type": "application/json; charset=UTF-8"}
    assert client.post("/score", content=body, headers=utf8).status_code == 200
    plain = client.post("/score", content=body, headers=JSON).json()
    zipped = client.post("/score", content=gzip.compress(body), headers={**JSON, "content-encoding": "gzip"})
    assert zipped.status_code == 200 and zipped.json()["results"] == plain["results"]
    bomb = gzip.compress(b" " * (8 << 20))  # 8 MiB of spaces: a few KiB compressed, past the 1 MiB limit
    r = client.post("/score", content=bomb, headers={**JSON, "content-encoding": "gzip"})
    assert r.status_code == 413 and len(bomb) < 64 << 10
    r = client.post("/score", content=body, headers={**JSON, "content-encoding": "br"})
    assert r.status_code == 415 and "br" in r.json()["error"]["message"]
    r = client.post("/score", content=b"\x1f\x8b not gzip", headers={**JSON, "content-encoding": "gzip"})
    assert r.status_code == 400


def test_docs_need_no_internet(client: TestClient) -> None:
    page = client.get("/docs")
    assert page.status_code == 200 and "cdn" not in page.text.lower()
    for asset in ("/docs-static/swagger-ui-bundle.js", "/docs-static/swagger-ui.css"):
        assert asset in page.text and client.get(asset).status_code == 200


@pytest.mark.parametrize("n", [1, 5, 300])
def test_observe_many_counts_as_observe_does(n: int) -> None:
    from prometheus_client import CollectorRegistry, Histogram

    from fraudvae_service.metrics import observe_many

    values = np.random.default_rng(n).normal(10, 3, n)
    values[0] = 7.0  # on a bound: counted in that bucket, as observe counts it
    one, many = (Histogram(name, "h", buckets=[4.0, 7.0, 10.0, 13.0], registry=CollectorRegistry())
                 for name in ("one", "many"))
    for v in values:
        one.observe(float(v))
    observe_many(many, values)

    def samples(h: Histogram) -> dict:
        return {(s.name.split("_", 1)[1], s.labels.get("le")): s.value for s in h.collect()[0].samples
                if not s.name.endswith("_created")}

    a, b = samples(one), samples(many)
    assert a.keys() == b.keys() and a[("bucket", "7.0")] >= 1
    assert all(a[k] == pytest.approx(b[k]) for k in a)


def test_startup_takes_its_objects_out_of_the_collectors_sight(model_dir: Path) -> None:
    gc.unfreeze()
    with TestClient(create_app(Settings(model=model_dir))) as c:
        assert c.get("/readyz").status_code == 200
        assert gc.get_freeze_count() > 0  # no full collection walks torch and the model again
    gc.unfreeze()


def test_answers_match_the_documented_contract(client: TestClient, rows: list[dict]) -> None:
    """The answers `ScoreEndpoint` builds, the pydantic models and the OpenAPI document say the same."""
    from fraudvae_service.openapi import ErrorResponse, ScoreResponse

    answer = client.post("/score", json={"transactions": rows[:4]}).json()
    ScoreResponse.model_validate(answer)  # extra fields forbidden: an undocumented one fails here
    doc = client.get("/openapi.json").json()["components"]["schemas"]
    assert set(doc["ScoreResponse"]["properties"]) == set(answer)
    # every documented field is in every result, but reasons: those come with ?explain=true only
    assert all(set(doc["ScoreResult"]["properties"]) - {"reasons"} == set(r) for r in answer["results"])
    assert len(answer["results"]) == 4
    explained = client.post("/score?explain=true", json={"transactions": rows[:4]}).json()
    ScoreResponse.model_validate(explained)
    assert all(set(doc["ScoreResult"]["properties"]) == set(r) for r in explained["results"])
    for body in ({"transactions": []}, {"transactions": [{**rows[0], "amount": "x"}]}):
        error = client.post("/score", json=body).json()
        ErrorResponse.model_validate(error)
        assert set(doc["ErrorDetail"]["properties"]) == set(error["error"])


def test_explain_gives_reason_codes_for_flagged_rows_as_the_library_does(client: TestClient, rows: list[dict],
                                                                         data: pd.DataFrame, fitted: FraudVAE) -> None:
    planted = [dict(r) for r in rows[:40]]
    planted[7] = {**planted[7], "amount": 50_000.0, "merchant_category": "grocery"}
    plain = client.post("/score", json={"transactions": planted}).json()["results"]
    assert all("reasons" not in r for r in plain)  # off by default: the response stays small
    got = client.post("/score?explain=true", json={"transactions": planted}).json()["results"]
    assert [r["score"] for r in got] == [r["score"] for r in plain]
    amount = {r["column"]: r for r in got[7]["reasons"] or []}.get("amount")
    assert got[7]["flag"] and amount is not None
    assert amount["text"].startswith("amount 50,000 (typical ") and amount["typical_high"] < 50_000
    frame = data.iloc[:40].copy()
    frame.loc[frame.index[7], ["amount", "merchant_category"]] = [50_000.0, "grocery"]
    flagged = [i for i, r in enumerate(got) if r["flag"]]
    library = fitted.reason_codes(frame.iloc[flagged])
    assert [got[i]["reasons"] for i in flagged] == [[r.to_dict() for r in row] for row in library]
    assert all(r["reasons"] is None for r in got if not r["flag"])
    assert client.post("/score?explain=false", json={"transactions": planted}).json()["results"] == plain


@pytest.mark.parametrize("query, field", [("explain=maybe", "explain"), ("explian=true", "explian")])
def test_a_bad_query_parameter_is_a_422_naming_it(client: TestClient, rows: list[dict], query: str,
                                                  field: str) -> None:
    r = client.post(f"/score?{query}", json={"transactions": rows[:2]})
    assert r.status_code == 422
    assert r.json()["error"]["field"] == field and field in r.json()["error"]["message"]


def test_a_key_given_twice_is_found_however_the_body_is_written(client: TestClient, rows: list[dict]) -> None:
    """The fast proof that no key repeats counts the keys in the body; each way a repeat could hide
    from that count is refused all the same, and bodies that only look unusual are scored (bodies of
    a dozen rows: the proof is tried from `PROOF_BYTES` on)."""
    two = rows[:12]
    assert len(json.dumps({"transactions": two})) > PROOF_BYTES

    def refused(body: str, key: str, where: str) -> None:
        r = client.post("/score", content=body, headers=JSON)
        assert r.status_code == 422 and f"{key!r}" in r.text and where in r.text, r.text

    # transaction 0 gives no id but 'amount' twice: as many keys as two transactions with ids
    first = json.dumps({k: v for k, v in two[0].items() if k != "transaction_id"})
    refused('{"transactions": [' + first.replace('"amount":', '"amount": 1, "amount":', 1) + ", "
            + json.dumps(two[1:])[1:-1] + "]}", "amount", "transaction 0")
    # a key written with a space before its colon escapes the count; a repeat makes it up
    body = json.dumps({"transactions": two})
    refused(body.replace('"hour":', '"hour" :', 1).replace('"amount":', '"amount": 1, "amount":', 1),
            "amount", "transaction 0")
    refused('{"transactions": [], "transactions": ' + json.dumps(two) + "}", "transactions", "more than once")
    # fields the model does not read take the one-pass count of the model's keys (`key_counts`)
    noted = json.dumps({"transactions": [{**r, "note": f"n:{i}"} for i, r in enumerate(two)]})
    refused(noted.replace('"amount":', '"amount": 1, "amount":', 1), "amount", "transaction 0")
    refused(noted.replace('"note": "n:5"', '"note": "n:5", "hour": 3', 1), "hour", "transaction 5")
    spaced = body.replace('"hour":', '"hour" :')
    extra = json.dumps({"transactions": [{**r, "note": {"a": 1}} for r in two]})
    odd = json.dumps({"transactions": [{**r, "merchant_category": ":grocery"} for r in two]})
    no_id = json.dumps({"transactions": [{k: v for k, v in r.items() if k != "transaction_id"} for r in two]})
    whole = '{"transactions": [' + first + ", " + json.dumps(two[1:])[1:-1] + "]}"
    for fine in (spaced, extra, odd, no_id, noted, whole):
        assert client.post("/score", content=fine, headers=JSON).status_code == 200, fine


KEYS = ["amount", "hour", "a_long_key_one_x", "a_long_key_two_x", ":colon", "", "été", "x"]


@settings(max_examples=200, deadline=None, database=None)
@given(st.lists(st.dictionaries(st.sampled_from(KEYS), st.one_of(st.integers(), st.text(":ab\u00e9 ", max_size=4),
                                                                  st.dictionaries(st.sampled_from(KEYS), st.integers(),
                                                                                  max_size=2)),
                                max_size=6), max_size=5),
       st.sampled_from([(",", ":"), (", ", ": ")]))
def test_the_one_pass_key_count_is_never_short(objects: list[dict], separators: tuple[str, str]) -> None:
    """`key_counts` (the proof for bodies with fields the model does not read) counts each key as
    often as it is a key in the body, however the values (colons in strings, nested objects) and
    keys (sharing a length and bytes, opening with a colon, not ASCII) are written; a colon it
    cannot place (whitespace before it) leaves it to the exact check."""
    body = json.dumps({"transactions": objects}, separators=separators, ensure_ascii=False).encode()
    seen: dict[str, int] = {}

    def count(pairs: list) -> dict:
        for k, _ in pairs:
            seen[k] = seen.get(k, 0) + 1
        return dict(pairs)

    json.loads(body, object_pairs_hook=count)
    assert key_counts(body, key_signatures([json.dumps(k, ensure_ascii=False).encode() for k in KEYS])) \
        == [seen.get(k, 0) for k in KEYS]
    if seen:
        assert key_counts(body.replace(b'":', b'" :', 1), key_signatures([b'"x"'])) is None


def test_a_key_or_parameter_given_twice_is_a_422_naming_it(client: TestClient, rows: list[dict]) -> None:
    body = json.dumps({"transactions": rows[:3]})
    dup = body.replace('"amount":', '"amount":99999999,"amount":', 1)
    r = client.post("/score", content=dup, headers=JSON)
    assert r.status_code == 422 and "'amount'" in r.text and "transaction 0" in r.text
    escaped = body.replace('"amount":', '"\\u0061mount":1,"amount":', 1)  # the same key, written with an escape
    assert client.post("/score", content=escaped, headers=JSON).status_code == 422
    assert client.post("/score", content=body, headers=JSON).status_code == 200
    named = body.replace('"merchant_category":"grocery"', '"merchant_category":"amount"')  # a value, not a key
    assert client.post("/score", content=named, headers=JSON).status_code == 200
    r = client.post("/score?explain=true&explain=false", content=body, headers=JSON)
    assert r.status_code == 422 and "explain" in r.text


def test_the_young_generation_is_collected_less_often_while_serving_and_as_before_after(model_dir: Path) -> None:
    before = gc.get_threshold()
    with TestClient(create_app(Settings(model=model_dir, gc_young=12_345))) as c:
        assert c.get("/readyz").status_code == 200 and gc.get_threshold() == (12_345, *before[1:])
    assert gc.get_threshold() == before
