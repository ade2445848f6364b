"""Settings: environment parsing and refusing placeholder secrets outside development."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys

import pytest
from pydantic import ValidationError

from chatservice.config import DEVELOPMENT_ADMIN_KEY, Settings

REAL_KEY = "sk-" + secrets.token_urlsafe(32)
PG = "postgresql+asyncpg://chat@db/chat"
UPSTREAM = [{"name": "llama", "backend": "openai", "base_url": "http://vllm:8000/v1"}]


def production(**values: object) -> Settings:
    return Settings.model_validate(
        {
            "environment": "production",
            "database_url": PG,
            "admin_api_key": REAL_KEY,
            "models": UPSTREAM,
            **values,
        }
    )


def test_production_refuses_the_development_key() -> None:
    with pytest.raises(ValidationError, match="placeholder"):
        production(admin_api_key=DEVELOPMENT_ADMIN_KEY)
    with pytest.raises(ValidationError, match="placeholder"):
        production(admin_api_key="sk-short")
    production()


@pytest.mark.parametrize(
    "weak", ["a" * 32, "sk-" + "a" * 40, "password" * 4, "0123456789abcdef" * 3, "ab" * 30]
)
def test_production_refuses_keys_that_are_long_but_not_random(weak: str) -> None:
    with pytest.raises(ValidationError, match="not random enough"):
        production(admin_api_key=weak)


def test_the_jwt_secret_is_optional_and_refused_when_weak_in_production() -> None:
    assert production().jwt_secret is None  # logins off: POST /auth/token answers 503
    with pytest.raises(ValidationError, match="at least 32"):
        Settings.model_validate({"jwt_secret": "short"})
    for weak in ("changeme" * 4, REAL_KEY):  # a placeholder, or the admin key reused
        with pytest.raises(ValidationError, match="CHATSERVICE_JWT_SECRET"):
            production(jwt_secret=weak)
    production(jwt_secret=secrets.token_urlsafe(32))


def test_production_refuses_sqlite_wildcard_and_null_cors() -> None:
    with pytest.raises(ValidationError, match="PostgreSQL"):
        production(database_url="sqlite+aiosqlite:///x.db")
    with pytest.raises(ValidationError, match="CORS"):
        production(cors_origins=["*"])
    with pytest.raises(ValidationError, match="'null'"):
        production(cors_origins=["https://app.example", "null"])
    production(cors_origins=["https://app.example"])


def test_production_refuses_the_echo_backend_unless_allowed() -> None:
    with pytest.raises(ValidationError, match="echo backend"):
        production(models=[{"name": "echo", "backend": "echo"}])
    with pytest.raises(ValidationError, match="echo backend"):  # the default routing table
        Settings(environment="production", database_url=PG, admin_api_key=REAL_KEY)
    production(models=[{"name": "echo", "backend": "echo"}], allow_echo_in_production=True)


def test_models_and_origins_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "CHATSERVICE_MODELS",
        '[{"name": "llama", "backend": "openai", "base_url": "http://vllm:8000/v1",'
        ' "upstream_model": "meta/llama", "api_key_env": "LLAMA_KEY"}]',
    )
    monkeypatch.setenv("LLAMA_KEY", "sk-from-secret")
    monkeypatch.setenv("CHATSERVICE_CORS_ORIGINS", "https://a.example, https://b.example")
    settings = Settings()
    assert settings.routes["llama"].upstream_api_key() == "sk-from-secret"
    assert settings.cors_origins == ("https://a.example", "https://b.example")


def test_openai_backend_needs_a_base_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHATSERVICE_MODELS", '[{"name": "x", "backend": "openai"}]')
    with pytest.raises(ValidationError, match="base_url"):
        Settings()


@pytest.mark.parametrize(
    ("route", "complaint"),
    [
        (
            {"endpoints": [{"base_url": "http://a/v1"}], "discovery": "dns"},
            "discovery applies to base_url",
        ),
        ({"base_url": "http://10.0.0.5:8000/v1", "discovery": "dns"}, "host name"),
        ({"endpoints": [{"base_url": "http://[fd00::5]/v1", "discovery": "dns"}]}, "host name"),
        ({"base_url": "http://vllm.models.svc:8000/v1", "discovery": "srv"}, "discovery"),
    ],
)
def test_discovery_needs_a_name_to_resolve(route: dict[str, object], complaint: str) -> None:
    with pytest.raises(ValidationError, match=complaint):
        Settings(models=[{"name": "x", "backend": "openai", **route}])


def test_cli_refuses_to_start_without_printing_the_secret() -> None:
    env = {
        **os.environ,
        "CHATSERVICE_ENVIRONMENT": "production",
        "CHATSERVICE_DATABASE_URL": PG,
        "CHATSERVICE_ADMIN_API_KEY": "sk-tooshort-but-secret",
    }
    result = subprocess.run(
        [sys.executable, "-m", "chatservice.cli", "run"], env=env, capture_output=True, text=True,
        check=False, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert "CHATSERVICE_ADMIN_API_KEY is the development placeholder" in result.stderr
    assert "sk-tooshort-but-secret" not in result.stderr + result.stdout
    assert DEVELOPMENT_ADMIN_KEY not in result.stderr


def test_a_refused_configuration_does_not_echo_its_secrets() -> None:
    with pytest.raises(ValidationError) as refused:
        Settings(environment="production", database_url=PG, admin_api_key="sk-secret-but-short")
    assert "sk-secret-but-short" not in str(refused.value)


def test_development_listens_on_loopback_only() -> None:
    # What `make run` binds: the development key is public, so no other machine may reach it.
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHATSERVICE_")}
    result = subprocess.run(
        [sys.executable, "-c", "from chatservice import gunicorn_conf; print(gunicorn_conf.bind)"],
        env=env, capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    assert result.stdout.strip() == "127.0.0.1:8000"


@pytest.mark.parametrize(
    ("value", "captured"),
    [("true", True), ("false", False), ("SPAN_ONLY", True), ("span_and_event", True),
     ("EVENT_ONLY", True), ("NO_CONTENT", False)],
)  # fmt: skip
def test_message_content_capture_reads_the_standard_variable_in_either_form(
    value: str, captured: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", value)
    assert Settings().capture_message_content is captured


def test_message_content_capture_refuses_a_value_it_does_not_know(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "sometimes")
    with pytest.raises(ValidationError, match="OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"):
        Settings()
