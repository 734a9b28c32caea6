"""`web_search`: Tavily when a key is set, else the local-first SearXNG, else unavailable with the reason.

The backend is picked once, from settings, in `WebSearchTool.__init__`; both backends return the same
`Source`s, which become numbered text for the model and the call's citations as they are.
"""

from __future__ import annotations

import asyncio
import importlib.util
import re
from typing import Annotated, Any, Protocol

from pydantic import BaseModel, Field, StringConstraints, ValidationError

from backend.config import Settings
from backend.tools.base import Availability, Source, ToolResult
from backend.tools.internet.http_json import fetch_json
from backend.tools.internet.service_call import Budget, InternetTool, ServiceUnavailable, describe_failure

DESCRIPTION = (
    "Search the web for current or factual information you do not know. Returns numbered results, "
    "each with a title, URL and snippet; cite the URLs you use."
)
SNIPPET_CHARS = 500
"""Enough for the gist of a page; ten of them stay well inside a small model's context."""

NOT_CONFIGURED = "set TAVILY_API_KEY or SEARXNG_URL"


class WebSearchArgs(BaseModel):
    query: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=400)] = Field(
        description="What to look up on the web, in plain words, e.g. 'current Python release'."
    )
    max_results: int = Field(default=5, ge=1, le=10, description="How many results to return, 1 to 10.")


class SearchBackend(Protocol):
    """One web search service; raises `ServiceUnavailable` with the reason when it cannot answer."""

    name: str

    async def search(self, query: str, max_results: int, budget: Budget) -> list[Source]: ...


class _WireHit(BaseModel):
    """One result as both services send it (`content` is the snippet in each); other fields are ignored."""

    url: str = Field(min_length=1)
    title: str | None = None
    content: str | None = None


def _hits_from(payload: Any, service: str, max_results: int) -> list[Source]:
    """Keep the well-formed results; an answer without a `results` list is the service misbehaving."""
    results = payload.get("results") if isinstance(payload, dict) else None
    if not isinstance(results, list):
        raise ServiceUnavailable(f"{service} sent an answer without a list of results")
    hits: list[Source] = []
    for item in results:
        try:
            wire = _WireHit.model_validate(item)
        except ValidationError:
            continue  # one odd entry (an infobox, an image) must not cost the others
        hits.append(Source(title=_clean(wire.title) or wire.url, url=wire.url, snippet=_clean(wire.content)))
        if len(hits) == max_results:
            break
    return hits


def _clean(text: str | None) -> str:
    collapsed = re.sub(r"\s+", " ", text or "").strip()
    return collapsed if len(collapsed) <= SNIPPET_CHARS else collapsed[: SNIPPET_CHARS - 1].rstrip() + "…"


class TavilySearch:
    """Tavily's search API through the official `tavily-python` async client."""

    name = "Tavily"

    def __init__(self, api_key: str, base_url: str) -> None:
        self._api_key = api_key
        self._base_url = base_url

    async def search(self, query: str, max_results: int, budget: Budget) -> list[Source]:
        # Imported here: the package pulls in tiktoken and requests, needed only when a key is set.
        from tavily import AsyncTavilyClient  # type: ignore[import-untyped]

        try:
            async with asyncio.timeout_at(budget.deadline):
                # A client per call: an httpx client is tied to the event loop it was first used on.
                async with AsyncTavilyClient(api_key=self._api_key, api_base_url=self._base_url) as client:
                    payload = await client.search(
                        query, max_results=max_results, search_depth="basic", timeout=budget.seconds
                    )
        except Exception as error:  # the client raises its own classes, httpx's, and ValueError for bad JSON
            raise ServiceUnavailable(_describe_tavily_failure(error, budget.seconds, self._base_url)) from error
        return _hits_from(payload, self.name, max_results)


def _describe_tavily_failure(error: Exception, budget_s: float, base_url: str) -> str:
    """Tavily's own error classes, which carry its explanation; transport failures are worded as for any service."""
    from tavily import errors

    detail = str(error).strip()
    suffix = f": {detail[:200]}" if detail else ""
    if isinstance(error, errors.InvalidAPIKeyError):
        return f"Tavily rejected the API key (HTTP 401){suffix}"
    if isinstance(error, errors.UsageLimitExceededError):
        return f"Tavily usage limit reached (HTTP 429){suffix}"
    if isinstance(error, errors.ForbiddenError):
        return f"Tavily refused the request (plan or permission){suffix}"
    if isinstance(error, errors.BadRequestError):
        return f"Tavily rejected the request as invalid (HTTP 400){suffix}"
    if isinstance(error, errors.TimeoutError):  # the client's own class for a timeout like any other
        return describe_failure("Tavily", TimeoutError(), budget_s, base_url)
    if isinstance(error, (AttributeError, KeyError, TypeError)):  # the client indexing a non-object answer
        return "Tavily sent an answer in an unexpected shape"
    return describe_failure("Tavily", error, budget_s, base_url)


class SearxngSearch:
    """A SearXNG instance's JSON API (`GET /search?q=…&format=json`; `json` must be in its `search.formats`)."""

    name = "SearXNG"

    def __init__(self, base_url: str) -> None:
        trimmed = base_url.rstrip("/")
        self._endpoint = trimmed if trimmed.endswith("/search") else f"{trimmed}/search"

    async def search(self, query: str, max_results: int, budget: Budget) -> list[Source]:
        try:
            payload = await fetch_json(self._endpoint, {"q": query, "format": "json"}, service=self.name, budget=budget)
        except ServiceUnavailable as error:
            if error.status == 403:
                raise ServiceUnavailable(f"{error} (is `json` listed in the instance's search.formats?)") from error
            raise
        return _hits_from(payload, self.name, max_results)


def choose_backend(settings: Settings) -> SearchBackend | str:
    """Pick the backend, in this one place: Tavily with a key, else SearXNG, else the reason there is none."""
    if settings.tavily_api_key:
        if importlib.util.find_spec("tavily") is None:
            return "TAVILY_API_KEY is set but the tavily-python package is not installed"
        return TavilySearch(settings.tavily_api_key, settings.tavily_base_url)
    if settings.searxng_url:
        return SearxngSearch(settings.searxng_url)
    return NOT_CONFIGURED


class WebSearchTool(InternetTool[WebSearchArgs]):
    def __init__(self, settings: Settings) -> None:
        super().__init__(settings, "web_search", DESCRIPTION, WebSearchArgs)
        self._backend = choose_backend(settings)

    def availability(self) -> Availability:
        """Report configuration only: probing the service here would put a network call on every tool listing."""
        if isinstance(self._backend, str):
            return Availability(False, self._backend)
        return super().availability()

    async def ask(self, request: WebSearchArgs, budget: Budget) -> ToolResult:
        if isinstance(self._backend, str):
            return ToolResult.failure(f"unavailable: {self._backend}")
        hits = await self._backend.search(request.query, request.max_results, budget)
        return _result(request.query, self._backend.name, hits)


def _result(query: str, provider: str, hits: list[Source]) -> ToolResult:
    results = [{"title": hit.title, "url": hit.url, "snippet": hit.snippet} for hit in hits]
    data = {"provider": provider, "query": query, "results": results}
    if not hits:
        return ToolResult(ok=True, text=f'No web results for "{query}" ({provider}).', data=data)
    lines = [f'Web results for "{query}" ({provider}):']
    for number, hit in enumerate(hits, start=1):
        lines.append(f"[{number}] {hit.title}\n    {hit.url}")
        if hit.snippet:
            lines.append(f"    {hit.snippet}")
    return ToolResult(ok=True, text="\n".join(lines), data=data, sources=hits)
