"""Grammars for the embedded model: the schema is checked, converted, parsed once by llama.cpp, and cached.

The order is what keeps a schema from taking the server down. `plan` runs in the request path and
refuses any schema past `SchemaLimits` before anything is built. `build` runs on the preparation
thread, never on the model's worker: `gbnf` converts the schema to GBNF (capped at `MAX_GBNF_CHARS`), then
has llama.cpp's own parser read it once and throws that parse away. llama-cpp-python does not check
that parse when it sets up sampling, so a grammar llama.cpp refuses would otherwise crash the worker.

Why the checked bounds make this cheap (measured, see `schema_limits`): the converter's output grows
linearly with each count bound, and nested subschemas become rules of their own, so sizes add rather
than multiply; the request's bounds add up to at most `max_total_count` (4,000). The worst schemas the
limits allow (4,000 spread over `maxItems` of object arrays; 300 optional properties; patterns at the
ambiguity budget) give at most 85 KB of GBNF, converted and parsed in 6 to 160 ms, the process's peak
memory unchanged at about 70 MB (2 cores). Before the limits, `minLength: 1e9` was killed for memory,
`maxLength: 20000` and `pattern: ^(a|)+$` segfaulted the server. The cap on the GBNF text is a second
line should a converter change break that reasoning.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from backend.llm.port import GenerationOptions, UnsupportedRequest
from backend.llm.schema_limits import SchemaBudget, SchemaLimits, check_schema
from backend.llm.tool_prompt import tool_functions, tool_output_schema

MAX_GBNF_CHARS = 256 << 10
"""GBNF text one grammar may have; the worst schema the limits allow stays far below it."""
MAX_CACHE_CHARS = 16 << 20
"""GBNF and key text the cache keeps at most."""
MAX_CACHE_ENTRIES = 64


@dataclass(frozen=True)
class GrammarPlan:
    """What `build` will compile: a JSON schema (as its canonical text) or OpenAI's plain JSON mode."""

    key: str
    schema_text: str | None
    param: str


class GrammarCompiler:
    """Checks schemas against the limits, builds grammars off the worker, and caches them by size."""

    def __init__(self, vocab: Any, limits: SchemaLimits) -> None:
        self._vocab = vocab
        self.limits = limits
        self._cache: OrderedDict[str, str] = OrderedDict()
        self._cache_chars = 0
        self._lock = threading.Lock()

    def plan(self, options: GenerationOptions) -> GrammarPlan | None:
        """The grammar a request needs, after checking its schema; `UnsupportedRequest` past a limit."""
        if options.tools and options.tool_choice != "none":
            budget = SchemaBudget(self.limits)
            for index, function in tool_functions(list(options.tools)):
                check_schema(function.get("parameters") or {}, param="tools", limits=self.limits, budget=budget,
                             where=f"tools[{index}].function.parameters")
            schema = tool_output_schema(list(options.tools), options.tool_choice)
            return GrammarPlan(json.dumps(schema, sort_keys=True), json.dumps(schema), "tools")
        if options.json_schema is not None:
            check_schema(options.json_schema, param="response_format", limits=self.limits)
            text = json.dumps(options.json_schema, sort_keys=True)
            return GrammarPlan(text, text, "response_format")
        if options.json_object:
            return GrammarPlan("json_object", None, "response_format")
        return None

    def gbnf(self, plan: GrammarPlan) -> str:
        """The checked GBNF text for `plan`, from the cache or made now (seconds at most, usually ms)."""
        from llama_cpp.llama_grammar import JSON_GBNF, json_schema_to_gbnf

        with self._lock:
            cached = self._cache.get(plan.key)
            if cached is not None:
                self._cache.move_to_end(plan.key)
                return cached
        if plan.schema_text is None:
            gbnf = JSON_GBNF
        else:
            try:
                gbnf = json_schema_to_gbnf(plan.schema_text)
            except Exception as error:  # the converter raises whatever its code hits; all mean "not supported"
                raise UnsupportedRequest(
                    f"The JSON schema in '{plan.param}' cannot be turned into a grammar: {error}", plan.param
                ) from None
        if len(gbnf) > MAX_GBNF_CHARS:
            raise UnsupportedRequest(
                f"The JSON schema in '{plan.param}' makes a grammar of {len(gbnf)} characters; "
                f"at most {MAX_GBNF_CHARS} here.", plan.param,
            )
        self._parse_once(gbnf, plan.param)
        self._remember(plan.key, gbnf)
        return gbnf

    def build(self, plan: GrammarPlan) -> Any:
        """The `LlamaGrammar` for `plan`, for the in-process engine (llama-server takes the text)."""
        from llama_cpp.llama_grammar import LlamaGrammar

        return LlamaGrammar.from_string(self.gbnf(plan), verbose=False)

    def cached_chars(self) -> int:
        with self._lock:
            return self._cache_chars

    def _parse_once(self, gbnf: str, param: str) -> None:
        import llama_cpp

        sampler = llama_cpp.llama_sampler_init_grammar(self._vocab, gbnf.encode("utf-8"), b"root")
        if not sampler:
            raise UnsupportedRequest(
                f"The JSON schema in '{param}' makes a grammar llama.cpp cannot use "
                "(too many nested repetitions, or a repetition that can match nothing).", param,
            )
        llama_cpp.llama_sampler_free(sampler)

    def _remember(self, key: str, gbnf: str) -> None:
        with self._lock:
            if key in self._cache:
                return
            self._cache[key] = gbnf
            self._cache_chars += len(key) + len(gbnf)
            while self._cache and (self._cache_chars > MAX_CACHE_CHARS or len(self._cache) > MAX_CACHE_ENTRIES):
                dropped_key, dropped = self._cache.popitem(last=False)
                self._cache_chars -= len(dropped_key) + len(dropped)
