"""Fuzzing the service from its own OpenAPI document: schemathesis finds no 5xx, valid input or not, and every
answer follows the schema the document publishes for its status."""

from __future__ import annotations

from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.generation.modes import GenerationMode
from schemathesis.specs.openapi.checks import response_schema_conformance

from tests.integration import serve_support
from tests.integration.serve_support import ServerThread, WineModels

wine_models = serve_support.wine_models  # the session fixture
TOKEN = "fuzz-token"


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
@pytest.mark.parametrize("with_token", [True, False])
def test_no_server_errors(
    wine_models: WineModels, tmp_path: Path, mode: GenerationMode, with_token: bool
) -> None:
    wine_models.deploy(champion="1", challenger="2", strategy="shadow", challenger_weight=0.0)
    cfg = wine_models.config(tmp_path, compile_models=False, admin_token=TOKEN, max_body_bytes=100_000)
    with ServerThread(cfg) as server:
        schema = schemathesis.openapi.from_url(f"{server.base}/openapi.json")
        headers = {"Authorization": f"Bearer {TOKEN}"} if with_token else None
        seen: dict[int, int] = {}

        @given(case=schema.as_strategy(generation_mode=mode, headers=headers))
        @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def check(case: schemathesis.Case) -> None:
            response = case.call(base_url=server.base, timeout=10)
            seen[response.status_code] = seen.get(response.status_code, 0) + 1
            assert response.status_code < 500, (case.method, case.path, case.body, response.text[:300])
            case.validate_response(response, checks=[response_schema_conformance])

        check()
    assert seen  # the fuzzer did reach the service
    if mode is GenerationMode.POSITIVE:
        assert seen.get(200), seen  # and valid requests got answers, not only rejections
