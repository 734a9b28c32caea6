"""The one tool registry: both agents, the API and the UI find and run tools through it.

A tool is declared once (`backend.tools.base.Tool`); the registry adds what every call needs and no
tool should repeat: argument validation with a field-naming error, the availability check, the
timeout, turning any exception into a failed `ToolResult` (details in the log, not the answer), and
keeping host paths out of everything a tool answers.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import sys
import time
from collections.abc import Iterable
from dataclasses import replace
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from backend.field_paths import field_path
from backend.service_errors import TooManyRequests
from backend.tools.base import ArgsT, Availability, Tool, ToolContext, ToolResult

logger = logging.getLogger(__name__)

APP_ROOT = Path(__file__).resolve().parents[2]


class ToolError(Exception):
    """A call that never reached the tool; agents catch this one type and show the message to the model."""


class UnknownTool(ToolError):
    def __init__(self, name: str, known: Iterable[str]) -> None:
        self.name = name
        names = ", ".join(sorted(known)) or "none"
        super().__init__(f"Unknown tool '{name}'. Available tools: {names}.")


class InvalidToolArguments(ToolError):
    """The arguments do not fit the tool's argument model; `field` names the first offending one."""

    def __init__(self, tool: str, field: str | None, message: str) -> None:
        self.tool = tool
        self.field = field
        self.message = message
        where = f"'{field}'" if field else "the arguments"
        super().__init__(f"Invalid value for {where} of tool '{tool}': {message}")


def validate_arguments(tool: Tool[ArgsT], raw_args: object) -> ArgsT:
    """Validate against the tool's model, refusing unknown names so a misspelt argument is never ignored."""
    if not isinstance(raw_args, dict):
        raise InvalidToolArguments(tool.name, None, "expected a JSON object of named arguments")
    model = tool.args_model
    known = set(model.model_fields) | {f.alias for f in model.model_fields.values() if f.alias}
    for name in raw_args:
        if name not in known:
            expected = ", ".join(sorted(model.model_fields)) or "no arguments"
            raise InvalidToolArguments(tool.name, str(name), f"unknown argument; expected: {expected}")
    try:
        return model.model_validate(raw_args)
    except ValidationError as error:
        first = error.errors()[0]
        extra = len(error.errors()) - 1
        message = str(first["msg"]) + (f" (and {extra} more problem{'s' if extra > 1 else ''})" if extra else "")
        raise InvalidToolArguments(tool.name, field_path(tuple(first["loc"])), message) from None


def json_safe(value: Any) -> Any:
    """`value` with every non-finite float as the string "Infinity", "-Infinity" or "NaN".

    JSON has no such numbers: Starlette refuses to write them and pydantic silently writes null (which
    reads as SQL NULL or a missing value). The strings are protobuf's JSON mapping for the same values.
    """
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        return "NaN" if math.isnan(value) else "Infinity" if value > 0 else "-Infinity"
    if isinstance(value, dict):
        return {key: json_safe(inner) for key, inner in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(inner) for inner in value]
    return value


def _json_safe_result(result: ToolResult) -> ToolResult:
    sources = [replace(source, metadata=json_safe(source.metadata)) for source in result.sources]
    return replace(result, data=json_safe(result.data), sources=sources)


class HostPathRedactor:
    """Replaces the server's own folders in text by placeholders: `<data>`, `<app>`, `<python>`.

    Tools should never put a host path in what they answer (the SQL authorizer refuses
    `database_list`, the sandbox hides these folders); this is the net under them for what slips
    through, such as a library's error message naming a file.
    """

    def __init__(self, data_dir: Path | None) -> None:
        roots = [("<app>", APP_ROOT), ("<python>", Path(sys.prefix))]
        if data_dir is not None:
            roots.append(("<data>", data_dir))
        spellings: dict[str, str] = {}
        for label, root in roots:
            for spelling in {str(root.absolute()), str(root.resolve())}:
                if len(spelling) > 1:  # never the file system root itself
                    spellings.setdefault(spelling, label)
        self._labels = spellings
        # Longest first, so DATA_DIR inside the repository reads `<data>`, not `<app>/data`.
        alternatives = sorted(spellings, key=len, reverse=True)
        self._pattern = re.compile("|".join(re.escape(path) for path in alternatives))

    def text(self, text: str) -> str:
        return self._pattern.sub(lambda match: self._labels[match.group()], text)

    def value(self, value: Any) -> Any:
        """Every string inside `value` (dict keys too) redacted; other values as they are."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self.value(key): self.value(inner) for key, inner in value.items()}
        if isinstance(value, list | tuple):
            return [self.value(inner) for inner in value]
        return value

    def result(self, result: ToolResult) -> ToolResult:
        sources = [
            replace(
                source, title=self.text(source.title), url=None if source.url is None else self.text(source.url),
                snippet=self.text(source.snippet), metadata=self.value(source.metadata),
            )
            for source in result.sources
        ]
        return replace(result, text=self.text(result.text), data=self.value(result.data), sources=sources)


@lru_cache(maxsize=16)
def _redactor_for(data_dir: Path | None) -> HostPathRedactor:
    return HostPathRedactor(data_dir)


def _parameters_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON schema without pydantic's `title`s, which only cost the model tokens."""
    schema = model.model_json_schema()
    schema.pop("title", None)
    for prop in schema.get("properties", {}).values():
        if isinstance(prop, dict):
            prop.pop("title", None)
    schema.setdefault("properties", {})
    schema["additionalProperties"] = False
    return schema


class ToolRegistry:
    """Tools by name, and the one way to run them."""

    def __init__(self, timeout_s: float, *, data_dir: Path | None = None) -> None:
        """`data_dir` is kept out of availability reasons; results are redacted with the caller's own."""
        self._tools: dict[str, Tool[Any]] = {}
        self._timeout_s = timeout_s
        self._data_dir = data_dir

    def register(self, tool: Tool[Any]) -> None:
        if tool.name in self._tools:
            raise ValueError(f"A tool named '{tool.name}' is already registered.")
        self._tools[tool.name] = tool

    def tools(self) -> list[Tool[Any]]:
        """Every registered tool, in the order of registration."""
        return list(self._tools.values())

    def get(self, name: str) -> Tool[Any]:
        try:
            return self._tools[name]
        except KeyError:
            raise UnknownTool(name, self._tools) from None

    def availability(self, name: str) -> Availability:
        """Never raises: a tool whose check fails is reported unavailable with the reason."""
        tool = self.get(name)
        try:
            status = tool.availability()
        except Exception:  # a broken check must not take the tool list down
            logger.exception("Availability check of tool %s failed", name)
            return Availability(False, "its availability check failed; the details are in the server log")
        return replace(status, reason=_redactor_for(self._data_dir).text(status.reason))

    async def warm_up(self) -> None:
        """Run every availability check once, off the event loop: some probe the machine (the sandbox)."""
        for tool in self._tools.values():
            await asyncio.to_thread(self.availability, tool.name)

    async def aclose(self) -> None:
        """Stop what tools keep running between calls (e.g. the maths worker processes)."""
        for tool in self._tools.values():
            close = getattr(tool, "aclose", None)
            if close is not None:
                try:
                    await close()
                except Exception:
                    logger.exception("Closing tool %s failed", tool.name)

    def schema(self, name: str) -> dict[str, Any]:
        return _parameters_schema(self.get(name).args_model)

    async def invoke(self, name: str, raw_args: object, context: ToolContext) -> ToolResult:
        """Run one call; every run ends in a result whose `data` and source metadata are JSON-safe (see
        `json_safe`) and in which no host path appears (see `HostPathRedactor`).

        Raises `UnknownTool` and `InvalidToolArguments` before the tool runs, and lets through the
        `TooManyRequests` of a tool whose pool already holds the user's share (maths workers, SQL
        threads, sandbox slots): the API answers it with 429 and `Retry-After`, the LangChain bridge
        turns it into a failed observation. Any other exception is logged with its traceback and
        answered with a plain sentence naming the tool, never the exception's type or message.
        """
        tool = self.get(name)
        args = validate_arguments(tool, raw_args)
        redactor = _redactor_for(context.settings.data_dir)
        status = self.availability(name)
        if not status.available:
            return ToolResult.failure(redactor.text(f"Tool '{name}' is unavailable: {status.reason}"))
        started = time.monotonic()
        try:
            async with asyncio.timeout(self._timeout_s):
                # Every call passes here, so no tool's inf or NaN can break an API answer.
                result = _json_safe_result(await tool.run(args, context))
        except TimeoutError:
            return ToolResult.failure(f"Tool '{name}' did not finish within {self._timeout_s:g} s and was stopped.")
        except TooManyRequests:
            raise
        except Exception:
            logger.exception("Tool %s failed", name)
            return ToolResult.failure(f"Tool '{name}' failed because of an internal error; see the server log.")
        logger.debug("Tool %s ran in %.3f s (ok=%s)", name, time.monotonic() - started, result.ok)
        return redactor.result(result)

    def openai_tool_specs(self, *, only_available: bool = True) -> list[dict[str, Any]]:
        """OpenAI function specs for native tool calls; unavailable tools are left out by default."""
        specs: list[dict[str, Any]] = []
        for tool in self._tools.values():
            if only_available and not self.availability(tool.name).available:
                continue
            specs.append(
                {
                    "type": "function",
                    "function": {
                        "name": tool.name,
                        "description": tool.description,
                        "parameters": _parameters_schema(tool.args_model),
                    },
                }
            )
        return specs
