"""What the log lines and metrics of one request share: its id, and its outcome once known."""

from __future__ import annotations

from contextvars import ContextVar, Token
from dataclasses import dataclass

# Labels of a chat completion refused before its model or body was known (bounded).
UNKNOWN = "-"


@dataclass(slots=True)
class RequestRecord:
    request_id: str
    outcome: str | None = None
    # Set by the chat route once the body names a configured model.
    model: str | None = None
    stream: bool | None = None
    # The key's id (the bootstrap admin key has none: its name), never the key itself.
    key_id: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


# Tasks a request starts (a streaming body, a disconnect watcher) copy the context, so they
# see and fill the same record.
_CURRENT: ContextVar[RequestRecord | None] = ContextVar("chatservice_request", default=None)


def current_record() -> RequestRecord | None:
    return _CURRENT.get()


def set_outcome(outcome: str) -> None:
    record = _CURRENT.get()
    if record is not None:
        record.outcome = outcome


def bind(record: RequestRecord) -> Token[RequestRecord | None]:
    return _CURRENT.set(record)


def unbind(token: Token[RequestRecord | None]) -> None:
    _CURRENT.reset(token)
