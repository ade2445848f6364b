"""OpenAI's `model` and `list` objects."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class EndpointCount(BaseModel):
    total: int
    healthy: int = Field(description="Neither ejected nor resting after a 429, in this worker.")


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str
    # An extension of OpenAI's object: clients ignore fields they do not know.
    endpoints: EndpointCount | None = Field(
        default=None, description="The model's upstream endpoints (absent for echo)."
    )


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]
