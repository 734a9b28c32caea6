"""The one way every internet tool calls its service: failures worded once, answered and remembered once."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from pydantic import BaseModel

from backend.auth.models import User
from backend.config import Settings, load_settings
from backend.tools.base import Availability, Tool, ToolContext, ToolResult
from backend.tools.internet.service_call import Budget, InternetTool, ServiceUnavailable, describe_failure
from backend.tools.registry import ToolRegistry

URL = "http://user:s3cret@search.local:8888/search/tok3n?key=k3y"
REQUEST = httpx.Request("GET", URL)


@pytest.mark.parametrize(
    ("error", "sentence"),
    [
        (httpx.ReadTimeout("timed out", request=REQUEST), "Search did not answer within 2.5 s"),
        (TimeoutError(), "Search did not answer within 2.5 s"),
        (
            httpx.HTTPStatusError("500", request=REQUEST, response=httpx.Response(502, request=REQUEST)),
            "Search answered HTTP 502",
        ),
        (httpx.InvalidURL("bad"), "the configured Search URL is not valid"),
        (httpx.UnsupportedProtocol("ftp", request=REQUEST), "the configured Search URL is not valid"),
        (httpx.ConnectError("refused", request=REQUEST), "cannot connect to Search at search.local:8888"),
        (
            httpx.RemoteProtocolError("peer closed", request=REQUEST),
            "network error talking to Search at search.local:8888 (RemoteProtocolError)",
        ),
        (json.JSONDecodeError("Expecting value", "<html>", 0), "Search sent a response that is not valid JSON"),
        (RuntimeError(f"boom at {URL}"), "Search failed (RuntimeError)"),
    ],
)
def test_every_failed_exchange_is_one_sentence_without_the_urls_secrets(error: Exception, sentence: str) -> None:
    assert describe_failure("Search", error, 2.5, URL) == sentence


class EchoArgs(BaseModel):
    text: str


class ScriptedTool(InternetTool[EchoArgs]):
    """An internet tool whose service answers from a script: a reason to fail with, or nothing."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings, "scripted", "Echoes its text unless the script says the service is down.", EchoArgs)
        self.failure: str | None = None
        self.budgets: list[Budget] = []
        self.requests: list[EchoArgs] = []

    async def ask(self, request: EchoArgs, budget: Budget) -> ToolResult:
        self.budgets.append(budget)
        self.requests.append(request)
        if self.failure:
            raise ServiceUnavailable(self.failure)
        return ToolResult(ok=True, text=request.text)


async def test_a_service_failure_is_answered_as_unavailable_and_remembered_until_a_call_succeeds(
    tmp_path: Path,
) -> None:
    settings = load_settings(data_dir=tmp_path, internet_tools_timeout_s=4.0, tool_timeout_s=30.0)
    context = ToolContext(user=User("alice"), settings=settings)
    tool = ScriptedTool(settings)
    assert isinstance(tool, Tool)
    assert (tool.name, tool.args_model) == ("scripted", EchoArgs)

    tool.failure = "Search answered HTTP 503"
    failed = await tool.run(EchoArgs(text="hello"), context)
    assert failed == ToolResult(ok=False, text="unavailable: Search answered HTTP 503")
    assert tool.availability() == Availability(True, "last call failed: Search answered HTTP 503")

    tool.failure = None
    answered = await tool.run(EchoArgs(text="hello"), context)
    assert answered == ToolResult(ok=True, text="hello")
    assert tool.availability() == Availability(True)
    assert [budget.seconds for budget in tool.budgets] == [4.0, 4.0]


async def test_through_the_registry_the_service_is_asked_with_the_tools_own_argument_model(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path)
    tool = ScriptedTool(settings)
    registry = ToolRegistry(timeout_s=5)
    registry.register(tool)

    result = await registry.invoke("scripted", {"text": "relayed"}, ToolContext(User("alice"), settings))

    assert result == ToolResult(ok=True, text="relayed")
    assert tool.requests == [EchoArgs(text="relayed")]  # pydantic equality compares the model class too


async def test_the_budget_keeps_a_tenth_of_the_tool_timeout_back_for_the_specific_reason(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path, internet_tools_timeout_s=20.0, tool_timeout_s=10.0)

    assert Budget.start(settings).seconds == 9.0
