"""When the rate-limit store cannot be reached, requests get what the setting says (let through,
or 503), with a metric and one log line; readiness does not depend on it."""

from __future__ import annotations

import logging

import httpx
import pytest

from chatservice.accounting import service as accounting_service
from chatservice.main import create_app
from chatservice.observability import metrics
from tests.ports import free_port
from tests.service.accounting_db import NO_LIMITS, new_key
from tests.service.harness import AUTH, CHAT, make_settings, serve

ECHO = {"model": "echo", "messages": [{"role": "user", "content": "hi"}]}


def _store_errors(mode: str) -> float:
    return float(metrics.child(metrics.RATE_LIMIT_STORE_ERRORS, mode)._value.get())


@pytest.mark.parametrize(("mode", "status"), [("open", 200), ("closed", 503)])
async def test_an_unreachable_redis_fails_as_configured_and_readiness_stays_up(
    database: str, mode: str, status: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    accounting_service.store_log._seen.clear()
    key, key_id = await new_key(database)
    settings = make_settings(
        database,
        redis_url=f"redis://127.0.0.1:{free_port()}/0",  # nothing listens there
        rate_limit_failure_mode=mode,
    )
    before = _store_errors(mode)
    async with serve(create_app(settings)) as http:
        limits = await http.put(
            f"/api/v1/limits/key/{key_id}", json={"requests_per_minute": 1}, headers=AUTH
        )
        assert limits.status_code == 200
        member = {"Authorization": f"Bearer {key}"}
        responses: list[httpx.Response] = [
            await http.post(CHAT, json=ECHO, headers=member) for _ in range(3)
        ]
        assert [r.status_code for r in responses] == [status] * 3
        if mode == "closed":
            error = responses[0].json()["error"]
            assert error["code"] == "rate_limits_unavailable"
            assert int(responses[0].headers["retry-after"]) >= 1
        assert (await http.get("/api/v1/health/ready")).status_code == 200
    assert _store_errors(mode) - before == 3
    lines = [r for r in caplog.records if r.name == "chatservice.ratelimit"]
    assert len(lines) == 1
    assert lines[0].getMessage() == f"rate limit store unreachable: failing {mode}"
    assert "127.0.0.1" not in str(lines[0].__dict__)  # the URL can carry a password


async def test_limits_are_read_and_set_by_admins_on_one_path(database: str) -> None:
    key, key_id = await new_key(database)
    path = f"/api/v1/limits/user/{key_id}"
    async with serve(create_app(make_settings(database))) as http:
        unset = await http.get(path, headers=AUTH)
        assert unset.json() == NO_LIMITS
        assert (await http.put(path, json={"max_concurrent": 3}, headers=AUTH)).status_code == 200
        assert (await http.get(path, headers=AUTH)).json()["max_concurrent"] == 3
        assert (await http.put(path, json={}, headers=AUTH)).json()["max_concurrent"] is None
        wrong = await http.put(path, json={"max_concurrent": 0}, headers=AUTH)
        assert wrong.status_code == 400
        assert wrong.json()["error"]["param"] == "max_concurrent"
        not_allowed = await http.delete(path, headers=AUTH)
        assert not_allowed.status_code == 405
        assert not_allowed.headers["allow"] == "GET, PUT"
        member = await http.get(path, headers={"Authorization": f"Bearer {key}"})
        assert member.status_code == 403
