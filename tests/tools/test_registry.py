"""The registry: validation naming the field, availability, timeout, exceptions as failed results, specs, LangChain,
per-user shares as 429s, and no host path or exception internals in anything a tool answers."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import sys
from pathlib import Path

import pytest
from pydantic import BaseModel, Field

from backend.auth.models import User
from backend.config import load_settings
from backend.per_user_limits import PerUserLimit
from backend.service_errors import TooManyRequests
from backend.tools.base import Availability, Source, Tool, ToolContext, ToolResult
from backend.tools.catalog import build_tool_registry
from backend.tools.registry import APP_ROOT, InvalidToolArguments, ToolError, ToolRegistry, UnknownTool


class EchoArgs(BaseModel):
    text: str = Field(min_length=1, description="What to echo.")
    times: int = Field(1, ge=1, le=3, description="How often.")


class EchoTool:
    """A scripted tool: echoes, so every registry behaviour is visible in the result."""

    name = "echo"
    description = "Echo the text."
    args_model = EchoArgs

    def __init__(self) -> None:
        self.calls: list[tuple[EchoArgs, str]] = []

    def availability(self) -> Availability:
        return Availability(True)

    async def run(self, args: EchoArgs, context: ToolContext) -> ToolResult:
        self.calls.append((args, context.user.username))
        return ToolResult(
            ok=True, text=" ".join([args.text] * args.times), data={"user": context.user.username},
            sources=[Source(title="echo")],
        )


class SlowTool(EchoTool):
    name = "slow"

    def __init__(self) -> None:
        super().__init__()
        self.cancelled = False

    async def run(self, args: EchoArgs, context: ToolContext) -> ToolResult:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        return ToolResult(ok=True, text="never")


class BrokenTool(EchoTool):
    name = "broken"

    async def run(self, args: EchoArgs, context: ToolContext) -> ToolResult:
        raise RuntimeError("disk on fire")


class CrowdedTool(EchoTool):
    """Holds a one-per-user share while it runs, like the maths workers, SQL threads and sandbox slots."""

    name = "crowded"

    def __init__(self) -> None:
        super().__init__()
        self.share = PerUserLimit("crowded runs", 1, retry_after_s=3)
        self.release = asyncio.Event()

    async def run(self, args: EchoArgs, context: ToolContext) -> ToolResult:
        with self.share.hold(context.user.username):
            await self.release.wait()
        return ToolResult(ok=True, text=f"done for {context.user.username}")


class PathLeakingTool(EchoTool):
    """Answers with the server's folders everywhere a tool can put text, as a library's error message might."""

    name = "path_leak"

    async def run(self, args: EchoArgs, context: ToolContext) -> ToolResult:
        data_dir = context.settings.data_dir.resolve()
        secret = data_dir / "secret_key"
        return ToolResult(
            ok=False,
            text=f"unable to open {secret} (app at {APP_ROOT}, python {sys.prefix})",
            data={"file": str(data_dir / "users" / "x.json"), str(APP_ROOT): [f"{data_dir}/cache", 3]},
            sources=[Source(title=str(secret), url=f"file://{APP_ROOT}/data", snippet=str(data_dir),
                            metadata={"path": str(data_dir)})],
        )


class OffTool(EchoTool):
    name = "off"

    def availability(self) -> Availability:
        return Availability(False, "needs a key")


class BadCheckTool(EchoTool):
    name = "bad_check"

    def availability(self) -> Availability:
        raise OSError("probe crashed")


class NonFiniteTool(EchoTool):
    """Returns every kind of float JSON cannot hold, nested the ways tool data nests."""

    name = "non_finite"

    async def run(self, args: EchoArgs, context: ToolContext) -> ToolResult:
        data = {"big": math.inf, "rows": [[1.5, -math.inf], (math.nan, 2)], "text": "inf", "none": None}
        return ToolResult(ok=True, text="odd numbers", data=data,
                          sources=[Source(title="s", metadata={"score": math.nan, "page": 3})])


class Row(BaseModel):
    name: str


class NestedArgs(BaseModel):
    query: str = Field(description="Named like FastAPI's request part, which must not hide it.")
    rows: list[Row] = Field(default_factory=list, description="Rows.")


class NestedTool:
    """Arguments with nested models, for the paths validation errors name."""

    name = "nested"
    description = "Takes nested arguments."
    args_model = NestedArgs

    def availability(self) -> Availability:
        return Availability(True)

    async def run(self, args: NestedArgs, context: ToolContext) -> ToolResult:
        return ToolResult(ok=True, text=args.query)


@pytest.fixture
def context(tmp_path: Path) -> ToolContext:
    return ToolContext(user=User("alice"), settings=load_settings(data_dir=tmp_path))


@pytest.fixture
def echo() -> EchoTool:
    return EchoTool()


@pytest.fixture
def registry(echo: EchoTool) -> ToolRegistry:
    registry = ToolRegistry(timeout_s=0.5)
    for tool in (echo, SlowTool(), BrokenTool(), OffTool(), BadCheckTool()):
        registry.register(tool)
    return registry


async def test_invoke_validates_and_runs_the_tool_as_the_context_user(registry: ToolRegistry, echo: EchoTool,
                                                                      context: ToolContext) -> None:
    result = await registry.invoke("echo", {"text": "hi", "times": 2}, context)

    assert result.ok and result.text == "hi hi"
    assert result.data == {"user": "alice"}
    assert echo.calls[0][0] == EchoArgs(text="hi", times=2)
    assert echo.calls[0][1] == "alice"


async def test_invalid_value_raises_invalid_tool_arguments_naming_the_field(registry: ToolRegistry,
                                                                           context: ToolContext) -> None:
    with pytest.raises(InvalidToolArguments) as raised:
        await registry.invoke("echo", {"text": "hi", "times": 9}, context)

    assert raised.value.field == "times"
    assert "less than or equal to 3" in raised.value.message


@pytest.mark.parametrize(
    ("arguments", "field"),
    [({"rows": []}, "query"), ({"query": "q", "rows": [{"name": "a"}, {"name": 5}]}, "rows[1].name")],
)
async def test_a_nested_or_request_like_argument_is_named_by_its_full_path(
    context: ToolContext, arguments: dict[str, object], field: str
) -> None:
    registry = ToolRegistry(timeout_s=1)
    registry.register(NestedTool())

    with pytest.raises(InvalidToolArguments) as raised:
        await registry.invoke("nested", arguments, context)

    assert raised.value.field == field
    assert f"'{field}'" in str(raised.value)


async def test_non_finite_floats_in_a_result_become_json_safe_strings(context: ToolContext) -> None:
    registry = ToolRegistry(timeout_s=1)
    registry.register(NonFiniteTool())

    result = await registry.invoke("non_finite", {"text": "x"}, context)

    assert result.ok and result.text == "odd numbers"
    assert result.data == {"big": "Infinity", "rows": [[1.5, "-Infinity"], ["NaN", 2]], "text": "inf", "none": None}
    assert result.sources[0].metadata == {"score": "NaN", "page": 3}
    json.dumps([result.data, result.sources[0].metadata], allow_nan=False)  # raises on any inf or NaN left


async def test_missing_argument_is_named(registry: ToolRegistry, context: ToolContext) -> None:
    with pytest.raises(InvalidToolArguments) as raised:
        await registry.invoke("echo", {}, context)

    assert raised.value.field == "text"
    assert "required" in raised.value.message.lower()


async def test_unknown_argument_is_refused_rather_than_ignored(registry: ToolRegistry, echo: EchoTool,
                                                              context: ToolContext) -> None:
    with pytest.raises(InvalidToolArguments) as raised:
        await registry.invoke("echo", {"text": "hi", "tims": 2}, context)

    assert raised.value.field == "tims"
    assert "expected: text, times" in raised.value.message
    assert echo.calls == []


async def test_arguments_that_are_not_an_object_are_refused(registry: ToolRegistry, context: ToolContext) -> None:
    with pytest.raises(InvalidToolArguments) as raised:
        await registry.invoke("echo", ["hi"], context)

    assert raised.value.field is None


async def test_unknown_tool_lists_the_known_ones(registry: ToolRegistry, context: ToolContext) -> None:
    with pytest.raises(UnknownTool) as raised:
        await registry.invoke("nope", {}, context)

    assert isinstance(raised.value, ToolError)
    assert "Available tools: bad_check, broken, echo, off, slow." in str(raised.value)


async def test_a_slow_tool_is_stopped_at_the_timeout_and_becomes_a_failed_result(registry: ToolRegistry,
                                                                                 context: ToolContext) -> None:
    slow = registry.get("slow")
    assert isinstance(slow, SlowTool)

    result = await registry.invoke("slow", {"text": "x"}, context)

    assert not result.ok
    assert result.text == "Tool 'slow' did not finish within 0.5 s and was stopped."
    assert slow.cancelled


async def test_an_exception_in_a_tool_is_a_plain_sentence_and_its_details_stay_in_the_log(
    registry: ToolRegistry, context: ToolContext, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="backend.tools.registry"):
        result = await registry.invoke("broken", {"text": "x"}, context)

    assert not result.ok
    assert result.text == "Tool 'broken' failed because of an internal error; see the server log."
    assert "RuntimeError" not in result.text and "disk on fire" not in result.text
    logged = caplog.records[-1]
    assert logged.getMessage() == "Tool broken failed"
    assert logged.exc_info is not None and str(logged.exc_info[1]) == "disk on fire"


async def test_a_users_full_share_propagates_as_too_many_requests_while_others_run(context: ToolContext) -> None:
    registry = ToolRegistry(timeout_s=5)
    crowded = CrowdedTool()
    registry.register(crowded)
    bob = ToolContext(user=User("bob"), settings=context.settings)
    first = asyncio.create_task(registry.invoke("crowded", {"text": "x"}, context))
    await asyncio.sleep(0)

    with pytest.raises(TooManyRequests) as raised:
        await registry.invoke("crowded", {"text": "x"}, context)
    bobs = asyncio.create_task(registry.invoke("crowded", {"text": "x"}, bob))
    await asyncio.sleep(0)
    crowded.release.set()

    assert raised.value.status == 429
    assert raised.value.headers == {"Retry-After": "3"}
    assert raised.value.message == (
        "You already have 1 crowded runs in progress (the limit per user); wait for one to finish and retry."
    )
    assert (await first).text == "done for alice"
    assert (await bobs).text == "done for bob"
    assert crowded.share.in_flight("alice") == 0


async def test_host_paths_in_a_result_are_replaced_by_placeholders_everywhere(context: ToolContext) -> None:
    registry = ToolRegistry(timeout_s=5)
    registry.register(PathLeakingTool())

    result = await registry.invoke("path_leak", {"text": "x"}, context)

    assert result.text == "unable to open <data>/secret_key (app at <app>, python <python>)"
    assert result.data == {"file": "<data>/users/x.json", "<app>": ["<data>/cache", 3]}
    source = result.sources[0]
    assert (source.title, source.url, source.snippet) == ("<data>/secret_key", "file://<app>/data", "<data>")
    assert source.metadata == {"path": "<data>"}
    everything = json.dumps([result.text, result.data, source.title, source.url, source.snippet, source.metadata])
    for host_path in (str(context.settings.data_dir.resolve()), str(APP_ROOT), sys.prefix):
        assert host_path not in everything


async def test_a_data_dir_inside_the_app_folder_reads_as_data_not_as_a_subfolder_of_the_app() -> None:
    settings = load_settings(data_dir=APP_ROOT / "data")
    registry = ToolRegistry(timeout_s=5, data_dir=settings.data_dir)
    registry.register(PathLeakingTool())

    result = await registry.invoke("path_leak", {"text": "x"}, ToolContext(user=User("alice"), settings=settings))

    assert result.text.startswith("unable to open <data>/secret_key (app at <app>,")


def test_an_availability_reason_naming_a_host_path_is_redacted(tmp_path: Path) -> None:
    class PathReasonTool(EchoTool):
        name = "path_reason"

        def availability(self) -> Availability:
            return Availability(False, f"the probe can see {tmp_path}/users and {APP_ROOT}")

    registry = ToolRegistry(timeout_s=5, data_dir=tmp_path)
    registry.register(PathReasonTool())

    assert registry.availability("path_reason").reason == "the probe can see <data>/users and <app>"


async def test_an_unavailable_tool_is_not_run_and_says_why(registry: ToolRegistry, context: ToolContext) -> None:
    result = await registry.invoke("off", {"text": "x"}, context)

    assert not result.ok
    assert result.text == "Tool 'off' is unavailable: needs a key"


def test_a_crashing_availability_check_reads_as_unavailable(registry: ToolRegistry) -> None:
    status = registry.availability("bad_check")

    assert not status.available
    assert status.reason == "its availability check failed; the details are in the server log"


def test_a_name_can_be_registered_once(registry: ToolRegistry) -> None:
    with pytest.raises(ValueError, match="already registered"):
        registry.register(EchoTool())


def test_openai_specs_carry_the_schema_of_available_tools_only(registry: ToolRegistry) -> None:
    specs = registry.openai_tool_specs()

    assert [spec["function"]["name"] for spec in specs] == ["echo", "slow", "broken"]
    echo = specs[0]
    assert echo["type"] == "function"
    assert echo["function"]["description"] == "Echo the text."
    parameters = echo["function"]["parameters"]
    assert parameters["type"] == "object"
    assert parameters["required"] == ["text"]
    assert parameters["additionalProperties"] is False
    assert parameters["properties"]["times"] == {
        "default": 1, "description": "How often.", "maximum": 3, "minimum": 1, "type": "integer"
    }
    assert len(registry.openai_tool_specs(only_available=False)) == 5


async def test_catalog_registers_the_local_tools_each_implementing_the_protocol(tmp_path: Path) -> None:
    registry = build_tool_registry(load_settings(data_dir=tmp_path))
    try:
        names = [tool.name for tool in registry.tools()]
        assert sorted(names) == [
            "data_analysis", "math_calc", "python_code", "rag_retrieval", "sql_query", "weather", "web_search",
            "wikipedia",
        ]
        assert all(isinstance(tool, Tool) for tool in registry.tools())
        rag = registry.availability("rag_retrieval")
        assert (rag.available, rag.reason) == (False, "document retrieval is not configured on this server")
        assert registry.availability("data_analysis").available
        assert registry.availability("sql_query").available
    finally:
        await registry.aclose()
