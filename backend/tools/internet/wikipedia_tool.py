"""`wikipedia`: search Wikipedia, list the meanings of an ambiguous title, or summarise an article.

Built on the `wikipedia` package (1.4.0), which is synchronous and keeps its whole configuration in
module globals of `wikipedia.wikipedia`: the endpoint (`API_URL`), the HTTP function (`requests.get`,
called with no timeout and no status check) and unbounded result caches keyed without the endpoint.
It has no per-call way to pass any of them, so each lookup runs in a worker thread and, for its whole
duration and under one process-wide lock:
  * points `API_URL` at `WIKIPEDIA_API_URL` from settings,
  * swaps the module's `requests` for `_LoopHttp`, which makes each request with `fetch_json` on the
    event loop (the call's deadline, a status check, a size cap: what every internet tool gets),
  * pins BeautifulSoup (used on disambiguation pages) to the standard library's parser,
then restores all three and clears the caches. So two tools with different endpoints, or two concurrent
calls, never see each other's state, answers are never stale, and a silent server cannot hold the lock
past the call's deadline. The price is that Wikipedia lookups in one process run one at a time.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Annotated, Any

from pydantic import BaseModel, Field, StringConstraints

from backend.config import Settings
from backend.tools.base import Source, ToolResult
from backend.tools.internet.http_json import fetch_json
from backend.tools.internet.service_call import Budget, InternetTool, ServiceUnavailable, describe_failure

DESCRIPTION = (
    "Look a topic up on Wikipedia. Returns a short summary of the best-matching article with its URL; "
    "if the name is ambiguous, returns the list of meanings so you can call again with the exact title."
)
SERVICE = "Wikipedia"
SEARCH_RESULTS = 5
GRACE_S = 1.0
"""How long past the deadline the worker waits for `fetch_json`, which ends at the deadline itself."""
MAX_OPTIONS_SHOWN = 25
"""A disambiguation page can list hundreds of meanings; the model needs the first few to choose."""

_PACKAGE_LOCK = threading.Lock()
"""Module-level on purpose: it guards the `wikipedia` package's module globals, which are process-wide."""


class WikipediaArgs(BaseModel):
    query: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=300)] = Field(
        description="A topic or article title, e.g. 'Ada Lovelace' or 'Mercury (planet)'."
    )
    sentences: int = Field(default=3, ge=1, le=10, description="Length of the summary in sentences, 1 to 10.")


@dataclass(frozen=True)
class Lookup:
    """What one lookup found; built in the worker thread, turned into a `ToolResult` on the loop."""

    kind: str
    """`article`, `disambiguation` or `not_found`."""
    title: str
    url: str | None = None
    summary: str = ""
    options: list[str] = field(default_factory=list)
    other_titles: list[str] = field(default_factory=list)


class _JsonBody:
    """What `_LoopHttp.get` returns: the package only ever calls `.json()` on a response."""

    def __init__(self, payload: Any) -> None:
        self._payload = payload

    def json(self) -> Any:
        return self._payload


class _LoopHttp:
    """Stands in for the `requests` module inside `wikipedia.wikipedia`, which only ever calls `get`.

    Runs in the worker thread and hands each request to `fetch_json` on the caller's event loop, so a
    Wikipedia lookup is bounded, capped and its failures worded exactly like every other internet call.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, budget: Budget) -> None:
        self._loop = loop
        self._budget = budget

    def get(self, url: str, params: Any = None, headers: Any = None) -> _JsonBody:
        sent = {key: value for key, value in (params or {}).items() if value is not None}  # as requests does
        exchange = asyncio.run_coroutine_threadsafe(
            fetch_json(url, sent, service=SERVICE, budget=self._budget, headers=headers), self._loop
        )
        try:
            return _JsonBody(exchange.result(timeout=self._budget.deadline - self._loop.time() + GRACE_S))
        except TimeoutError as error:  # only if the loop itself is stuck: fetch_json ends at the deadline
            exchange.cancel()
            raise ServiceUnavailable(describe_failure(SERVICE, error, self._budget.seconds, url)) from error


@contextmanager
def _package_configured(api_url: str, http: _LoopHttp) -> Iterator[Any]:
    """Point the package at our endpoint and HTTP function; put everything back afterwards."""
    import wikipedia  # type: ignore[import-untyped]
    from bs4 import BeautifulSoup

    module = wikipedia.wikipedia
    saved = (module.API_URL, module.requests, module.BeautifulSoup)
    module.API_URL = api_url
    module.requests = http
    module.BeautifulSoup = functools.partial(BeautifulSoup, features="html.parser")
    try:
        yield wikipedia
    finally:
        module.API_URL, module.requests, module.BeautifulSoup = saved
        for cached in (wikipedia.search, wikipedia.suggest, wikipedia.summary):
            cached.clear_cache()


def lookup_blocking(
    api_url: str, query: str, sentences: int, loop: asyncio.AbstractEventLoop, budget: Budget
) -> Lookup:
    """Search, then open the best match; runs in a worker thread. Raises `ServiceUnavailable` on trouble."""
    if not _PACKAGE_LOCK.acquire(timeout=max(0.0, budget.deadline - loop.time())):
        raise ServiceUnavailable("another Wikipedia lookup is still running; try again shortly")
    try:
        with _package_configured(api_url, _LoopHttp(loop, budget)) as wiki:
            try:
                return _lookup(wiki, query, sentences)
            except (KeyError, IndexError, TypeError, AttributeError, AssertionError) as error:
                problem = repr(error)[:120]
                raise ServiceUnavailable(
                    f"Wikipedia sent an answer the wikipedia package could not read ({problem})"
                ) from error
    finally:
        _PACKAGE_LOCK.release()


def _lookup(wiki: Any, query: str, sentences: int) -> Lookup:
    from wikipedia.exceptions import (  # type: ignore[import-untyped]
        DisambiguationError,
        HTTPTimeoutError,
        PageError,
        WikipediaException,
    )

    try:
        titles: list[str] = wiki.search(query, results=SEARCH_RESULTS)
        if not titles:
            return Lookup(kind="not_found", title=query)
        best, others = titles[0], titles[1:]
        try:
            # auto_suggest=False: the search already chose the title, and the package's suggestion step is
            # known to replace good titles with misspellings.
            page = wiki.page(best, auto_suggest=False, redirect=True)
        except DisambiguationError as ambiguous:
            return Lookup(kind="disambiguation", title=ambiguous.title, options=_unique(ambiguous.options))
        except PageError:
            return Lookup(kind="not_found", title=query, other_titles=others)
        summary: str = wiki.summary(page.title, sentences=sentences, auto_suggest=False, redirect=True)
    except HTTPTimeoutError as error:
        raise ServiceUnavailable("Wikipedia is overloaded and timed out the search") from error
    except (DisambiguationError, PageError) as error:  # the page changed between two requests
        raise ServiceUnavailable(f"Wikipedia changed while it was being read ({type(error).__name__})") from error
    except WikipediaException as error:
        raise ServiceUnavailable(f"Wikipedia reported an error: {error.error}") from error
    return Lookup(kind="article", title=page.title, url=page.url, summary=summary.strip(), other_titles=others)


def _unique(options: list[str]) -> list[str]:
    return list(dict.fromkeys(option.strip() for option in options if option and option.strip()))


class WikipediaTool(InternetTool[WikipediaArgs]):
    def __init__(self, settings: Settings) -> None:
        super().__init__(settings, "wikipedia", DESCRIPTION, WikipediaArgs)

    async def ask(self, request: WikipediaArgs, budget: Budget) -> ToolResult:
        api_url = self._settings.wikipedia_api_url
        loop = asyncio.get_running_loop()
        call = asyncio.to_thread(lookup_blocking, api_url, request.query, request.sentences, loop, budget)
        try:
            # The thread stops itself at the deadline; the grace (a tenth, within the registry's own
            # timeout) lets its specific reason arrive instead of a generic one.
            found = await asyncio.wait_for(call, timeout=budget.seconds * 1.1)
        except TimeoutError as error:
            raise ServiceUnavailable(describe_failure(SERVICE, error, budget.seconds, api_url)) from error
        return _result(request.query, found)


def _result(query: str, found: Lookup) -> ToolResult:
    data = {
        "kind": found.kind,
        "title": found.title,
        "url": found.url,
        "summary": found.summary,
        "options": found.options,
        "other_titles": found.other_titles,
    }
    if found.kind == "not_found":
        hint = f" Related titles: {', '.join(found.other_titles)}." if found.other_titles else ""
        return ToolResult(ok=False, text=f'No Wikipedia article matches "{query}".{hint}', data=data)
    if found.kind == "disambiguation":
        shown = found.options[:MAX_OPTIONS_SHOWN]
        more = len(found.options) - len(shown)
        lines = [f'"{found.title}" is ambiguous on Wikipedia. It may refer to:']
        lines += [f"- {option}" for option in shown]
        if more > 0:
            lines.append(f"(and {more} more)")
        lines.append("Call wikipedia again with the exact title you mean.")
        return ToolResult(ok=True, text="\n".join(lines), data=data)
    text = f"Wikipedia: {found.title}\n{found.url}\n{found.summary}"
    if found.other_titles:
        text += f"\n(Other matching articles: {', '.join(found.other_titles)})"
    source = Source(title=f"Wikipedia: {found.title}", url=found.url, snippet=found.summary)
    return ToolResult(ok=True, text=text, data=data, sources=[source])
