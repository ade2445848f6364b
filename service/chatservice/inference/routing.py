"""The model routing table: public model name → route settings and the backend that serves it."""

from __future__ import annotations

from chatservice.config import ModelRoute, Settings
from chatservice.errors import InvalidRequestError, NotFoundError
from chatservice.inference.base import ChatBackend
from chatservice.inference.echo import EchoBackend
from chatservice.inference.endpoint_pool import EndpointPool, EndpointReport
from chatservice.inference.openai_compatible import OpenAIBackend
from chatservice.kit.http_client import HTTPClient


class RoutingTable:
    def __init__(self, settings: Settings, http: HTTPClient) -> None:
        self._routes = settings.routes
        self._openai = OpenAIBackend(http, settings)
        self._backends: dict[str, ChatBackend] = {
            "echo": EchoBackend(settings.echo_token_delay, settings.echo_max_tokens),
            "openai": self._openai,
        }

    @property
    def routes(self) -> list[ModelRoute]:
        return list(self._routes.values())

    def get(self, model: str) -> ModelRoute:
        route = self._routes.get(model)
        if route is None:
            raise NotFoundError(
                f"The model `{model}` does not exist or you do not have access to it.",
                param="model",
                code="model_not_found",
            )
        return route

    def backend(self, route: ModelRoute) -> ChatBackend:
        return self._backends[route.backend]

    def endpoints(self, route: ModelRoute) -> list[EndpointReport] | None:
        """The state of the route's endpoints in this worker (None: it has none, as echo)."""
        if route.backend != "openai":
            return None
        return self._openai.pool(route).report()

    @property
    def pools(self) -> list[EndpointPool]:
        """The endpoints of every upstream route (where discovery finds theirs)."""
        return self._openai.pools

    def relay(self, route: ModelRoute) -> OpenAIBackend:
        """The backend of the endpoints relayed as they are (embeddings, legacy completions):
        only upstreams have them."""
        if route.backend != "openai":
            raise InvalidRequestError(
                f"The model `{route.name}` does not serve this endpoint.",
                param="model",
                code="model_not_supported",
            )
        return self._openai
