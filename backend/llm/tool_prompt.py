"""Tool calling for models without a native tool API: describe the tools, constrain the output, parse it.

One call per answer (small models otherwise repeat the same call). The output is forced by a JSON
schema (a grammar in llama.cpp), so it always parses:
`{"tool_calls": [{"name": ..., "arguments": {...}}]}` for calls, `{"content": "..."}` for an answer.
"""

from __future__ import annotations

import json
from typing import Any

from backend.llm.port import ToolCall, new_tool_call_id


def _functions(tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [function for _, function in tool_functions(tools)]


def tool_functions(tools: list[dict[str, Any]]) -> list[tuple[int, dict[str, Any]]]:
    """Each function spec with its index in `tools` (other tool types are not offered to the model)."""
    return [(index, tool["function"]) for index, tool in enumerate(tools) if tool.get("type", "function") == "function"]


def tool_output_schema(tools: list[dict[str, Any]], tool_choice: str) -> dict[str, Any]:
    """The JSON schema the answer must match, honouring `tool_choice` (auto, required, or a function name)."""
    functions = _functions(tools)
    if tool_choice not in ("auto", "required"):
        functions = [function for function in functions if function["name"] == tool_choice]
    call_schemas = [
        {
            "type": "object",
            "properties": {
                "name": {"const": function["name"]},
                "arguments": function.get("parameters") or {"type": "object", "properties": {}},
            },
            "required": ["name", "arguments"],
        }
        for function in functions
    ]
    calls = {
        "type": "object",
        "properties": {
            "tool_calls": {"type": "array", "items": {"anyOf": call_schemas}, "minItems": 1, "maxItems": 1}
        },
        "required": ["tool_calls"],
    }
    if tool_choice != "auto":
        return calls
    answer = {"type": "object", "properties": {"content": {"type": "string"}}, "required": ["content"]}
    return {"anyOf": [calls, answer]}


def tool_system_prompt(tools: list[dict[str, Any]], tool_choice: str) -> str:
    listing = json.dumps(
        [
            {"name": f["name"], "description": f.get("description", ""), "parameters": f.get("parameters", {})}
            for f in _functions(tools)
        ],
        indent=1,
    )
    if tool_choice == "auto":
        how = ('To call tools, answer {"tool_calls": [{"name": ..., "arguments": {...}}]}. '
               'To answer the user directly, answer {"content": "..."}.')
    else:
        how = 'Answer {"tool_calls": [{"name": ..., "arguments": {...}}]}.'
    return f"You can call these functions:\n{listing}\n{how}"


def parse_tool_output(text: str) -> tuple[str, list[ToolCall]]:
    """Split constrained output into answer text and tool calls; text that is not the expected JSON is an answer."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return text, []
    if isinstance(value, dict) and isinstance(value.get("tool_calls"), list):
        calls = [
            ToolCall(
                id=new_tool_call_id(),
                name=str(call.get("name", "")),
                arguments=json.dumps(call.get("arguments") or {}),
            )
            for call in value["tool_calls"]
            if isinstance(call, dict)
        ]
        return "", calls
    if isinstance(value, dict) and isinstance(value.get("content"), str):
        return value["content"], []
    return text, []
