"""The bodies of the relayed endpoints: what the gateway reads (the model, streaming); every
other field goes upstream as the client sent it."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class RelayedRequest(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)

    model: str = Field(min_length=1)

    def upstream_payload(self) -> dict[str, Any]:
        return self.model_dump(exclude_unset=True, exclude_none=True)


class EmbeddingRequest(RelayedRequest):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"model": "embedder", "input": "hello"}]}
    )

    input: str | list[Any]


class CompletionRequest(RelayedRequest):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"model": "base", "prompt": "Once", "max_tokens": 8}]}
    )

    prompt: str | list[Any]
    stream: bool = False
