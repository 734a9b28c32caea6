"""The composition root: builds every adapter and service once, at start-up, from the settings."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from backend.agents.chat_agent import ChatAgent
from backend.agents.chat_service import ChatService
from backend.agents.plan_execute_graph import PlanExecuteAgent
from backend.agents.port import Agent, AgentMode
from backend.agents.react_agent import ReActAgent
from backend.agents.router import Router, UserDocuments
from backend.auth.admin_bootstrap import bootstrap_admin
from backend.auth.auth_service import AuthService
from backend.auth.login_throttle import LoginThrottle
from backend.auth.rate_limit import RequestRateLimiter
from backend.auth.secret_key import load_or_create_secret_key
from backend.auth.tokens import TokenCodec
from backend.auth.user_service import UserService
from backend.config import Settings
from backend.conversations.conversation_service import ConversationService
from backend.llm.factory import build_llm_backend
from backend.llm.port import LLMBackend
from backend.metrics import Metrics
from backend.per_user_limits import PerUserLimit
from backend.rag.document_service import DocumentService, DocumentSettings
from backend.rag.embeddings_service import EmbeddingLimits, EmbeddingsService
from backend.rag.factory import RagComponents, build_rag_components
from backend.rag.parsing import DocumentParser, ParseLimits
from backend.rag.ports import Embedder
from backend.storage.api_key_repository import ApiKeyRepository
from backend.storage.conversation_repository import ConversationRepository
from backend.storage.document_repository import DocumentRepository
from backend.storage.json_store import JsonStore
from backend.storage.layout import DataLayout
from backend.storage.private_paths import make_private_data_dir
from backend.storage.user_repository import UserRepository
from backend.tools.catalog import build_tool_registry
from backend.tools.registry import ToolRegistry

logger = logging.getLogger(__name__)


@dataclass
class Services:
    """Everything the routes depend on; exposed to them through `api/deps.py`."""

    settings: Settings
    metrics: Metrics
    llm: LLMBackend
    chat: ChatService
    auth: AuthService
    users: UserService
    conversations: ConversationService
    rate_limiter: RequestRateLimiter
    layout: DataLayout
    tools: ToolRegistry
    rag: RagComponents
    documents: DocumentService
    embeddings: EmbeddingsService

    async def aclose(self) -> None:
        await self.tools.aclose()
        await self.rag.aclose()
        await self.llm.aclose()


async def build_services(settings: Settings, metrics: Metrics) -> Services:
    await asyncio.to_thread(make_private_data_dir, settings.data_dir)
    rag = await build_rag_components(settings)
    documents = build_document_service(settings, rag)
    accounts = await _build_accounts(settings, documents)
    await documents.repair(accounts.account_exists)
    llm = await build_llm_backend(settings, metrics)
    health = await llm.health()
    logger.info("LLM backend: %s, model %s (%s)", llm.name, llm.default_model, "ready" if health.ok else health.detail)
    tools = build_tool_registry(settings, rag.retriever)
    await tools.warm_up()
    for tool in tools.tools():
        status = tools.availability(tool.name)
        logger.info("Tool %s: %s", tool.name, "available" if status.available else f"unavailable ({status.reason})")
    chat = await build_chat_service(settings, metrics, llm, tools, embedder=rag.embedder, documents=documents)
    return Services(
        settings=settings, metrics=metrics, llm=llm, chat=chat,
        auth=accounts.auth, users=accounts.users, conversations=accounts.conversations,
        rate_limiter=accounts.rate_limiter, layout=accounts.layout, tools=tools, rag=rag, documents=documents,
        embeddings=build_embeddings_service(settings, rag),
    )


def build_embeddings_service(settings: Settings, rag: RagComponents) -> EmbeddingsService:
    """POST /v1/embeddings on the same embedder as the documents, within its own bounds."""
    return EmbeddingsService(rag.embedder, EmbeddingLimits(
        max_inputs=settings.embeddings_max_inputs, max_input_chars=settings.embeddings_max_input_chars,
        max_total_chars=settings.embeddings_max_total_chars, per_user=settings.embeddings_per_user,
    ))


def build_document_service(settings: Settings, rag: RagComponents) -> DocumentService:
    """Uploads and documents of every user, on the RAG components' embedder, vector store and keyword index."""
    layout = DataLayout(settings.data_dir)
    parser = DocumentParser(
        ParseLimits(
            timeout_s=settings.parse_timeout_s, memory_mb=settings.parse_memory_mb,
            max_chars=settings.max_document_chars, group_chars=settings.chunk_size,
        ),
        max_workers=settings.parse_max_workers,
    )
    return DocumentService(
        repository=DocumentRepository(JsonStore(settings.data_dir), layout), parser=parser,
        embedder=rag.embedder, vector_store=rag.vector_store, keyword_index=rag.keyword_index, layout=layout,
        settings=DocumentSettings(
            chunk_size=settings.chunk_size, chunk_overlap=settings.chunk_overlap,
            max_documents_per_user=settings.max_documents_per_user,
        ),
        ingestions=PerUserLimit("document uploads", settings.max_ingestions_per_user),
    )


async def build_chat_service(
    settings: Settings, metrics: Metrics, llm: LLMBackend, tools: ToolRegistry, *, embedder: Embedder | None,
    documents: UserDocuments | None = None,
) -> ChatService:
    """The router (its classifier fitted now, on `embedder`: the RAG components' MiniLM) and one agent per mode.

    Without an embedder the router decides from its signals alone (what they do not settle is plain chat).
    """
    router = Router(embedder, settings, llm=llm, documents=documents)
    await router.warm_up()
    agents: dict[AgentMode, Agent] = {
        "chat": ChatAgent(llm, settings),
        "react": ReActAgent(llm, tools, settings),
        "plan_execute": PlanExecuteAgent(llm, tools, settings),
    }
    return ChatService(llm, metrics, router, agents)


@dataclass(frozen=True)
class _Accounts:
    auth: AuthService
    users: UserService
    conversations: ConversationService
    rate_limiter: RequestRateLimiter
    layout: DataLayout
    user_repository: UserRepository

    async def account_exists(self, username: str) -> bool:
        return await self.user_repository.get(username) is not None


async def _build_accounts(settings: Settings, documents: DocumentService) -> _Accounts:
    """Storage, accounts and conversations; creates the secret key and the first admin on first start."""
    layout = DataLayout(settings.data_dir)
    store = JsonStore(settings.data_dir)
    secret_key = await asyncio.to_thread(
        load_or_create_secret_key, settings.secret_key, layout.secret_key_file, store
    )
    for folder in (layout.users_file.parent, layout.conversations_dir, layout.incoming_uploads_dir):
        await asyncio.to_thread(store.sweep_stale_temp_files, folder)
    user_repository = UserRepository(store, layout)
    api_key_repository = ApiKeyRepository(store, layout)
    conversation_repository = ConversationRepository(store, layout)
    await bootstrap_admin(
        user_repository, settings.admin_username, settings.admin_password, layout.initial_admin_password_file
    )
    users = UserService(user_repository, api_key_repository, conversation_repository, layout, documents)
    auth = AuthService(
        user_repository, api_key_repository, users,
        TokenCodec(secret_key, settings.jwt_expiration_hours * 3600),
        login_throttle=LoginThrottle(
            free_failures=settings.login_free_failures, max_delay_s=settings.login_max_delay_s,
            max_per_address=settings.login_max_failures_per_address,
            max_per_username=settings.login_max_failures_per_username,
            window_s=settings.login_failure_window_s, max_entries=settings.login_throttle_max_entries,
        ),
        allow_signup=settings.allow_signup,
    )
    return _Accounts(
        auth=auth, users=users, conversations=ConversationService(
            conversation_repository, user_repository, record_all_requests=settings.record_all_requests
        ),
        rate_limiter=RequestRateLimiter(settings.rate_limit_rpm), layout=layout, user_repository=user_repository,
    )
