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
