"""`wikipedia`: search Wikipedia, list the meanings of an ambiguous title, or summarise an article.

Built on the `wikipedia` package (1.4.0), which is synchronous and keeps its whole configuration in
module globals of `wikipedia.wikipedia`: the endpoint (`API_URL`), the HTTP function (`requests.get`,
called with no timeout and no status check) and unbounded result caches keyed without the endpoint.
It has no per-call way to pass any of them, so each lookup runs in a worker thread and, for its whole
duration and under one process-wide lock:
  * points `API_URL` at `WIKIPEDIA_API_URL` from settings,
  * swaps the module's `requests` for `_BoundedHttp` (deadline-derived timeout, status check, size cap),
  * pins BeautifulSoup (used on disambiguation pages) to the standard library's parser,
then restores all three and clears the caches. So two tools with different endpoints, or two concurrent
calls, never see each other's state, answers are never stale, and a silent server cannot hold the lock
past the call's deadline. The price is that Wikipedia lookups in one process run one at a time.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Annotated, Any
from urllib.parse import urlsplit

import requests
from pydantic import BaseModel, Field, StringConstraints

from backend.config import Settings
from backend.tools.base import Availability, Source, ToolContext, ToolResult
from backend.tools.internet.failure_memory import LastFailure
from backend.tools.internet.http_json import request_budget_s

logger = logging.getLogger(__name__)

SEARCH_RESULTS = 5
MAX_RESPONSE_BYTES = 4_000_000
"""Far above any summary or disambiguation page; stops a broken endpoint from filling memory."""
CHUNK_BYTES = 65536
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


class Unavailable(Exception):
    """Wikipedia could not be asked or did not answer usably; the message is the reason."""


class _JsonBody:
    """What `_BoundedHttp.get` returns: the package only ever calls `.json()` on a response."""

    def __init__(self, content: bytes) -> None:
        self._content = content

    def json(self) -> Any:
        return json.loads(self._content)


class _BoundedHttp:
    """Stands in for the `requests` module inside `wikipedia.wikipedia`, which only ever calls `get`.

    Adds what the package leaves out: a timeout (whatever is left of the lookup's deadline), a status
    check, and a size cap. The socket timeout bounds each read, so a server that trickles bytes can keep
    the worker thread (never the caller, who stops waiting at the deadline) until the cap or its end.
    """

    def __init__(self, session: requests.Session, deadline: float) -> None:
        self._session = session
        self._deadline = deadline

    def get(self, url: str, params: Any = None, headers: Any = None) -> _JsonBody:
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise requests.Timeout("the lookup's time ran out before all its requests were made")
        with self._session.get(url, params=params, headers=headers, timeout=remaining, stream=True) as response:
            response.raise_for_status()
            body = bytearray()
            for chunk in response.iter_content(CHUNK_BYTES):
                body += chunk
                if len(body) > MAX_RESPONSE_BYTES:
                    raise Unavailable(f"Wikipedia sent more than {MAX_RESPONSE_BYTES} bytes")
                if time.monotonic() > self._deadline:
                    raise requests.Timeout("the lookup's time ran out while reading an answer")
        return _JsonBody(bytes(body))


@contextmanager
def _package_configured(api_url: str, http: _BoundedHttp) -> Iterator[Any]:
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


def lookup_blocking(api_url: str, query: str, sentences: int, deadline: float, budget_s: float) -> Lookup:
    """Search, then open the best match; runs in a worker thread. Raises `Unavailable` on network trouble."""
    if not _PACKAGE_LOCK.acquire(timeout=max(0.0, deadline - time.monotonic())):
        raise Unavailable("another Wikipedia lookup is still running; try again shortly")
    try:
        with requests.Session() as session, _package_configured(api_url, _BoundedHttp(session, deadline)) as wiki:
            try:
                return _lookup(wiki, query, sentences)
            except requests.RequestException as error:
                raise Unavailable(_describe_request_failure(error, api_url, budget_s)) from error
            except ValueError as error:  # after RequestException: requests' URL errors are ValueErrors too
                raise Unavailable("Wikipedia sent a response that is not valid JSON") from error
            except (KeyError, IndexError, TypeError, AttributeError, AssertionError) as error:
                problem = repr(error)[:120]
                raise Unavailable(
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
        raise Unavailable("Wikipedia is overloaded and timed out the search") from error
    except (DisambiguationError, PageError) as error:  # the page changed between two requests
        raise Unavailable(f"Wikipedia changed while it was being read ({type(error).__name__})") from error
    except WikipediaException as error:
        raise Unavailable(f"Wikipedia reported an error: {error.error}") from error
    return Lookup(kind="article", title=page.title, url=page.url, summary=summary.strip(), other_titles=others)


def _unique(options: list[str]) -> list[str]:
    return list(dict.fromkeys(option.strip() for option in options if option and option.strip()))


def _describe_request_failure(error: requests.RequestException, api_url: str, budget_s: float) -> str:
    # Timeout first: requests' ConnectTimeout is both a Timeout and a ConnectionError.
    if isinstance(error, requests.Timeout):
        return f"Wikipedia did not answer within {budget_s:g} s"
    if isinstance(error, requests.HTTPError) and error.response is not None:
        return f"Wikipedia answered HTTP {error.response.status_code}"
    if isinstance(error, requests.ConnectionError):
        host = urlsplit(api_url).netloc.rpartition("@")[2] or "its configured address"
        return f"cannot connect to Wikipedia at {host}"
    if isinstance(error, (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema)):
        return "the configured WIKIPEDIA_API_URL is not valid"
    return f"network error talking to Wikipedia ({type(error).__name__})"


class WikipediaTool:
    name = "wikipedia"
    description = (
        "Look a topic up on Wikipedia. Returns a short summary of the best-matching article with its URL; "
        "if the name is ambiguous, returns the list of meanings so you can call again with the exact title."
    )
    args_model: type[BaseModel] = WikipediaArgs

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._last_failure = LastFailure()

    def availability(self) -> Availability:
        """Needs no key, so it is always offered; a failed call is reported, never probed for on listing."""
        return self._last_failure.availability()

    async def run(self, args: BaseModel, context: ToolContext) -> ToolResult:
        request = args if isinstance(args, WikipediaArgs) else WikipediaArgs.model_validate(args.model_dump())
        budget = request_budget_s(self._settings)
        deadline = time.monotonic() + budget
        call = asyncio.to_thread(
            lookup_blocking, self._settings.wikipedia_api_url, request.query, request.sentences, deadline, budget
        )
        try:
            # The thread stops itself at the deadline; the grace (a tenth, within the registry's own
            # timeout) lets its specific reason arrive instead of a generic one.
            found = await asyncio.wait_for(call, timeout=budget * 1.1)
        except (Unavailable, TimeoutError) as error:
            reason = str(error) if isinstance(error, Unavailable) else f"Wikipedia did not answer within {budget:g} s"
            logger.warning("wikipedia lookup failed: %s", reason)
            self._last_failure.failed(reason)
            return ToolResult.failure(f"unavailable: {reason}")
        self._last_failure.succeeded()
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
