"""The OpenAPI document fuzzed with schemathesis against a real server on loopback, each operation
with a fixed seed: no request the schema allows gets a 5xx, and every answer matches the schema
the document gives it (its status's body schema, content type and headers, and the status is one
it documents), a route that needs the token refuses a request without it, an undocumented
method is refused with ``Allow``, ``OPTIONS`` names exactly the methods the document gives a
path, and a deleted resource stays deleted.

The document says exactly what is well formed: a request it allows is accepted, or refused for
what no schema can state (a job that does not exist, a preset that is not one of
configs/presets/, an override no training configuration accepts, a memory budget under 1MiB),
by the service's own checks, never by the request's model. So a request the schema allows that
the model refuses (FastAPI's ``RequestValidationError``) fails the test, naming what the model
refused: a constraint the schema does not state. (Schemathesis's negative-data check is left
out: pydantic's lax mode takes ``"5"`` for 5 and ``1`` for true, which that check calls
failures.)

Fuzzed bodies that are valid jobs are queued like any other, so this server's one seam to Ray
records submissions instead of running them (tests/service/test_api.py runs real jobs).
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from fastapi.exceptions import RequestValidationError
from hypothesis import HealthCheck, settings
from pydantic import SecretStr
from schemathesis.checks import (
    allow_header_conformance,
    content_type_conformance,
    ignored_auth,
    missing_required_header,
    not_a_server_error,
    positive_data_acceptance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
    use_after_free,
)
from schemathesis.config import SchemathesisConfig
from schemathesis.core import SCHEMATHESIS_TEST_CASE_HEADER

from service.main import create_app
from service.settings import Settings
from tests.service.live_server import free_port, serving
from tests.service.recording_ray import RecordingRay

pytestmark = pytest.mark.slow  # some 7,700 requests, about 95 s

TOKEN = "fuzz-token"
#: Cases per operation and phase: some 7,700 requests for the whole document, about 100 s on
#: two cores.
EXAMPLES = 500
#: What a request the schema allows may be answered besides 2xx: no such job or profile (404),
#: a job's file that does not exist yet or an Idempotency-Key reused (409), a body over
#: STAGETUNE_MAX_BODY_BYTES, which no JSON Schema states (413), and a refusal by the service's
#: own checks (422; one by the request's model fails ``accepted_by_its_model``).
ALLOWED_ANSWERS = ["2xx", "401", "404", "409", "413", "422"]


@pytest.fixture(scope="module")
def fuzzed_server(tmp_path_factory):
    """The service on loopback, and the refusals of its request models by test case id."""
    service = Settings(
        state_dir=tmp_path_factory.mktemp("fuzz"), api_token=SecretStr(TOKEN), port=free_port()
    )
    app = create_app(service, ray_jobs=RecordingRay())
    refused: dict[str, list[Any]] = {}
    answer = app.exception_handlers[RequestValidationError]

    async def recorded(request, exc):
        refused[request.headers.get(SCHEMATHESIS_TEST_CASE_HEADER, "")] = exc.errors()
        return await answer(request, exc)

    app.add_exception_handler(RequestValidationError, recorded)
    with serving(app, service.port) as url:
        yield url, refused


@pytest.fixture(scope="module")
def api_schema(fuzzed_server):
    url, _ = fuzzed_server
    config = SchemathesisConfig.from_dict(
        {"checks": {"positive_data_acceptance": {"expected-statuses": ALLOWED_ANSWERS}}}
    )
    return schemathesis.openapi.from_url(f"{url}/openapi.json", config=config)


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
def test_every_request_the_schema_allows_is_accepted_or_refused_for_what_it_cannot_state(
    case, fuzzed_server
):
    url, refused = fuzzed_server

    def accepted_by_its_model(ctx, response, case):
        errors = refused.pop(case.id, None)
        if errors is not None and case.meta is not None and case.meta.generation.mode.is_positive:
            raise AssertionError(f"the schema allows this request; its model refused it: {errors}")

    case.call_and_validate(
        base_url=url,
        headers={"Authorization": f"Bearer {TOKEN}"},
        checks=[
            accepted_by_its_model,
            not_a_server_error,
            positive_data_acceptance,
            status_code_conformance,
            response_schema_conformance,
            content_type_conformance,
            response_headers_conformance,
            ignored_auth,
            missing_required_header,
            unsupported_method,
            allow_header_conformance,
            use_after_free,
        ],
    )
