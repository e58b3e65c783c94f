"""Schemathesis over the server's own ``/openapi.json``, against a real uvicorn server.

Every documented operation gets generated requests (schema-valid and not) without a key and with
the admin key; every answer must be documented for that operation (status, content type, body
schema, headers such as 405's ``Allow``) and none may be a 5xx. Derandomized, so a failure
reproduces; ``VGLOSS_SCHEMATHESIS_EXAMPLES`` raises the count for a longer local run.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is a dev dependency (pip install -e '.[dev]')")

from api_helpers import LiveServer, make_settings  # noqa: E402
from hypothesis import HealthCheck, given  # noqa: E402
from hypothesis import settings as hypothesis_settings  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.core.failures import FailureGroup  # noqa: E402
from schemathesis.specs.openapi.checks import positive_data_acceptance  # noqa: E402

from app.main import create_app  # noqa: E402

ADMIN_KEY = "conformance-admin-key"
EXAMPLES = int(os.environ.get("VGLOSS_SCHEMATHESIS_EXAMPLES", "25"))


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> LiveServer:
    data_dir: Path = tmp_path_factory.mktemp("conformance")
    live = LiveServer(create_app(make_settings(data_dir, admin_keys=[ADMIN_KEY], max_images_per_request=4)))
    live.start()
    yield live
    live.stop()


@pytest.fixture(scope="module")
def operations(server: LiveServer) -> list:
    schema = schemathesis.openapi.from_url(server.url + "/openapi.json")
    found = [result.ok() for result in schema.get_all_operations()]
    assert len(found) >= 8, [op.label for op in found]
    return found


CONTENT_CHECKED = {"POST /v1/classify", "POST /v1/class-sets", "POST /v1/class-sets/{name}/examples"}
"""Operations whose schema-valid bodies may still be refused for what no JSON Schema can say:
bytes that are not an image, a new set without classes. For them, "schema-valid data is accepted"
is not asked; every other check (documented status, body and headers; invalid data refused; no
5xx) is."""


def no_server_error_but_a_documented_retry(ctx, response, case) -> None:
    """schemathesis' not_a_server_error, except a 503 with Retry-After: the documented answer while
    something is being prepared (the open-set negatives of a class set, a calibration) or is full."""
    if response.status_code == 503 and "retry-after" in {name.lower() for name in response.headers}:
        return
    assert response.status_code < 500, f"{case.operation.label}: {response.status_code} {response.text[:300]}"


def _failures(operation, headers: dict[str, str]) -> list[str]:
    failures: list[str] = []
    excluded = [not_a_server_error] + ([positive_data_acceptance] if operation.label in CONTENT_CHECKED else [])

    @hypothesis_settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                         suppress_health_check=list(HealthCheck))
    @given(operation.as_strategy())
    def exercise(case) -> None:
        try:
            case.call_and_validate(headers=headers, excluded_checks=excluded, timeout=60,
                                   additional_checks=[no_server_error_but_a_documented_retry])
        except (Exception, FailureGroup) as exc:  # one FailureGroup per case, naming every check that failed and a curl line
            failures.append(f"{operation.label}: {type(exc).__name__}: {str(exc)[:1500]}")

    exercise()
    return failures


@pytest.mark.parametrize("key", ["no key", "admin key"])
def test_every_operation_answers_as_documented(server: LiveServer, operations: list, key: str) -> None:
    headers = {"Authorization": f"Bearer {ADMIN_KEY}"} if key == "admin key" else {}
    failures = [failure for operation in operations for failure in _failures(operation, headers)]
    assert not failures, "\n\n".join(failures[:10])


def test_405_names_every_method_the_path_takes(server: LiveServer) -> None:
    import httpx

    response = httpx.request("PUT", server.url + "/v1/class-sets")  # GET and POST are two routes
    assert response.status_code == 405
    allowed = {m.strip() for m in response.headers["allow"].split(",")}
    assert {"GET", "POST"} <= allowed, allowed
    assert response.json()["error"]["code"] == "method_not_allowed"
