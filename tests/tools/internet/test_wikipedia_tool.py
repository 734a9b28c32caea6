"""wikipedia against a loopback MediaWiki action API, through the `wikipedia` package's own requests."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
import requests
import wikipedia  # type: ignore[import-untyped]
from pydantic import ValidationError

from backend.auth.models import User
from backend.config import Settings, load_settings
from backend.tools.base import Source, Tool, ToolContext, ToolResult
from backend.tools.catalog import build_tool_registry
from backend.tools.internet.wikipedia_tool import WikipediaArgs, WikipediaTool
from tests.fakes.internet_services import (
    GARBAGE,
    SERVER_ERROR,
    FakeWiki,
    LoopbackServer,
    Reply,
    WikiPage,
    refused_url,
    silent_for,
)

LOVELACE = WikiPage(
    title="Ada Lovelace",
    pageid=974,
    text=(
        "Augusta Ada King, Countess of Lovelace was an English mathematician and writer. "
        "She is chiefly known for her work on Charles Babbage's proposed Analytical Engine. "
        "She was the first to recognise that the machine had applications beyond pure calculation. "
        "Lovelace was the only legitimate child of the poet Lord Byron."
    ),
)
ANALYTICAL_ENGINE = WikiPage(
    title="Analytical engine",
    pageid=1271,
    text="The analytical engine was a proposed mechanical general-purpose computer. It was designed by Babbage.",
)
MERCURY = WikiPage(
    title="Mercury",
    pageid=19694,
    disambiguation_options=["Mercury (planet)", "Mercury (element)", "Mercury (mythology)", "Freddie Mercury"],
)
PLANET = WikiPage(
    title="Mercury (planet)",
    pageid=19694001,
    text="Mercury is the first planet from the Sun. It is the smallest planet in the Solar System.",
)


def standard_wiki() -> FakeWiki:
    return FakeWiki(
        pages=[LOVELACE, ANALYTICAL_ENGINE, MERCURY, PLANET],
        redirects={"Lady Lovelace": "Ada Lovelace"},
        search_results={
            "ada lovelace": ["Ada Lovelace", "Analytical engine"],
            "lady lovelace": ["Lady Lovelace"],
            "mercury": ["Mercury", "Mercury (planet)"],
            "vanished": ["A page deleted since the search"],
        },
    )


def settings_for(tmp_path: Path, api_url: str, **overrides: object) -> Settings:
    values: dict[str, object] = {"data_dir": tmp_path, "wikipedia_api_url": api_url, "internet_tools_timeout_s": 5.0}
    values.update(overrides)
    return load_settings(**values)


async def look_up(settings: Settings, query: str, sentences: int = 3) -> ToolResult:
    context = ToolContext(user=User("alice"), settings=settings)
    return await WikipediaTool(settings).run(WikipediaArgs(query=query, sentences=sentences), context)


def test_wikipedia_implements_the_tool_protocol(tmp_path: Path) -> None:
    tool = WikipediaTool(settings_for(tmp_path, "http://127.0.0.1:9/w/api.php"))
    assert isinstance(tool, Tool)
    assert tool.availability().available
    assert tool.args_model.model_json_schema()["properties"]["sentences"]["maximum"] == 10


async def test_article_summary_has_the_asked_sentences_and_the_page_url_as_source(tmp_path: Path) -> None:
    with LoopbackServer(standard_wiki().responder()) as wiki:
        result = await look_up(settings_for(tmp_path, wiki.base_url + "/w/api.php"), "Ada Lovelace", sentences=2)

    expected_summary = (
        "Augusta Ada King, Countess of Lovelace was an English mathematician and writer. "
        "She is chiefly known for her work on Charles Babbage's proposed Analytical Engine."
    )
    assert result.ok, result.text
    assert result.sources == [
        Source(
            title="Wikipedia: Ada Lovelace", url="https://en.wikipedia.org/wiki/Ada_Lovelace", snippet=expected_summary
        )
    ]
    assert result.text == (
        "Wikipedia: Ada Lovelace\nhttps://en.wikipedia.org/wiki/Ada_Lovelace\n"
        f"{expected_summary}\n(Other matching articles: Analytical engine)"
    )
    assert result.data["kind"] == "article"
    assert result.data["other_titles"] == ["Analytical engine"]


async def test_the_requests_are_the_mediawiki_queries_the_package_documents(tmp_path: Path) -> None:
    with LoopbackServer(standard_wiki().responder()) as wiki:
        await look_up(settings_for(tmp_path, wiki.base_url + "/w/api.php"), "Ada Lovelace", sentences=2)

    assert [(r.method, r.path) for r in wiki.requests] == [("GET", "/w/api.php")] * 4
    search, info, info_again, extract = (r.query for r in wiki.requests)
    assert search == {
        "list": "search",
        "srprop": "",
        "srlimit": "5",
        "limit": "5",
        "srsearch": "Ada Lovelace",
        "format": "json",
        "action": "query",
    }
    expected_info = {
        "prop": "info|pageprops",
        "inprop": "url",
        "ppprop": "disambiguation",
        "redirects": "",
        "titles": "Ada Lovelace",
        "format": "json",
        "action": "query",
    }
    assert info == expected_info
    assert info_again == expected_info  # `wikipedia.summary` re-opens the page to check it
    assert extract == {
        "prop": "extracts",
        "explaintext": "",
        "titles": "Ada Lovelace",
        "exsentences": "2",
        "format": "json",
        "action": "query",
    }
    assert all(r.headers["user-agent"] == wikipedia.wikipedia.USER_AGENT for r in wiki.requests)


async def test_an_ambiguous_title_lists_the_meanings(tmp_path: Path) -> None:
    with LoopbackServer(standard_wiki().responder()) as wiki:
        result = await look_up(settings_for(tmp_path, wiki.base_url + "/w/api.php"), "mercury")

    assert result.ok
    assert result.data["kind"] == "disambiguation"
    assert result.data["options"] == MERCURY.disambiguation_options  # the table-of-contents entry is not one
    assert result.text == (
        '"Mercury" is ambiguous on Wikipedia. It may refer to:\n'
        "- Mercury (planet)\n- Mercury (element)\n- Mercury (mythology)\n- Freddie Mercury\n"
        "Call wikipedia again with the exact title you mean."
    )
    assert result.sources == []
    revision_request = wiki.requests[-1].query
    assert revision_request["prop"] == "revisions"
    assert revision_request["rvparse"] == "" and revision_request["titles"] == "Mercury"


async def test_a_long_list_of_meanings_is_shortened_for_the_model(tmp_path: Path) -> None:
    many = WikiPage(title="Mercury", pageid=1, disambiguation_options=[f"Mercury {n}" for n in range(40)])
    fake = FakeWiki(pages=[many], search_results={"mercury": ["Mercury"]})
    with LoopbackServer(fake.responder()) as wiki:
        result = await look_up(settings_for(tmp_path, wiki.base_url + "/w/api.php"), "Mercury")

    assert len(result.data["options"]) == 40
    assert "- Mercury 24\n(and 15 more)" in result.text
    assert "Mercury 25" not in result.text


async def test_the_exact_title_chosen_from_a_disambiguation_gives_the_article(tmp_path: Path) -> None:
    with LoopbackServer(standard_wiki().responder()) as wiki:
        result = await look_up(settings_for(tmp_path, wiki.base_url + "/w/api.php"), "Mercury (planet)", sentences=1)

    assert result.ok
    assert result.data["title"] == "Mercury (planet)"
    assert result.data["summary"] == "Mercury is the first planet from the Sun."
    assert result.sources[0].url == "https://en.wikipedia.org/wiki/Mercury_(planet)"


async def test_a_redirect_is_followed_to_the_target_article(tmp_path: Path) -> None:
    with LoopbackServer(standard_wiki().responder()) as wiki:
        result = await look_up(settings_for(tmp_path, wiki.base_url + "/w/api.php"), "Lady Lovelace", sentences=1)

    assert result.ok
    assert result.data["title"] == "Ada Lovelace"
    assert result.sources[0].url == "https://en.wikipedia.org/wiki/Ada_Lovelace"
    assert [r.query["titles"] for r in wiki.requests[1:3]] == ["Lady Lovelace", "Ada Lovelace"]


async def test_no_matching_article_is_a_failed_result_that_says_so(tmp_path: Path) -> None:
    with LoopbackServer(standard_wiki().responder()) as wiki:
        result = await look_up(settings_for(tmp_path, wiki.base_url + "/w/api.php"), "qwxz nonsense")

    assert not result.ok
    assert result.text == 'No Wikipedia article matches "qwxz nonsense".'
    assert len(wiki.requests) == 1


async def test_a_search_hit_whose_page_is_gone_is_reported_as_not_found(tmp_path: Path) -> None:
    with LoopbackServer(standard_wiki().responder()) as wiki:
        result = await look_up(settings_for(tmp_path, wiki.base_url + "/w/api.php"), "vanished")

    assert not result.ok
    assert result.text == 'No Wikipedia article matches "vanished".'


async def test_wikipedia_unreachable_is_reported_as_unavailable(tmp_path: Path) -> None:
    with refused_url("/w/api.php") as url:
        result = await look_up(settings_for(tmp_path, url), "Ada Lovelace")

    host = url.removeprefix("http://").removesuffix("/w/api.php")
    assert not result.ok
    assert result.text == f"unavailable: cannot connect to Wikipedia at {host}"


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        (SERVER_ERROR, "Wikipedia answered HTTP 500: internal"),
        (Reply(status=429, body=b"Too many requests", content_type="text/plain"), "Wikipedia answered HTTP 429"),
        (GARBAGE, "Wikipedia sent a response that is not valid JSON"),
        (
            Reply.json({"error": {"code": "maxlag", "info": "Waiting for a database server: 5 seconds lagged."}}),
            "Wikipedia reported an error: Waiting for a database server: 5 seconds lagged.",
        ),
        (
            Reply.json({"error": {"code": "timeout", "info": "HTTP request timed out."}}),
            "Wikipedia is overloaded and timed out the search",
        ),
        (
            Reply.json({"batchcomplete": ""}),
            "Wikipedia sent an answer the wikipedia package could not read (KeyError('query'))",
        ),
    ],
)
async def test_wikipedia_misbehaving_is_reported_as_unavailable(tmp_path: Path, reply: Reply, reason: str) -> None:
    with LoopbackServer(lambda request: reply) as wiki:
        tool_settings = settings_for(tmp_path, wiki.base_url + "/w/api.php")
        result = await look_up(tool_settings, "Ada Lovelace")

    assert not result.ok
    assert result.text == f"unavailable: {reason}"


async def test_wikipedia_that_never_answers_times_out_within_the_budget(tmp_path: Path) -> None:
    with LoopbackServer(silent_for(30)) as wiki:
        started = time.monotonic()
        result = await look_up(
            settings_for(tmp_path, wiki.base_url + "/w/api.php", internet_tools_timeout_s=0.5), "Ada"
        )
        elapsed = time.monotonic() - started

    assert result.text == "unavailable: Wikipedia did not answer within 0.5 s"
    assert elapsed < 5


async def test_a_timed_out_lookup_does_not_block_the_next_one(tmp_path: Path) -> None:
    """The package lock is released at the deadline, so a stuck server cannot hold every later lookup."""
    with LoopbackServer(silent_for(30)) as stuck, LoopbackServer(standard_wiki().responder()) as healthy:
        stuck_settings = settings_for(tmp_path, stuck.base_url + "/w/api.php", internet_tools_timeout_s=0.5)
        healthy_settings = settings_for(tmp_path, healthy.base_url + "/w/api.php", internet_tools_timeout_s=3)
        first = await look_up(stuck_settings, "Ada Lovelace")
        second = await look_up(healthy_settings, "Ada Lovelace")

    assert first.text.startswith("unavailable:")
    assert second.ok and second.data["title"] == "Ada Lovelace"


async def test_a_lookup_waiting_behind_a_stuck_one_gives_up_with_a_clear_reason(tmp_path: Path) -> None:
    with LoopbackServer(silent_for(30)) as stuck, LoopbackServer(standard_wiki().responder()) as healthy:
        stuck_settings = settings_for(tmp_path, stuck.base_url + "/w/api.php", internet_tools_timeout_s=1.5)
        waiting_settings = settings_for(tmp_path, healthy.base_url + "/w/api.php", internet_tools_timeout_s=0.3)
        stuck_call = asyncio.create_task(look_up(stuck_settings, "Ada Lovelace"))
        while not stuck.requests:  # the first lookup holds the package once its request is in flight
            await asyncio.sleep(0.01)
        waiting = await look_up(waiting_settings, "Ada Lovelace")
        stuck_result = await stuck_call

    assert waiting.text == "unavailable: another Wikipedia lookup is still running; try again shortly"
    assert healthy.requests == []
    assert stuck_result.text == "unavailable: Wikipedia did not answer within 1.5 s"


async def test_an_oversized_answer_is_refused(tmp_path: Path) -> None:
    huge = Reply.json({"batchcomplete": "", "query": {"search": [{"title": "x" * 5_000_000}]}})
    with LoopbackServer(lambda request: huge) as wiki:
        result = await look_up(settings_for(tmp_path, wiki.base_url + "/w/api.php"), "Ada Lovelace")

    assert result.text == "unavailable: Wikipedia sent more than 4000000 bytes"


async def test_concurrent_lookups_on_different_endpoints_never_mix_answers(tmp_path: Path) -> None:
    english = standard_wiki()
    other = FakeWiki(
        pages=[WikiPage(title="Ada Lovelace", pageid=5, text="Ada Lovelace war eine britische Mathematikerin.")],
        search_results={"ada lovelace": ["Ada Lovelace"]},
    )
    with LoopbackServer(english.responder()) as en, LoopbackServer(other.responder()) as de:
        en_settings = settings_for(tmp_path, en.base_url + "/w/api.php")
        de_settings = settings_for(tmp_path, de.base_url + "/w/api.php")
        results = await asyncio.gather(*(look_up(s, "Ada Lovelace", 1) for s in [en_settings, de_settings] * 3))

    summaries = [result.data["summary"] for result in results]
    assert (
        summaries
        == [
            "Augusta Ada King, Countess of Lovelace was an English mathematician and writer.",
            "Ada Lovelace war eine britische Mathematikerin.",
        ]
        * 3
    )
    assert len(en.requests) == len(de.requests) == 12  # every lookup asked its own server; no cached answers


async def test_the_package_globals_are_restored_after_a_lookup(tmp_path: Path) -> None:
    module = wikipedia.wikipedia
    before = (module.API_URL, module.requests, module.BeautifulSoup)
    with LoopbackServer(standard_wiki().responder()) as wiki:
        await look_up(settings_for(tmp_path, wiki.base_url + "/w/api.php"), "mercury")
        await look_up(settings_for(tmp_path, wiki.base_url + "/w/api.php"), "Ada Lovelace")

    assert (module.API_URL, module.requests, module.BeautifulSoup) == before
    assert module.requests is requests
    assert wikipedia.search._cache == {} and wikipedia.summary._cache == {}


async def test_availability_reports_the_last_failure_until_a_call_succeeds(tmp_path: Path) -> None:
    with LoopbackServer(lambda request: SERVER_ERROR) as wiki:
        settings = settings_for(tmp_path, wiki.base_url + "/w/api.php")
        tool = WikipediaTool(settings)
        context = ToolContext(user=User("alice"), settings=settings)
        await tool.run(WikipediaArgs(query="Ada Lovelace"), context)
        assert tool.availability().available
        assert tool.availability().reason == "last call failed: Wikipedia answered HTTP 500: internal"

        wiki.responder = standard_wiki().responder()
        assert (await tool.run(WikipediaArgs(query="Ada Lovelace"), context)).ok
        assert tool.availability().reason == ""


async def test_wikipedia_is_registered_and_runs_through_the_registry(tmp_path: Path) -> None:
    with LoopbackServer(standard_wiki().responder()) as wiki:
        settings = settings_for(tmp_path, wiki.base_url + "/w/api.php")
        registry = build_tool_registry(settings)
        context = ToolContext(User("bob"), settings)
        result = await registry.invoke("wikipedia", {"query": "Ada Lovelace", "sentences": 1}, context)

    assert registry.availability("wikipedia").available
    assert result.ok
    assert result.sources[0].url == "https://en.wikipedia.org/wiki/Ada_Lovelace"


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"query": ""}, "query"),
        ({"query": "  "}, "query"),
        ({"query": "x" * 301}, "query"),
        ({"query": "Ada", "sentences": 0}, "sentences"),
        ({"query": "Ada", "sentences": 11}, "sentences"),
    ],
)
def test_invalid_arguments_are_rejected_naming_the_field(arguments: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        WikipediaArgs.model_validate(arguments)
    assert [error["loc"][0] for error in caught.value.errors()] == [field]
