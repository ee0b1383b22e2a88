"""Schemathesis against the served OpenAPI document of a real server process: generated requests,
valid and invalid, never get a server error, and every 200 from /score has one result per row."""

from pathlib import Path

import schemathesis
from hypothesis import HealthCheck, given, settings
from test_service_process import serve


def test_generated_requests_never_get_a_server_error(model_dir: Path) -> None:
    srv = serve(model_dir)
    try:
        srv.wait_ready()
        schema = schemathesis.openapi.from_url(srv.url + "/openapi.json")
        operations = [result.ok() for result in schema.get_all_operations()]
        seen: set[tuple[str, int]] = set()
        assert {op.path for op in operations} >= {"/score", "/healthz", "/readyz", "/metrics", "/model"}
        for op in operations:
            modes = [schemathesis.GenerationMode.POSITIVE]
            if op.method.upper() == "POST":  # invalid bodies too (GETs take no input to break)
                modes.append(schemathesis.GenerationMode.NEGATIVE)
            for mode in modes:
                strategy = op.as_strategy(generation_mode=mode)


                @given(strategy)
                @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), database=None)
                def check(case) -> None:
                    response = case.call(base_url=srv.url)
                    seen.add((case.path, response.status_code))
                    assert response.status_code < 500, f"{case.method} {case.path}: {response.status_code} " \
                                                       f"{response.text[:300]}"
                    if case.path == "/score" and response.status_code == 200:
                        assert len(response.json()["results"]) == len(case.body["transactions"])

                check()
        # both generated valid transactions that were scored and invalid ones that were refused
        assert ("/score", 200) in seen and any(p == "/score" and 400 <= c < 500 for p, c in seen), seen
    finally:
        srv.stop()


def _mutations(valid: bytes, rng) -> list[bytes]:
    """Hostile bodies built from a valid one: random bytes, truncations, flipped bytes, deep nesting,
    huge and odd numbers, odd unicode, duplicate keys, ids that cannot be echoed."""
    out = [bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 200))) for _ in range(300)]
    out += [valid[: rng.randint(0, len(valid))] for _ in range(300)]
    for _ in range(600):
        b = bytearray(valid)
        for _ in range(rng.randint(1, 8)):
            b[rng.randrange(len(b))] = rng.getrandbits(8)
        out.append(bytes(b))
    for depth in (10, 500, 999, 1000, 1001, 5000, 100_000):
        out.append(b'{"transactions": [{"x": ' + b"[" * depth + b"]" * depth + b"}]}")
        out.append(b'{"transactions": ' + b"[" * depth + b"]" * depth + b"}")
    odd = ["1e400", "-1e400", "1" * 400, "-0", "1e-400", "NaN", "Infinity", "18446744073709551616",
           '"\\ud800"', '"\\udfff\\ud800"', '"\\u0000"', '"caf\xe9"', '"\U0001f600"', "true", "null", "[]", "{}"]
    text = valid.decode()
    for value in odd:
        for field in ("amount", "merchant_category", "card_present", "transaction_id"):
            i = text.index(f'"{field}": ') + len(field) + 4
            j = min(k for k in (text.find(",", i), text.find("}", i)) if k > 0)
            out.append((text[:i] + value + text[j:]).encode("utf-8", "surrogatepass"))
    out.append(text.replace('{"amount"', '{"amount": 1, "amount"', 1).encode())  # a duplicate key
    out.append(text.replace('"transactions"', '"transactions": [], "transactions"', 1).encode())
    return out


def test_hostile_bodies_never_get_a_server_error(model_dir: Path, data) -> None:
    import json
    import random

    import httpx

    rows = json.loads(data.iloc[:3].drop(columns=["is_fraud"]).to_json(orient="records"))
    valid = json.dumps({"transactions": rows}).encode()
    bodies = _mutations(valid, random.Random(0))
    assert len(bodies) > 1000
    srv = serve(model_dir)
    try:
        srv.wait_ready()
        statuses: dict[int, int] = {}
        with httpx.Client(base_url=srv.url, timeout=30) as client:
            for body in bodies:
                r = client.post("/score", content=body, headers={"content-type": "application/json"})
                statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
                assert r.status_code < 500, (body[:120], r.status_code, r.text[:200])
            assert client.get("/healthz").status_code == 200
            assert client.post("/score", content=valid, headers={"content-type": "application/json"}).status_code == 200
        assert statuses.get(200, 0) > 0 and sum(v for k, v in statuses.items() if 400 <= k < 500) > 1000, statuses
    finally:
        srv.stop()
