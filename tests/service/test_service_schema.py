"""Property-based API testing with schemathesis: the OpenAPI schema is the contract, and it is true.

Schemathesis reads the app's published schema and generates requests for every
operation -- schema-valid ones and, in its negative phase, ones that break the
schema -- and runs its default checks on every answer: no 5xx, a documented status
code, a documented content type, a body that matches the documented schema,
schema-valid data accepted and schema-invalid data rejected.

The app runs under a real uvicorn server on a loopback port (its lifespan under
our control, real HTTP parsing) with the tiny checkpoint; examples are bounded so
the module takes seconds.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, settings
from live_server import app_in_thread

from service import Settings, create_app

schemathesis = pytest.importorskip("schemathesis")
from schemathesis.config import SchemathesisConfig  # noqa: E402 -- after the importorskip that guards it
from schemathesis.specs.openapi.checks import positive_data_acceptance  # noqa: E402

MAX_EXAMPLES = 40
#: The deployment's render-size limit; GET /v1/model publishes it (limits.max_render_size).
MAX_RENDER_SIZE = 512

#: Statuses a schema-valid request may still get: the schema cannot say which bytes are a
#: decodable image (400 corrupt, 415 not an image) nor how large this deployment lets it be
#: (413). An invalid *option* the schema could have described (422) is not among them.
_CONTENT_LEVEL_REJECTIONS = ["400", "413", "415"]

_CONFIG = SchemathesisConfig.from_dict(
    {
        "checks": {
            "positive_data_acceptance": {
                "expected-statuses": ["2xx", "401", "403", "404", "409", "429", *_CONTENT_LEVEL_REJECTIONS],
            },
        },
    }
)

#: The schema as the app publishes it (it does not depend on the settings, so an app that is never
#: started gives it at collection time); the requests go to the running server of ``base_url``.
# model_construct: the defaults, not the developer's SCGAN_* environment (read at collection time).
schema = schemathesis.openapi.from_dict(create_app(Settings.model_construct(device="cpu")).openapi(), config=_CONFIG)


def _within_limit(values: Any) -> Any:
    """``values`` (query or form fields) with a schema-valid render size above the deployment's limit lowered to it.

    Only valid sizes (multiples of 256) are lowered: a schema-violating one of the
    negative phase must still reach the service as generated, and be refused.
    """
    size = values.get("render_size") if isinstance(values, dict) else None
    if isinstance(size, int) and not isinstance(size, bool) and size > MAX_RENDER_SIZE and size % 256 == 0:
        return {**values, "render_size": MAX_RENDER_SIZE}
    return values


@schema.hook
def map_query(context: Any, query: dict[str, Any] | None) -> dict[str, Any] | None:
    """Keep generated render sizes within this deployment's limit, which the static schema cannot carry.

    Larger multiples of 256 are refused with 422 as documented.
    """
    return _within_limit(query)


@schema.hook
def map_body(context: Any, body: Any) -> Any:
    """The same for the multipart option fields."""
    return _within_limit(body)


@pytest.fixture(scope="module")
def base_url(tiny_checkpoint: Path) -> Iterator[str]:
    """A real uvicorn server on a loopback port, ready, stopped (lifespan drained) after the module."""
    app = create_app(
        Settings(
            checkpoint=tiny_checkpoint,
            device="cpu",
            precision="fp32",
            max_batch_size=2,
            cpu_threads=2,
            torch_threads=1,
            max_upload_bytes=256 * 1024,
            max_pixels=1_000_000,
            max_render_size=MAX_RENDER_SIZE,
            request_timeout_s=20.0,
            shutdown_timeout_s=5.0,
        )
    )
    with app_in_thread(app) as url:
        assert httpx.get(f"{url}/v1/model").json()["limits"]["max_render_size"] == MAX_RENDER_SIZE
        yield url


def test_the_published_schema_is_the_one_tested(base_url: str) -> None:
    assert httpx.get(f"{base_url}/openapi.json").json() == schema.raw_schema


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
)
def test_api_conforms_to_its_schema(case: Any, base_url: str) -> None:
    """No 5xx for any generated request, and every answer is one the schema documents.

    Colour hints are a JSON string whose usability depends on the checkpoint (this one takes none: any hint
    is a 422) and on the image (a point outside it is a 422), which no static schema can say; a request that
    carries them is not held to "schema-valid data is accepted" (tests/service/test_service_hints.py covers
    hints), every other check still applies.
    """
    hinted = isinstance(case.body, dict) and "hints" in case.body
    excluded = [positive_data_acceptance] if hinted else None
    case.call_and_validate(base_url=base_url, timeout=30, excluded_checks=excluded)
