"""The service against its own OpenAPI document, by schemathesis: generated requests (valid and
invalid) to a real gunicorn, every check on, with a key and without one."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import CHECKS

from chatservice.config import Settings
from chatservice.db.migrate import upgrade
from chatservice.main import create_app
from tests.service.gunicorn_server import Gunicorn, gunicorn_starter

# Bounded and deterministic: the same examples on every run.
EXAMPLES = settings(
    max_examples=40,
    derandomize=True,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gunicorn]:
    directory = tmp_path_factory.mktemp("contract")
    url = f"sqlite+aiosqlite:///{directory / 'chatservice.db'}"
    upgrade(url)
    with gunicorn_starter(url, directory) as start:
        # Schemathesis sends wrong keys by design; it is not the client being limited here.
        yield start(
            CHATSERVICE_AUTH_FAILURES_PER_MINUTE="100000",
            CHATSERVICE_LOGIN_FAILURES_PER_MINUTE="100000",
            # With logins on, so that the token route answers what its schema promises.
            CHATSERVICE_JWT_SECRET=secrets.token_urlsafe(32),
        )


# Every check schemathesis has; its registry mixes check functions and check classes.
ALL_CHECKS: list[Any] = CHECKS.get_all()

# The document the app serves at /api/v1/openapi.json, built in-process at collection time.
schema = schemathesis.openapi.from_dict(create_app(Settings()).openapi())


@schema.parametrize()
@EXAMPLES
def test_with_a_key(case: schemathesis.Case[Any], server: Gunicorn) -> None:
    case.call_and_validate(
        base_url=server.url,
        headers={"Authorization": f"Bearer {server.key}"},
        checks=ALL_CHECKS,
        timeout=30,
    )


@schema.parametrize()
@EXAMPLES
def test_without_a_key(case: schemathesis.Case[Any], server: Gunicorn) -> None:
    case.call_and_validate(base_url=server.url, checks=ALL_CHECKS, timeout=30)
