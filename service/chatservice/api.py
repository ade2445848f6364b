"""Every route of the service, gathered in one router: a new route package is added here."""

from __future__ import annotations

from fastapi import APIRouter

from chatservice.accounting.endpoints import router as accounting_router
from chatservice.auth.endpoints import router as auth_router
from chatservice.catalog.endpoints import router as catalog_router
from chatservice.chat.endpoints import router as chat_router
from chatservice.health.endpoints import router as health_router
from chatservice.keys.endpoints import router as keys_router
from chatservice.relay.endpoints import router as relay_router
from chatservice.teams.endpoints import router as teams_router
from chatservice.users.endpoints import router as users_router

api_router = APIRouter()
for router in (
    chat_router, relay_router, catalog_router, health_router, auth_router, users_router,
    teams_router, keys_router, accounting_router,
):  # fmt: skip
    api_router.include_router(router)
