"""web_search against loopback Tavily and SearXNG servers, through tavily-python's own client and httpx."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from backend.auth.models import User
from backend.config import Settings, load_settings
from backend.tools.base import Availability, Source, Tool, ToolContext, ToolResult
from backend.tools.catalog import build_tool_registry
from backend.tools.internet.web_search import WebSearchArgs, WebSearchTool
from backend.tools.registry import InvalidToolArguments
from tests.fakes.internet_services import (
    GARBAGE,
    SERVER_ERROR,
    LoopbackServer,
    Reply,
    refused_url,
    searxng_responder,
    silent_for,
    tavily_responder,
)

TAVILY_KEY = "tvly-test-0123456789"

TAVILY_RESULTS: list[dict[str, Any]] = [
    {
        "title": "Python 3.14 released",
        "url": "https://www.python.org/downloads/release/python-3140/",
        "content": "Python 3.14.0 is the newest major release of the Python programming language.",
        "score": 0.93,
    },
    {
        "title": "What's new in Python 3.14",
        "url": "https://docs.python.org/3.14/whatsnew/3.14.html",
        "content": "This article explains the new features in Python 3.14, compared to 3.13.",
        "score": 0.88,
    },
    {
        "title": "Python (programming language) - Wikipedia",
        "url": "https://en.wikipedia.org/wiki/Python_(programming_language)",
        "content": "Python is a high-level, general-purpose programming language.",
        "score": 0.71,
    },
]

SEARXNG_RESULTS: list[dict[str, Any]] = [
    {
        "url": "https://searxng.org/",
        "title": "SearXNG",
        "content": "SearXNG is a free   internet\n metasearch engine.",
        "engine": "duckduckgo",
        "parsed_url": ["https", "searxng.org", "/", "", "", ""],
        "template": "default.html",
        "engines": ["duckduckgo", "brave"],
        "positions": [1, 2],
        "score": 4.0,
        "category": "general",
    },
    {"title": "An infobox-like entry without a URL", "content": "skipped", "engine": "wikidata"},
    {
        "url": "https://github.com/searxng/searxng",
        "title": "searxng/searxng on GitHub",
        "content": None,
        "engine": "brave",
        "score": 2.5,
        "category": "general",
    },
    {"url": "https://docs.searxng.org/", "title": "", "content": "Documentation.", "engine": "brave"},
]


def settings_for(tmp_path: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "data_dir": tmp_path,
        "tavily_api_key": None,
        "searxng_url": None,
        "internet_tools_timeout_s": 5.0,
    }
    values.update(overrides)
    return load_settings(**values)


async def search(tool: WebSearchTool, settings: Settings, query: str, max_results: int = 5) -> ToolResult:
    context = ToolContext(user=User("alice"), settings=settings)
    return await tool.run(WebSearchArgs(query=query, max_results=max_results), context)


def test_web_search_implements_the_tool_protocol(tmp_path: Path) -> None:
    tool = WebSearchTool(settings_for(tmp_path))
    assert isinstance(tool, Tool)
    schema = tool.args_model.model_json_schema()
    assert schema["required"] == ["query"]
    assert schema["properties"]["max_results"]["maximum"] == 10


# --- Tavily


async def test_tavily_results_become_numbered_text_and_sources(tmp_path: Path) -> None:
    with LoopbackServer(tavily_responder(TAVILY_KEY, TAVILY_RESULTS)) as tavily:
        settings = settings_for(tmp_path, tavily_api_key=TAVILY_KEY, tavily_base_url=tavily.base_url)
        result = await search(WebSearchTool(settings), settings, "newest python release", max_results=2)

    assert result.ok, result.text
    assert result.sources == [
        Source(title="Python 3.14 released", url=TAVILY_RESULTS[0]["url"], snippet=TAVILY_RESULTS[0]["content"]),
        Source(title="What's new in Python 3.14", url=TAVILY_RESULTS[1]["url"], snippet=TAVILY_RESULTS[1]["content"]),
    ]
    assert result.text.splitlines()[0] == 'Web results for "newest python release" (Tavily):'
    assert "[1] Python 3.14 released\n    https://www.python.org/downloads/release/python-3140/" in result.text
    assert "[2] What's new in Python 3.14" in result.text
    assert "[3]" not in result.text
    assert result.data["provider"] == "Tavily"
    assert [hit["url"] for hit in result.data["results"]] == [TAVILY_RESULTS[0]["url"], TAVILY_RESULTS[1]["url"]]


async def test_tavily_request_carries_the_key_as_bearer_and_the_documented_body(tmp_path: Path) -> None:
    with LoopbackServer(tavily_responder(TAVILY_KEY, TAVILY_RESULTS)) as tavily:
        settings = settings_for(tmp_path, tavily_api_key=TAVILY_KEY, tavily_base_url=tavily.base_url)
        await search(WebSearchTool(settings), settings, "  spaced query  ", max_results=3)

    [request] = tavily.requests
    assert (request.method, request.path) == ("POST", "/search")
    assert request.headers["authorization"] == f"Bearer {TAVILY_KEY}"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["x-client-source"] == "tavily-python"
    assert request.json() == {"query": "spaced query", "max_results": 3, "search_depth": "basic"}


async def test_tavily_is_preferred_over_searxng_when_both_are_configured(tmp_path: Path) -> None:
    with (
        LoopbackServer(tavily_responder(TAVILY_KEY, TAVILY_RESULTS)) as tavily,
        LoopbackServer(searxng_responder(SEARXNG_RESULTS)) as searxng,
    ):
        settings = settings_for(
            tmp_path, tavily_api_key=TAVILY_KEY, tavily_base_url=tavily.base_url, searxng_url=searxng.base_url
        )
        result = await search(WebSearchTool(settings), settings, "python")

    assert result.ok and result.data["provider"] == "Tavily"
    assert len(tavily.requests) == 1
    assert searxng.requests == []


async def test_tavily_rejecting_the_key_is_reported_as_unavailable(tmp_path: Path) -> None:
    with LoopbackServer(tavily_responder("tvly-the-real-key", TAVILY_RESULTS)) as tavily:
        settings = settings_for(tmp_path, tavily_api_key="tvly-wrong-key", tavily_base_url=tavily.base_url)
        result = await search(WebSearchTool(settings), settings, "python")

    assert not result.ok
    assert (
        result.text == "unavailable: Tavily rejected the API key (HTTP 401): Unauthorized: missing or invalid API key."
    )
    assert "tvly-wrong-key" not in result.text
    assert result.sources == []


async def test_tavily_usage_limit_is_reported_as_unavailable(tmp_path: Path) -> None:
    limit = Reply.json({"detail": {"error": "This request exceeds your plan's set usage limit."}}, status=429)
    with LoopbackServer(lambda request: limit) as tavily:
        settings = settings_for(tmp_path, tavily_api_key=TAVILY_KEY, tavily_base_url=tavily.base_url)
        result = await search(WebSearchTool(settings), settings, "python")

    assert not result.ok
    assert result.text.startswith("unavailable: Tavily usage limit reached (HTTP 429)")


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        (SERVER_ERROR, "Tavily answered HTTP 500"),
        (Reply.json({"detail": {"error": "bad gateway"}}, status=502), "Tavily answered HTTP 502"),
        (GARBAGE, "Tavily sent a response that is not valid JSON"),
        (Reply.json({"query": "python", "results": {"a": 1}}), "Tavily sent an answer without a list of results"),
        (Reply.json(["not", "an", "object"]), "Tavily sent an answer in an unexpected shape"),
    ],
)
async def test_tavily_misbehaving_is_reported_as_unavailable(tmp_path: Path, reply: Reply, reason: str) -> None:
    with LoopbackServer(lambda request: reply) as tavily:
        settings = settings_for(tmp_path, tavily_api_key=TAVILY_KEY, tavily_base_url=tavily.base_url)
        result = await search(WebSearchTool(settings), settings, "python")

    assert not result.ok
    assert result.text == f"unavailable: {reason}"


async def test_tavily_unreachable_is_reported_as_unavailable(tmp_path: Path) -> None:
    with refused_url() as url:
        settings = settings_for(tmp_path, tavily_api_key=TAVILY_KEY, tavily_base_url=url)
        result = await search(WebSearchTool(settings), settings, "python")

    assert not result.ok
    assert result.text == f"unavailable: cannot connect to Tavily at {url.removeprefix('http://')}"


async def test_tavily_that_never_answers_times_out_within_the_budget(tmp_path: Path) -> None:
    with LoopbackServer(silent_for(30)) as tavily:
        settings = settings_for(
            tmp_path, tavily_api_key=TAVILY_KEY, tavily_base_url=tavily.base_url, internet_tools_timeout_s=0.5
        )
        started = time.monotonic()
        result = await search(WebSearchTool(settings), settings, "python")
        elapsed = time.monotonic() - started

    assert not result.ok
    assert result.text == "unavailable: Tavily did not answer within 0.5 s"
    assert elapsed < 5, "the call must end near its budget, not when the server gives up"


# --- SearXNG


async def test_searxng_results_become_numbered_text_and_sources(tmp_path: Path) -> None:
    with LoopbackServer(searxng_responder(SEARXNG_RESULTS)) as searxng:
        settings = settings_for(tmp_path, searxng_url=searxng.base_url)
        result = await search(WebSearchTool(settings), settings, "searxng", max_results=5)

    assert result.ok, result.text
    assert result.sources == [
        Source(title="SearXNG", url="https://searxng.org/", snippet="SearXNG is a free internet metasearch engine."),
        Source(title="searxng/searxng on GitHub", url="https://github.com/searxng/searxng", snippet=""),
        Source(title="https://docs.searxng.org/", url="https://docs.searxng.org/", snippet="Documentation."),
    ]
    assert result.text == (
        'Web results for "searxng" (SearXNG):\n'
        "[1] SearXNG\n    https://searxng.org/\n    SearXNG is a free internet metasearch engine.\n"
        "[2] searxng/searxng on GitHub\n    https://github.com/searxng/searxng\n"
        "[3] https://docs.searxng.org/\n    https://docs.searxng.org/\n    Documentation."
    )


async def test_searxng_request_is_the_documented_json_search(tmp_path: Path) -> None:
    with LoopbackServer(searxng_responder(SEARXNG_RESULTS)) as searxng:
        settings = settings_for(tmp_path, searxng_url=searxng.base_url + "/")
        result = await search(WebSearchTool(settings), settings, "weather & climate?", max_results=1)

    assert [source.url for source in result.sources] == ["https://searxng.org/"]
    [request] = searxng.requests
    assert (request.method, request.path) == ("GET", "/search")
    assert request.query == {"q": "weather & climate?", "format": "json"}
    assert request.headers["accept"] == "application/json"


async def test_searxng_url_may_already_name_the_search_endpoint(tmp_path: Path) -> None:
    with LoopbackServer(searxng_responder(SEARXNG_RESULTS)) as searxng:
        settings = settings_for(tmp_path, searxng_url=searxng.base_url + "/search")
        result = await search(WebSearchTool(settings), settings, "searxng")

    assert result.ok
    assert [request.path for request in searxng.requests] == ["/search"]


async def test_searxng_with_no_results_is_a_successful_empty_answer(tmp_path: Path) -> None:
    with LoopbackServer(searxng_responder([])) as searxng:
        settings = settings_for(tmp_path, searxng_url=searxng.base_url)
        result = await search(WebSearchTool(settings), settings, "zxqv nothing matches")

    assert result.ok
    assert result.text == 'No web results for "zxqv nothing matches" (SearXNG).'
    assert result.sources == []


async def test_searxng_without_json_format_enabled_explains_the_fix(tmp_path: Path) -> None:
    forbidden = Reply(status=403, body=b"<title>403 Forbidden</title>", content_type="text/html")
    with LoopbackServer(lambda request: forbidden) as searxng:
        settings = settings_for(tmp_path, searxng_url=searxng.base_url)
        result = await search(WebSearchTool(settings), settings, "python")

    assert not result.ok
    assert result.text == (
        "unavailable: SearXNG answered HTTP 403 (is `json` listed in the instance's search.formats?)"
    )


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        (SERVER_ERROR, "SearXNG answered HTTP 500: internal"),
        (Reply(status=502, body=b"<h1>Bad Gateway</h1>", content_type="text/html"), "SearXNG answered HTTP 502"),
        (GARBAGE, "SearXNG sent a response that is not valid JSON"),
        (Reply(body=b'{"results": [{"url": "https://a.example"'), "SearXNG sent a response that is not valid JSON"),
        (Reply.json({"query": "python", "results": "none"}), "SearXNG sent an answer without a list of results"),
    ],
)
async def test_searxng_misbehaving_is_reported_as_unavailable(tmp_path: Path, reply: Reply, reason: str) -> None:
    with LoopbackServer(lambda request: reply) as searxng:
        settings = settings_for(tmp_path, searxng_url=searxng.base_url)
        result = await search(WebSearchTool(settings), settings, "python")

    assert not result.ok
    assert result.text == f"unavailable: {reason}"


async def test_searxng_unreachable_is_reported_as_unavailable(tmp_path: Path) -> None:
    with refused_url() as url:
        settings = settings_for(tmp_path, searxng_url=url)
        result = await search(WebSearchTool(settings), settings, "python")

    assert not result.ok
    assert result.text == f"unavailable: cannot connect to SearXNG at {url.removeprefix('http://')}"


async def test_searxng_that_never_answers_times_out_within_the_budget(tmp_path: Path) -> None:
    with LoopbackServer(silent_for(30)) as searxng:
        settings = settings_for(tmp_path, searxng_url=searxng.base_url, internet_tools_timeout_s=0.5)
        started = time.monotonic()
        result = await search(WebSearchTool(settings), settings, "python")
        elapsed = time.monotonic() - started

    assert result.text == "unavailable: SearXNG did not answer within 0.5 s"
    assert elapsed < 5


async def test_searxng_trickling_its_answer_is_cut_off_at_the_budget(tmp_path: Path) -> None:
    """Each byte arrives well within httpx's per-read timeout; only the overall deadline stops it."""
    body = json.dumps({"results": SEARXNG_RESULTS}).encode()
    with LoopbackServer(lambda request: Reply(body=body, trickle_s=0.05)) as searxng:
        settings = settings_for(tmp_path, searxng_url=searxng.base_url, internet_tools_timeout_s=0.5)
        started = time.monotonic()
        result = await search(WebSearchTool(settings), settings, "python")
        elapsed = time.monotonic() - started

    assert result.text == "unavailable: SearXNG did not answer within 0.5 s"
    assert elapsed < 5, f"sending {len(body)} bytes at 20 per second would take {len(body) / 20:.0f} s"


async def test_searxng_oversized_answer_is_refused(tmp_path: Path) -> None:
    huge = json.dumps({"results": [{"url": "https://a.example", "content": "x" * 5_000_000}]}).encode()
    with LoopbackServer(lambda request: Reply(body=huge)) as searxng:
        settings = settings_for(tmp_path, searxng_url=searxng.base_url)
        result = await search(WebSearchTool(settings), settings, "python")

    assert result.text == "unavailable: SearXNG sent more than 4000000 bytes"


# --- configuration and availability


async def test_without_key_or_url_the_tool_is_unavailable_and_says_what_to_set(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    tool = WebSearchTool(settings)

    availability = tool.availability()
    assert not availability.available
    assert availability.reason == "set TAVILY_API_KEY or SEARXNG_URL"
    result = await search(tool, settings, "python")
    assert not result.ok
    assert result.text == "unavailable: set TAVILY_API_KEY or SEARXNG_URL"


async def test_availability_reports_the_last_failure_until_a_call_succeeds(tmp_path: Path) -> None:
    with LoopbackServer(lambda request: SERVER_ERROR) as searxng:
        settings = settings_for(tmp_path, searxng_url=searxng.base_url)
        tool = WebSearchTool(settings)
        assert tool.availability().available and tool.availability().reason == ""

        await search(tool, settings, "python")
        after_failure = tool.availability()
        assert after_failure.available
        assert after_failure.reason == "last call failed: SearXNG answered HTTP 500: internal"

        searxng.responder = searxng_responder(SEARXNG_RESULTS)
        assert (await search(tool, settings, "python")).ok
        assert tool.availability().reason == ""


def test_availability_makes_no_network_call(tmp_path: Path) -> None:
    with LoopbackServer(searxng_responder(SEARXNG_RESULTS)) as searxng:
        tool = WebSearchTool(settings_for(tmp_path, searxng_url=searxng.base_url))
        for _ in range(3):
            assert tool.availability().available
    assert searxng.requests == []


async def test_the_registry_lists_unconfigured_web_search_as_unavailable_and_says_why(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    registry = build_tool_registry(settings)

    assert registry.availability("web_search") == Availability(False, "set TAVILY_API_KEY or SEARXNG_URL")
    assert "web_search" not in [spec["function"]["name"] for spec in registry.openai_tool_specs()]
    result = await registry.invoke("web_search", {"query": "python"}, ToolContext(User("alice"), settings))
    assert not result.ok
    assert result.text.endswith("unavailable: set TAVILY_API_KEY or SEARXNG_URL")


async def test_the_registry_runs_web_search_and_refuses_bad_arguments(tmp_path: Path) -> None:
    with LoopbackServer(searxng_responder(SEARXNG_RESULTS)) as searxng:
        settings = settings_for(tmp_path, searxng_url=searxng.base_url)
        registry = build_tool_registry(settings)
        context = ToolContext(User("alice"), settings)
        result = await registry.invoke("web_search", {"query": "searxng", "max_results": 2}, context)
        with pytest.raises(InvalidToolArguments) as refused:
            await registry.invoke("web_search", {"query": "searxng", "max_results": 50}, context)

    assert result.ok
    assert [source.url for source in result.sources] == ["https://searxng.org/", "https://github.com/searxng/searxng"]
    assert refused.value.field == "max_results"
    assert len(searxng.requests) == 1


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"query": ""}, "query"),
        ({"query": "   "}, "query"),
        ({"query": "x" * 401}, "query"),
        ({"query": "python", "max_results": 0}, "max_results"),
        ({"query": "python", "max_results": 11}, "max_results"),
        ({}, "query"),
    ],
)
def test_invalid_arguments_are_rejected_naming_the_field(arguments: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        WebSearchArgs.model_validate(arguments)
    assert [error["loc"][0] for error in caught.value.errors()] == [field]
