"""ChatService specs and bodies shared by the operator tests."""

from __future__ import annotations

import copy
from typing import Any

from chatservice_operator.identity import job_name
from chatservice_operator.resource import ChatService, ChatServiceSpec

SPEC: dict[str, Any] = {
    "image": "reg.example/chat:1.0",
    "database": {"urlSecretRef": {"name": "db", "key": "url"}},
    "auth": {"adminKeySecretRef": {"name": "adm", "key": "key"}},
    "inference": {
        "backends": [
            {
                "model": "llama",
                "baseURL": "http://vllm:8000/v1",
                "upstreamModel": "meta/llama",
                "maxTokensField": "max_completion_tokens",
                "inputPricePerMillionTokens": 0.5,
                "outputPricePerMillionTokens": 1.5,
                "apiKeySecretRef": {"name": "vllm", "key": "token"},
            },
            {"model": "echo", "backend": "echo"},
        ]
    },
}


def spec(**changes: Any) -> dict[str, Any]:
    return {**copy.deepcopy(SPEC), **changes}


def chatservice(generation: int = 1, **changes: Any) -> ChatService:
    return ChatService(
        name="chat",
        namespace="ns",
        uid="uid-1",
        generation=generation,
        spec=ChatServiceSpec.model_validate(spec(**changes)),
    )


OLD = "reg.example/chat:1.0"
NEW = "reg.example/chat:1.1"


def body(**changes: Any) -> dict[str, Any]:
    """A ChatService resource as a user would create it."""
    return {
        "apiVersion": "chatservice.dev/v1alpha1",
        "kind": "ChatService",
        "metadata": {"name": "chat", "namespace": "ns"},
        "spec": spec(**changes),
    }


def job_for(image: str, generation: int = 1) -> str:
    return job_name(chatservice(generation, image=image))
