"""JSON request bodies parsed by pydantic-core straight from the bytes, for the hot routes.

FastAPI's own body parameter decodes with `json.loads` and validates the resulting dict, which
costs the chat route about twice as much. These helpers keep what the body parameter gave:
the same `RequestValidationError` (so the same 400 envelope) and the same OpenAPI document.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.models import OpenAPI
from pydantic import BaseModel, ValidationError
from pydantic.json_schema import models_json_schema
from starlette.exceptions import HTTPException

from chatservice.errors import ChatServiceError

ModelT = TypeVar("ModelT", bound=BaseModel)

_REF_TEMPLATE = "#/components/schemas/{model}"


async def parse_body(request: Request, model: type[ModelT]) -> ModelT:
    """Validate the body as `model`, failing as FastAPI does for a `model` body parameter."""
    try:
        raw = await request.body()
    except ChatServiceError:  # the body is too large, ...
        raise
    except Exception as exc:  # the client went away mid-body, ...
        raise HTTPException(400, "There was an error parsing the body") from exc
    if not raw or not _declares_json(request.headers.get("content-type")):
        # FastAPI does not parse these and reports the body as missing or not an object.
        raise RequestValidationError(
            [{"type": "missing", "loc": ("body",), "msg": "Field required", "input": None}]
        )
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        raise RequestValidationError(
            [{**error, "loc": ("body", *error["loc"])} for error in errors], body=raw
        ) from None


def _declares_json(content_type: str | None) -> bool:
    media_type = (content_type or "").partition(";")[0].strip().lower()
    main_type, _, subtype = media_type.partition("/")
    return main_type == "application" and (subtype == "json" or subtype.endswith("+json"))


def body_openapi(model: type[BaseModel]) -> dict[str, Any]:
    """`openapi_extra` of a route that calls `parse_body(request, model)`; `document_bodies`
    adds the schema it refers to."""
    schema = {"$ref": _REF_TEMPLATE.format(model=model.__name__)}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def document_bodies(
    app: FastAPI, models: Sequence[type[BaseModel]]
) -> Callable[[], dict[str, Any]]:
    """An `app.openapi` that also holds the component schemas of `models` (and the models they
    use), as FastAPI writes them for body parameters."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = generate()
            _, definitions = models_json_schema(
                [(model, "validation") for model in models], ref_template=_REF_TEMPLATE
            )
            components = document.setdefault("components", {})
            schemas = {**components.get("schemas", {}), **definitions["$defs"]}
            components["schemas"] = dict(sorted(schemas.items()))
            # The same normalisation FastAPI applies to the document it generates.
            app.openapi_schema = jsonable_encoder(
                OpenAPI(**document), by_alias=True, exclude_none=True
            )
        return app.openapi_schema

    return openapi
