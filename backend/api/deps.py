"""Typed dependencies: every route declares what it needs as one of these `Annotated` aliases."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer

from backend.agents.chat_service import ChatService
from backend.auth.auth_service import AuthService
from backend.auth.models import User
from backend.auth.user_service import UserService
from backend.bootstrap import Services
from backend.config import Settings
from backend.conversations.conversation_service import ConversationService
from backend.llm.port import LLMBackend
from backend.metrics import Metrics
from backend.rag.document_service import DocumentService
from backend.rag.embeddings_service import EmbeddingsService
from backend.rag.ports import Embedder
from backend.service_errors import Forbidden, TooManyRequests
from backend.tools.registry import ToolRegistry


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


def get_settings(services: ServicesDep) -> Settings:
    return services.settings


def get_llm(services: ServicesDep) -> LLMBackend:
    return services.llm


def get_chat_service(services: ServicesDep) -> ChatService:
    return services.chat


def get_metrics(services: ServicesDep) -> Metrics:
    return services.metrics


SettingsDep = Annotated[Settings, Depends(get_settings)]
LLMDep = Annotated[LLMBackend, Depends(get_llm)]
ChatServiceDep = Annotated[ChatService, Depends(get_chat_service)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]


def get_auth_service(services: ServicesDep) -> AuthService:
    return services.auth


def get_user_service(services: ServicesDep) -> UserService:
    return services.users


def get_conversation_service(services: ServicesDep) -> ConversationService:
    return services.conversations


AuthServiceDep = Annotated[AuthService, Depends(get_auth_service)]
UserServiceDep = Annotated[UserService, Depends(get_user_service)]
ConversationServiceDep = Annotated[ConversationService, Depends(get_conversation_service)]


def get_tool_registry(services: ServicesDep) -> ToolRegistry:
    return services.tools


ToolRegistryDep = Annotated[ToolRegistry, Depends(get_tool_registry)]


def get_embedder(services: ServicesDep) -> Embedder:
    return services.rag.embedder


def get_embeddings_service(services: ServicesDep) -> EmbeddingsService:
    return services.embeddings


EmbedderDep = Annotated[Embedder, Depends(get_embedder)]
EmbeddingsServiceDep = Annotated[EmbeddingsService, Depends(get_embeddings_service)]


def get_document_service(services: ServicesDep) -> DocumentService:
    return services.documents


DocumentServiceDep = Annotated[DocumentService, Depends(get_document_service)]

# Reads `Authorization: Bearer <credential>`; also gives the OpenAPI docs their sign-in form.
bearer_credential = OAuth2PasswordBearer(
    tokenUrl="/api/auth/login", auto_error=False,
    description="A sign-in token from POST /api/auth/login, or an API key (`sk-...`).",
)


async def get_current_user(
    auth: AuthServiceDep, credential: Annotated[str | None, Depends(bearer_credential)]
) -> User:
    """The signed-in user, or 401 with `WWW-Authenticate: Bearer` (missing, bad, expired or revoked)."""
    return await auth.authenticate(credential)


CurrentUser = Annotated[User, Depends(get_current_user)]


async def get_admin_user(user: CurrentUser) -> User:
    if not user.is_admin:
        raise Forbidden("This needs an admin account.", code="admin_required")
    return user


AdminUser = Annotated[User, Depends(get_admin_user)]


async def get_rate_limited_user(user: CurrentUser, services: ServicesDep) -> User:
    """The signed-in user, after taking one request from their per-minute budget (429 when spent)."""
    wait = services.rate_limiter.acquire(user.username)
    if wait > 0:
        raise TooManyRequests(
            f"Rate limit of {services.rate_limiter.per_minute} requests per minute reached; retry later.", wait
        )
    return user


RateLimitedUser = Annotated[User, Depends(get_rate_limited_user)]
