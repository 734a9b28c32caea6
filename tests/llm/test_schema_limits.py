"""Schemas past the grammar limits are refused before anything is built; those within compile quickly."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from backend.config import bundled_model_path
from backend.llm import llamacpp_grammar
from backend.llm.llamacpp_grammar import GrammarCompiler, GrammarPlan
from backend.llm.llamacpp_prompt import longest_token_bytes
from backend.llm.port import GenerationOptions, UnsupportedRequest
from backend.llm.schema_limits import SchemaLimits, check_schema

LIMITS = SchemaLimits.for_context(2048, 81)


def _refusal(schema: Any) -> str:
    started = time.perf_counter()
    with pytest.raises(UnsupportedRequest) as caught:
        check_schema(schema, param="response_format", limits=LIMITS)
    assert time.perf_counter() - started < 0.05
    assert caught.value.param == "response_format"
    return str(caught.value)


def _nested(levels: int) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    for _ in range(levels):
        schema = {"type": "array", "items": schema}
    return schema


@pytest.mark.parametrize(("schema", "named"), [
    ({"type": "string", "minLength": 10**9}, "minLength at $ is 1000000000; at most 1000"),
    ({"type": "string", "maxLength": 10**8}, "maxLength at $ is 100000000"),
    ({"type": "array", "items": {"type": "integer"}, "maxItems": 2**63}, "maxItems at $ is"),
    ({"type": "object", "properties": {"a": {"type": "array", "minItems": 5000}}}, "minItems at $.properties.a"),
    ({"type": "object", "maxProperties": 10**12}, "maxProperties at $"),
    ({"type": "string", "minLength": 1.5}, "must be a non-negative integer"),
    ({"type": "string", "maxLength": -1}, "must be a non-negative integer"),
    (_nested(200), "nests deeper than 32 levels"),
    ({"type": "string", "pattern": "^a{1000000000}$"}, "repeats 1000000000 times"),
    ({"type": "string", "pattern": "^(x{0,100}){0,100}$"}, "counts multiply to 10000"),
    ({"type": "string", "pattern": "^(a?){0,100}$"}, "repeats items of varying length too often"),
    ({"type": "string", "pattern": "^((a{0,10}){0,10}){0,10}$"}, "repeats items of varying length too often"),
    ({"type": "string", "pattern": "^(a|bb){0,5}(c?){0,5}$"}, "repeats items of varying length too often"),
    ({"type": "string", "pattern": "^" + "[a-z]" * 200 + "$"}, "at most 128 here"),
    ({"type": "array", "minItems": 1000, "items": {"type": "string", "minLength": 1000}},
     "need at least 1000000 characters of output; this model's context of 2048 tokens holds at most 165888"),
    ({"type": "object", "properties": {f"p{i}": {"type": "string", "maxLength": 900} for i in range(10)}},
     "count bounds add up to more than 4000"),
    ({"enum": ["x" * 20_000]}, "longer than 16384 characters"),
    ({"enum": list(range(5000))}, "more than 1024 values"),
])
def test_a_schema_past_a_limit_is_refused_naming_the_bound(schema: Any, named: str) -> None:
    message = _refusal(schema)
    assert message.startswith("The JSON schema in 'response_format' is too large for this server: ")
    assert named in message


@pytest.mark.parametrize("schema", [
    {"type": "object", "properties": {"name": {"type": "string", "maxLength": 1000}, "age": {"type": "integer"}},
     "required": ["name"]},
    {"type": "array", "items": {"type": "string", "minLength": 2, "maxLength": 50}, "minItems": 1, "maxItems": 100},
    {"type": "string", "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}$"},
    {"type": "string", "pattern": "^(a?){0,8}$"},
    {"type": "string", "pattern": "^[a-z ]{0,1000}$"},
    _nested(15),
    {"const": {"maxLength": 10**9}, "default": {"minItems": -5}},  # data, not bounds
    {"type": "object", "properties": {"maxLength": {"type": "string"}}},  # a property so named
])
def test_a_schema_within_the_limits_passes(schema: Any) -> None:
    check_schema(schema, param="response_format", limits=LIMITS)


def test_tools_share_one_budget_and_are_named_by_index() -> None:
    compiler = GrammarCompiler(None, LIMITS)
    tool = {"type": "function", "function": {"name": "f", "parameters": {
        "type": "object", "properties": {"text": {"type": "string", "maxLength": 1000}}}}}
    assert compiler.plan(GenerationOptions(tools=(tool,) * 4)) is not None
    with pytest.raises(UnsupportedRequest) as caught:
        compiler.plan(GenerationOptions(tools=(tool,) * 5))
    assert caught.value.param == "tools"
    assert "tools[4].function.parameters.properties.text" in str(caught.value)
    huge = {"type": "function", "function": {"name": "g", "parameters": {"type": "string", "minLength": 10**9}}}
    with pytest.raises(UnsupportedRequest, match=r"tools\[1\]\.function\.parameters"):
        compiler.plan(GenerationOptions(tools=(tool, huge)))
    assert compiler.plan(GenerationOptions(tools=(huge,), tool_choice="none")) is None  # no grammar, no check


@pytest.fixture(scope="module")
def compiler() -> Iterator[GrammarCompiler]:
    from llama_cpp import Llama

    path = bundled_model_path()
    assert path is not None
    vocab_only = Llama(model_path=str(path), vocab_only=True, verbose=False)
    limits = SchemaLimits.for_context(2048, longest_token_bytes(vocab_only._model.vocab, vocab_only.n_vocab()))
    yield GrammarCompiler(vocab_only._model.vocab, limits)
    vocab_only.close()


def _plan(schema: dict[str, Any]) -> GrammarPlan:
    text = json.dumps(schema)
    return GrammarPlan(text, text, "response_format")


def test_the_worst_schemas_the_limits_allow_compile_in_well_under_a_second(compiler: GrammarCompiler) -> None:
    per = compiler.limits.max_count
    worst = [
        {"type": "object", "properties": {f"p{i}": {"type": "string", "maxLength": per - i} for i in range(4)}},
        {"type": "object", "properties": {
            f"p{i}": {"type": "array", "items": {"type": "object", "properties": {"a": {"type": "string"}}},
                      "maxItems": per - i} for i in range(4)}},
        {"type": "object", "properties": {f"p{i}": {"type": "string", "pattern": "^((a?){0,2}){0,2}[a-z]{0,990}$"}
                                          for i in range(4)}},
        {"type": "object", "properties": {f"p{i}": {"type": "integer"} for i in range(300)}},
    ]
    for schema in worst:
        check_schema(schema, param="response_format", limits=compiler.limits)
        started = time.perf_counter()
        grammar = compiler.build(_plan(schema))
        assert time.perf_counter() - started < 1.0
        assert len(grammar._grammar) < llamacpp_grammar.MAX_GBNF_CHARS


def test_a_grammar_llama_cpp_refuses_is_a_bad_request_not_a_crash(compiler: GrammarCompiler) -> None:
    schema = {"type": "string", "pattern": "^(a|)+$"}  # within the limits, but left-recursive in GBNF
    check_schema(schema, param="response_format", limits=compiler.limits)
    with pytest.raises(UnsupportedRequest, match=r"llama\.cpp cannot use") as caught:
        compiler.build(_plan(schema))
    assert caught.value.param == "response_format"


def test_the_grammar_cache_is_capped_by_characters(
    compiler: GrammarCompiler, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(llamacpp_grammar, "MAX_CACHE_CHARS", 40_000)
    for length in range(990, 1000):  # each about 8,000 characters of GBNF
        compiler.build(_plan({"type": "string", "maxLength": length}))
        assert compiler.cached_chars() <= 40_000
    assert compiler.cached_chars() > 20_000
