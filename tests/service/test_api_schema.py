"""The OpenAPI document and the server agree, case by case, on a real server on loopback: what
the schema states of a field (a pattern, the keys a mapping may have, a bound, a number of items)
is what the server refuses, with a 422 naming the field, and ``OPTIONS`` on a path answers with
the methods it has (tests/service/test_fuzz.py fuzzes the whole document)."""

from __future__ import annotations

import re
import urllib.error
import urllib.request

import pytest
from pydantic import SecretStr

from service.settings import Settings
from tests.service.live_server import QUICK, TOKEN, app_in_thread, call, free_port
from tests.service.recording_ray import RecordingRay


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    settings = Settings(
        state_dir=tmp_path_factory.mktemp("state"), api_token=SecretStr(TOKEN), port=free_port()
    )
    with app_in_thread(settings, RecordingRay()) as url:
        yield url


@pytest.fixture(scope="module")
def components(service):
    status, document = call(service, "GET", "/openapi.json", token=None)
    assert status == 200
    return document["components"]["schemas"]


def keys(answer) -> set[str]:
    return {p["key"] for p in answer["problems"]}


def bare(method: str, url: str) -> tuple[int, str | None]:
    """The status and ``Allow`` header of a request without a body or a token."""
    request = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, answer.headers.get("Allow")
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("Allow")


def allowed(header: str | None) -> set[str]:
    return {m.strip() for m in (header or "").split(",") if m.strip()}


def string_of(field: dict) -> dict:
    """The string branch of an optional field's schema (``anyOf: [string, null]``)."""
    return next(s for s in field.get("anyOf", [field]) if s.get("type") == "string")


@pytest.mark.parametrize(
    ("path", "methods"),
    [
        ("/optimize", {"POST"}),
        ("/jobs/20261130-045236-1f2e3d", {"GET", "DELETE"}),
        ("/profiles/p", {"GET", "PUT"}),
        ("/healthz", {"GET"}),
    ],
)
def test_options_answers_with_every_method_of_the_path(service, path, methods):
    """204 with ``Allow``, without the token: which methods a path has is no secret."""
    assert bare("OPTIONS", service + path) == (204, ", ".join(sorted(methods | {"OPTIONS"})))


@pytest.mark.parametrize(
    ("path", "methods"),
    [("/jobs/20261130-045236-1f2e3d", {"GET", "DELETE"}), ("/profiles/p", {"GET", "PUT"})],
)
def test_a_method_a_path_lacks_is_405_with_every_method_it_has(service, path, methods):
    """Not only the methods of the first route the router tried (``GET``)."""
    status, header = bare("PATCH", service + path)
    assert status == 405 and allowed(header) == methods | {"OPTIONS"}, header


def test_an_empty_memory_budget_is_refused_and_the_schema_says_so(service, components):
    status, answer = call(service, "POST", "/optimize", {**QUICK, "memory_budget": ""})
    assert status == 422 and keys(answer) == {"memory_budget"}, answer
    budget = string_of(components["JobOptions"]["properties"]["memory_budget"])
    assert not re.search(budget["pattern"], "") and re.search(budget["pattern"], "4GiB"), budget


def test_a_memory_budget_the_pattern_allows_but_under_1mib_is_refused_naming_it(service):
    """The least budget is a bound the pattern does not state (the description does): the
    service's own check refuses it, as a 422 naming the field all the same."""
    status, answer = call(service, "POST", "/optimize", {**QUICK, "memory_budget": "1KiB"})
    assert status == 422 and keys(answer) == {"memory_budget"}, answer


@pytest.mark.parametrize("key", ["", "a\x01", "two\nlines"])
@pytest.mark.parametrize("path", ["/configs/check", "/profiles/p"])
def test_a_configuration_key_the_schema_refuses_is_refused(service, components, key, path):
    """At the top of the configuration and within a section; the schema's ``propertyNames``
    (``Key``) refuses the same key."""
    method = "PUT" if path.startswith("/profiles") else "POST"
    for config in ({key: None}, {"model": {key: 1}}):
        status, answer = call(service, method, path, {"config": config})
        assert status == 422, answer
        assert all(k.startswith(("config.", "body")) for k in keys(answer)), answer
        named = [p["key"] + p["message"] for p in answer["problems"]]
        said = key.encode("unicode_escape").decode() or "the key is empty"
        assert any(said in text for text in named), answer
    config = components["ConfigIn"]["properties"]["config"]
    assert config["propertyNames"] == {"$ref": "#/components/schemas/Key"}
    nested = next(s for s in components["JsonValue"]["anyOf"] if s.get("type") == "object")
    assert nested["propertyNames"] == {"$ref": "#/components/schemas/Key"}
    assert not re.search(components["Key"]["pattern"], key)
    assert re.search(components["Key"]["pattern"], "hidden_channels")


def test_a_number_beyond_the_schemas_bound_is_refused(service, components):
    """Every number of a configuration within +-(2**53 - 1), the bound the schema states."""
    status, answer = call(service, "POST", "/configs/check", {"config": {"model": {"x": 2**53}}})
    assert status == 422 and keys(answer) == {"config.model.x"}, answer
    bounds = [s for s in components["JsonValue"]["anyOf"] if s.get("type") in ("integer", "number")]
    assert all(s["maximum"] == 2**53 - 1 == -s["minimum"] for s in bounds), bounds


def test_unknown_body_keys_of_a_configuration_are_refused_as_the_schema_says(service, components):
    status, answer = call(service, "POST", "/configs/check", {"config": {}, "extra": 1})
    assert status == 422 and keys(answer) == {"extra"}, answer
    assert components["ConfigIn"]["additionalProperties"] is False


def test_overrides_beyond_the_schemas_max_items_are_refused_naming_them(service, components):
    overrides = components["JobOptions"]["properties"]["overrides"]["anyOf"][0]
    limit = overrides["maxItems"]
    status, job = call(
        service, "POST", "/optimize", {**QUICK, "overrides": ["model.lmax=1"] * limit}
    )
    assert status == 202, job
    status, answer = call(
        service, "POST", "/optimize", {**QUICK, "overrides": ["model.lmax=1"] * (limit + 1)}
    )
    assert status == 422 and keys(answer) == {"overrides"}, answer


def test_a_range_whose_min_is_above_its_max_is_refused_naming_the_space(service):
    """A rule between two fields, which no schema states: the spec refuses it, not the model."""
    space = {"prototyping": {"num_layers": {"min": 8, "max": 4}}}
    status, answer = call(service, "POST", "/optimize", {**QUICK, "space": space})
    assert status == 422 and keys(answer) == {"space.prototyping.num_layers"}, answer
    assert "num_layers: min=8 is above max=4" in answer["detail"], answer
