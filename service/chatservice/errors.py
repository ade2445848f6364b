"""One error hierarchy, rendered everywhere as OpenAI's envelope: {"error": {...}}."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel


class ChatServiceError(Exception):
    """An error a client can act on; its message is safe to show."""

    # Not a ClassVar: an upstream's 4xx is relayed with the upstream's own status.
    status_code: int = 500
    error_type: ClassVar[str] = "server_error"
    default_code: ClassVar[str | None] = None
    # The request's outcome in the documented taxonomy (README, "Outcomes"): metrics label,
    # access-log field.
    outcome: ClassVar[str] = "error"
    # Whether the upstream caused it: counted in `chatservice_upstream_errors_total` too.
    from_upstream: ClassVar[bool] = False

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code if code is not None else self.default_code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return error_body(self.message, self.error_type, param=self.param, code=self.code)

    @property
    def failure_label(self) -> str:
        """The bounded `error` label of `chatservice_upstream_errors_total`."""
        return self.code or self.outcome


class InvalidRequestError(ChatServiceError):
    status_code = 400
    error_type = "invalid_request_error"
    outcome = "invalid_request"


class AuthenticationError(ChatServiceError):
    status_code = 401
    error_type = "invalid_request_error"
    default_code = "invalid_api_key"
    outcome = "unauthenticated"


class PermissionDeniedError(ChatServiceError):
    status_code = 403
    error_type = "invalid_request_error"
    default_code = "permission_denied"
    outcome = "permission_denied"


class NotFoundError(ChatServiceError):
    status_code = 404
    error_type = "invalid_request_error"
    default_code = "not_found"
    outcome = "not_found"


class ModelNotAllowedError(PermissionDeniedError):
    """The key is restricted to other models."""

    default_code = "model_not_allowed"


class ConflictError(ChatServiceError):
    status_code = 409
    error_type = "invalid_request_error"
    default_code = "conflict"
    outcome = "invalid_request"


class RequestTooLargeError(ChatServiceError):
    status_code = 413
    error_type = "invalid_request_error"
    default_code = "request_too_large"
    outcome = "invalid_request"


class RateLimitError(ChatServiceError):
    status_code = 429
    error_type = "rate_limit_error"
    default_code = "rate_limit_exceeded"
    outcome = "rate_limited"


class UpstreamError(ChatServiceError):
    """The inference upstream failed or answered with something unusable."""

    status_code = 502
    error_type = "upstream_error"
    default_code = "bad_gateway"
    from_upstream = True
    outcome = "upstream_error"


class UpstreamUnreachableError(UpstreamError):
    """No connection to the upstream (refused, reset before an answer, DNS)."""

    default_code = "upstream_unreachable"
    outcome = "upstream_unreachable"


class UpstreamInvalidResponseError(UpstreamError):
    """The upstream answered 2xx with something that is not a chat completion."""

    default_code = "upstream_invalid_response"
    outcome = "upstream_invalid_response"


class UpstreamAuthenticationError(UpstreamError):
    """The upstream refused our credentials (401/403): the operator's problem, not the
    client's, so neither its status nor its text (which can name the account) is relayed."""

    default_code = "upstream_authentication_failed"
    outcome = "upstream_auth_failed"


class UpstreamRateLimitError(RateLimitError):
    """The upstream answered 429 until the retries ran out."""

    from_upstream = True
    outcome = "upstream_rate_limited"

    @property
    def failure_label(self) -> str:
        return self.outcome


class ServiceUnavailableError(ChatServiceError):
    status_code = 503
    error_type = "server_error"
    default_code = "service_unavailable"
    outcome = "unavailable"


class TooManyAuthenticationFailuresError(ChatServiceError):
    """Too many wrong keys from one client address: refused before the key is looked up."""

    status_code = 429
    error_type = "rate_limit_error"
    default_code = "too_many_authentication_failures"
    outcome = "rate_limited"


class TooManyLoginFailuresError(TooManyAuthenticationFailuresError):
    """Too many wrong passwords for one email or from one address."""

    default_code = "too_many_login_failures"


class LoginDisabledError(ServiceUnavailableError):
    """No JWT secret is configured, so the service issues no login tokens."""

    default_code = "login_disabled"


class DatabaseUnavailableError(ServiceUnavailableError):
    """The database did not answer in time or at all: the client may retry shortly."""

    default_code = "service_unavailable"


class UpstreamTimeoutError(ChatServiceError):
    status_code = 504
    error_type = "timeout_error"
    default_code = "upstream_timeout"
    from_upstream = True
    outcome = "timeout"


class UpstreamClientError(ChatServiceError):
    """The upstream rejected the request (4xx): its status and message are the client's to see."""

    error_type = "invalid_request_error"
    from_upstream = True
    outcome = "upstream_rejected"

    def __init__(self, status_code: int, message: str, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.status_code = status_code

    @property
    def failure_label(self) -> str:
        return self.outcome  # the code is the upstream's own: unbounded


INTERNAL_ERROR_MESSAGE = (
    "The server had an error while processing your request. "
    "Quote the x-request-id response header when reporting it."
)


def error_body(
    message: str, error_type: str, *, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": error_type, "param": param, "code": code}}


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None
    code: str | None


class ErrorEnvelope(BaseModel):
    """The body of every error response (the OpenAPI document's schema for them)."""

    error: ErrorDetail
