"""The direct routes (answered without FastAPI's request handling) refuse what they would
silently skip: a dependency or a parameter FastAPI would have solved."""

from __future__ import annotations

import pytest
from fastapi import APIRouter, Depends, FastAPI, Request
from starlette.responses import Response

from chatservice.kit.direct_routes import direct_table


async def plain(request: Request) -> Response:
    return Response()


async def needs_key(request: Request, key: str = Depends(lambda: "k")) -> Response:
    return Response()


async def takes_query(request: Request, page: int = 0) -> Response:
    return Response()


def test_a_route_taking_only_the_request_is_found_under_its_included_path() -> None:
    app = FastAPI()
    router = APIRouter(prefix="/api/v1")
    router.add_api_route("/things", plain, methods=["POST"])
    app.include_router(router)
    ((method, path),) = direct_table(app.router.routes, [plain]).keys()
    assert (method, path) == ("POST", "/api/v1/things")


@pytest.mark.parametrize("endpoint", [needs_key, takes_query])
def test_a_route_with_more_than_the_request_is_refused(endpoint: object) -> None:
    app = FastAPI()
    app.add_api_route("/things", endpoint, methods=["POST"])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="takes more than the request"):
        direct_table(app.router.routes, [endpoint])  # type: ignore[list-item]


def test_a_dependency_of_the_including_router_is_refused_too() -> None:
    app = FastAPI()
    router = APIRouter()
    router.add_api_route("/things", plain, methods=["POST"])
    app.include_router(router, dependencies=[Depends(lambda: None)])
    with pytest.raises(ValueError, match="takes more than the request"):
        direct_table(app.router.routes, [plain])


def test_an_endpoint_no_route_serves_is_refused() -> None:
    with pytest.raises(ValueError, match="no route serves"):
        direct_table(FastAPI().router.routes, [plain])
