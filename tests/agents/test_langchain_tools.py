"""The LangChain bridge: registry tools as langchain-core tools whose every outcome is an observation."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from langchain_core.messages import ToolMessage
from langchain_core.tools import StructuredTool
from pydantic import BaseModel, Field

from backend.agents.langchain_tools import as_langchain_tools
from backend.auth.models import User
from backend.config import load_settings
from backend.per_user_limits import PerUserLimit
from backend.tools.base import Availability, Source, ToolContext, ToolResult
from backend.tools.registry import ToolRegistry


class EchoArgs(BaseModel):
    text: str = Field(min_length=1, description="What to echo.")
    times: int = Field(1, ge=1, le=3, description="How often.")


class EchoTool:
    name = "echo"
    description = "Echo the text."
    args_model: type[BaseModel] = EchoArgs

    def __init__(self) -> None:
        self.users: list[str] = []

    def availability(self) -> Availability:
        return Availability(True)

    async def run(self, args: BaseModel, context: ToolContext) -> ToolResult:
        assert isinstance(args, EchoArgs)
        self.users.append(context.user.username)
        return ToolResult(ok=True, text=" ".join([args.text] * args.times), data={"user": context.user.username},
                          sources=[Source(title="echo")])


class BrokenTool(EchoTool):
    name = "broken"

    async def run(self, args: BaseModel, context: ToolContext) -> ToolResult:
        raise RuntimeError("disk on fire")


class OffTool(EchoTool):
    name = "off"

    def availability(self) -> Availability:
        return Availability(False, "needs a key")


class CrowdedTool(EchoTool):
    """Holds a one-per-user share while it runs, like the maths workers, SQL threads and sandbox slots."""

    name = "crowded"

    def __init__(self) -> None:
        super().__init__()
        self.share = PerUserLimit("crowded runs", 1, retry_after_s=3)
        self.release = asyncio.Event()

    async def run(self, args: BaseModel, context: ToolContext) -> ToolResult:
        with self.share.hold(context.user.username):
            await self.release.wait()
        return ToolResult(ok=True, text=f"done for {context.user.username}")


@pytest.fixture
def context(tmp_path: Path) -> ToolContext:
    return ToolContext(user=User("alice"), settings=load_settings(data_dir=tmp_path))


@pytest.fixture
def echo() -> EchoTool:
    return EchoTool()


@pytest.fixture
def registry(echo: EchoTool) -> ToolRegistry:
    registry = ToolRegistry(timeout_s=5)
    for tool in (echo, BrokenTool(), OffTool()):
        registry.register(tool)
    return registry


def call(name: str, args: dict[str, object], call_id: str = "call_1") -> dict[str, object]:
    return {"type": "tool_call", "id": call_id, "name": name, "args": args}


async def test_available_tools_run_through_the_registry_as_the_context_user_with_the_result_as_artifact(
    registry: ToolRegistry, echo: EchoTool, context: ToolContext
) -> None:
    tools = {tool.name: tool for tool in as_langchain_tools(registry, context)}
    assert list(tools) == ["echo", "broken"]
    assert all(isinstance(tool, StructuredTool) for tool in tools.values())

    message = await tools["echo"].ainvoke(call("echo", {"text": "yo", "times": 3}))

    assert isinstance(message, ToolMessage)
    assert message.content == "yo yo yo"
    assert message.tool_call_id == "call_1"
    assert isinstance(message.artifact, ToolResult) and message.artifact.data == {"user": "alice"}
    assert echo.users == ["alice"]


def test_unavailable_tools_are_included_only_when_asked(registry: ToolRegistry, context: ToolContext) -> None:
    assert [tool.name for tool in as_langchain_tools(registry, context, only_available=False)] == [
        "echo", "broken", "off"
    ]


async def test_bad_arguments_return_the_problem_to_the_model(registry: ToolRegistry, context: ToolContext) -> None:
    tool = as_langchain_tools(registry, context)[0]

    message = await tool.ainvoke(call("echo", {"times": 2}, "call_2"))

    assert isinstance(message, ToolMessage)
    assert message.content == "Invalid value for 'text': Field required"


async def test_a_crashing_tool_is_a_failed_observation_not_an_exception(
    registry: ToolRegistry, context: ToolContext
) -> None:
    tool = next(t for t in as_langchain_tools(registry, context) if t.name == "broken")

    message = await tool.ainvoke(call("broken", {"text": "x"}, "call_3"))

    assert message.content == "Tool 'broken' failed because of an internal error; see the server log."
    assert message.artifact.ok is False


async def test_a_full_share_is_a_failed_observation_for_an_agent_not_an_exception(context: ToolContext) -> None:
    registry = ToolRegistry(timeout_s=5)
    crowded = CrowdedTool()
    registry.register(crowded)
    tool = as_langchain_tools(registry, context)[0]
    first = asyncio.create_task(registry.invoke("crowded", {"text": "x"}, context))
    await asyncio.sleep(0)

    message = await tool.ainvoke(call("crowded", {"text": "x"}, "call_9"))
    crowded.release.set()
    await first

    assert isinstance(message, ToolMessage)
    assert message.content == (
        "You already have 1 crowded runs in progress (the limit per user); wait for one to finish and retry."
    )
    assert message.artifact.ok is False
