"""`GET /models` and `GET /models/{id}`."""

from __future__ import annotations

from fastapi import APIRouter

from chatservice.catalog.schemas import EndpointCount, ModelCard, ModelList
from chatservice.config import API_PREFIX, ModelRoute
from chatservice.errors import NotFoundError
from chatservice.kit.api_docs import AUTH_ERRORS, AUTHENTICATED, error_responses
from chatservice.kit.deps import CurrentKey, RuntimeDep
from chatservice.runtime import Runtime

router = APIRouter(prefix=f"{API_PREFIX}/models", tags=["models"])


def _card(route: ModelRoute, runtime: Runtime) -> ModelCard:
    endpoints = runtime.routing.endpoints(route)
    count = (
        None
        if endpoints is None
        else EndpointCount(
            total=len(endpoints), healthy=sum(e.state == "healthy" for e in endpoints)
        )
    )
    return ModelCard(
        id=route.name, created=runtime.created, owned_by=route.owned_by, endpoints=count
    )


@router.get(
    "",
    response_model=ModelList,
    responses=error_responses(*AUTH_ERRORS),
    openapi_extra=AUTHENTICATED,
    summary="List the models this service routes",
)
async def list_models(runtime: RuntimeDep, key: CurrentKey) -> ModelList:
    return ModelList(
        data=[_card(route, runtime) for route in runtime.routing.routes if key.may_use(route.name)]
    )


@router.get(
    "/{model_id:path}",
    response_model=ModelCard,
    responses=error_responses(*AUTH_ERRORS, 404),
    openapi_extra=AUTHENTICATED,
    summary="Describe one model",
)
async def get_model(model_id: str, runtime: RuntimeDep, key: CurrentKey) -> ModelCard:
    if not key.may_use(model_id):
        # Listed nowhere for this key, so unknown to it.
        raise NotFoundError(
            f"The model `{model_id}` does not exist or you do not have access to it.",
            param="model",
            code="model_not_found",
        )
    return _card(runtime.routing.get(model_id), runtime)
