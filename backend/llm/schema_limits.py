"""Limits on the JSON schemas the embedded model turns into grammars, checked before any grammar is built.

Why each limit exists (measured on llama-cpp-python 0.3.36, SmolLM2-135M, 2 cores, 8 MB thread stacks):

- llama-cpp-python's converter (`llama_cpp/llama_grammar.py`) writes every count bound out in full:
  `minLength: N` becomes N copies of `char`, `maxLength: N` N nested optional groups, and the same for
  `minItems`/`maxItems` and `{m,n}` in a `pattern`. The GBNF text and the memory to build it grow with
  the bound: `minLength: 1e9` allocates until the kernel kills the process.
- llama.cpp's GBNF parser (`src/llama-grammar.cpp`) recurses once per nested group: a `maxLength` of
  20,000 overflows the thread's stack (the process segfaults), and beyond about 1,000 nested groups it
  refuses the grammar. So no count bound may exceed `max_count` (1,000, or the context if smaller).
- While sampling, llama.cpp checks every live grammar stack against the whole vocabulary for every token.
  A repetition whose item can match texts of different lengths (`(a?){0,100}`) keeps one stack per
  possible count, multiplied by the counts of the repetitions around it and added up over its siblings:
  `(a?){0,100}` costs 2 s per token and `((a{0,10}){0,10}){0,10}` 3 s, while `[a-z ]{0,1000}` runs at
  full speed. Such "ambiguous" repetitions get a small budget (`max_ambiguous`), patterns a length cap
  (each character is a position that can hold a live stack), and nested count bounds a product cap.
  JSON arrays, strings and objects are delimited (quotes, commas, brackets), so their counts are never
  ambiguous: nested `maxItems`/`maxLength` multiply only the size of the outputs allowed, not the cost.
- Since each count bound is written out, the GBNF grows with their sum (about 8 to 20 characters per
  unit): the sum over the whole request is capped (`max_total_count`), which caps the grammar's size.
- Nested *minimum* counts multiply the shortest output the grammar accepts; past what the context can
  hold, no answer can ever be valid, so such a schema is refused rather than run to the token limit.
- Size, node count and depth bound the converter's own work (it recurses in Python per level and emits
  rules per node) and the GBNF size; tool schemas are also written into the prompt, which holds
  `n_ctx` tokens, so a schema far larger than the context cannot be meant for this model.

Every check walks the schema once, stopping at the first limit passed, so a refusal costs well under a
millisecond and runs in the request path, before the request joins the model's queue.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from backend.llm.port import UnsupportedRequest

COUNT_KEYWORDS = ("minLength", "maxLength", "minItems", "maxItems", "minProperties", "maxProperties")
EXPANDED_KEYWORDS = ("minLength", "maxLength", "minItems", "maxItems")
"""The bounds the converter writes out (it ignores the property counts)."""
MINIMUM_KEYWORDS = ("minLength", "minItems")
"""The minimums the converter writes out, which multiply the shortest output through nesting."""
DATA_KEYWORDS = frozenset({"const", "enum", "default", "examples"})
"""Values under these are data, not schemas: counted for size, not read as bounds."""

PARSER_MAX_COUNT = 1000
"""Nested groups llama.cpp's parser accepts (measured: 1,000 passes, 1,100 is refused, 20,000 segfaults)."""


@dataclass(frozen=True)
class SchemaLimits:
    """What a schema may hold for a model with a context of `context_tokens`."""

    context_tokens: int
    max_chars: int
    """Characters of the schema's JSON (keys, strings, punctuation; numbers count 8)."""
    max_nodes: int
    """JSON values in the schema (objects, arrays, strings, numbers...)."""
    max_depth: int
    """Nesting of JSON containers, and of groups within a pattern."""
    max_count: int
    """Any single count bound, and the product of the counts nested in one pattern."""
    max_total_count: int
    """Sum of all the count bounds the converter writes out, over the whole request."""
    max_ambiguous: int
    """Sum over a pattern's repetitions of variable-length items of their count times the counts around them."""
    max_pattern_chars: int
    max_min_output: int
    """Characters the shortest valid output may need: what the context can hold at most."""

    @classmethod
    def for_context(cls, n_ctx: int, max_token_bytes: int) -> SchemaLimits:
        """Limits derived from the context size and the longest token (in bytes) of the vocabulary."""
        return cls(
            context_tokens=n_ctx,
            # Four characters of schema per context token covers every schema whose tools fit the prompt.
            max_chars=min(max(4 * n_ctx, 16 * 1024), 256 * 1024),
            max_nodes=min(max(n_ctx // 2, 256), 8192),
            max_depth=32,
            max_count=min(PARSER_MAX_COUNT, n_ctx),
            max_total_count=4 * min(PARSER_MAX_COUNT, n_ctx),
            max_ambiguous=8,
            max_pattern_chars=128,
            max_min_output=n_ctx * max(max_token_bytes, 1),
        )


class _Refusal(Exception):
    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


class SchemaBudget:
    """Counts size and nodes over several schemas of one request (every tool's parameters)."""

    def __init__(self, limits: SchemaLimits) -> None:
        self.limits = limits
        self.chars = 0
        self.nodes = 0
        self.total_count = 0

    def spend_count(self, count: int, path: str) -> None:
        self.total_count += count
        if self.total_count > self.limits.max_total_count:
            raise _Refusal(f"its count bounds add up to more than {self.limits.max_total_count} (at {path}).")


def check_schema(
    schema: Any, *, param: str, where: str = "$", limits: SchemaLimits, budget: SchemaBudget | None = None
) -> None:
    """Refuse, as `UnsupportedRequest` naming `param`, a schema past any limit; `where` prefixes the paths shown."""
    walk = _Walk(budget or SchemaBudget(limits))
    try:
        walk.value(schema, where, depth=0, min_output=1, is_schema=True)
    except _Refusal as refusal:
        raise UnsupportedRequest(f"The JSON schema in '{param}' is too large for this server: {refusal.what}",
                                 param) from None


class _Walk:
    def __init__(self, budget: SchemaBudget) -> None:
        self.budget = budget
        self.limits = budget.limits

    def _spend(self, chars: int) -> None:
        budget, limits = self.budget, self.limits
        budget.nodes += 1
        budget.chars += chars
        if budget.nodes > limits.max_nodes:
            raise _Refusal(f"it has more than {limits.max_nodes} values.")
        if budget.chars > limits.max_chars:
            raise _Refusal(f"it is longer than {limits.max_chars} characters.")

    def value(self, value: Any, path: str, *, depth: int, min_output: int, is_schema: bool) -> None:
        if depth > self.limits.max_depth:
            raise _Refusal(f"it nests deeper than {self.limits.max_depth} levels at {path}.")
        if isinstance(value, dict):
            self._spend(2)
            if is_schema:
                min_output = self._bounds(value, path, min_output)
            for key, item in value.items():
                self.budget.chars += len(str(key)) + 4
                self.value(item, f"{path}.{key}", depth=depth + 1, min_output=min_output,
                           is_schema=is_schema and key not in DATA_KEYWORDS)
        elif isinstance(value, list):
            self._spend(2)
            for index, item in enumerate(value):
                self.value(item, f"{path}[{index}]", depth=depth + 1, min_output=min_output, is_schema=is_schema)
        elif isinstance(value, str):
            self._spend(len(value) + 3)
        else:
            self._spend(8)

    def _bounds(self, schema: dict[str, Any], path: str, min_output: int) -> int:
        """Check one schema object's own bounds; returns the shortest output its subschemas multiply."""
        limits = self.limits
        for keyword in COUNT_KEYWORDS:
            if keyword not in schema:
                continue
            bound = schema[keyword]
            if isinstance(bound, dict):
                continue  # a property named like the keyword, inside `properties`
            if not isinstance(bound, int) or isinstance(bound, bool) or bound < 0:
                raise _Refusal(f"{keyword} at {path} must be a non-negative integer.")
            if bound > limits.max_count:
                raise _Refusal(f"{keyword} at {path} is {bound}; at most {limits.max_count} here.")
            if keyword in EXPANDED_KEYWORDS:
                self.budget.spend_count(bound, path)
            if keyword in MINIMUM_KEYWORDS:
                min_output *= bound
                if min_output > limits.max_min_output:
                    raise _Refusal(
                        f"the nested minimums down to {keyword} at {path} need at least {min_output} characters "
                        f"of output; this model's context of {limits.context_tokens} tokens holds at most "
                        f"{limits.max_min_output}."
                    )
        pattern = schema.get("pattern")
        if isinstance(pattern, str):
            _check_pattern(pattern, f"{path}.pattern", self.budget)
        return min_output


# --- patterns: the subset of regular expressions the converter understands

@dataclass(frozen=True)
class _Shape:
    min_len: int
    max_len: int | None
    """None: unbounded."""
    product: int
    """Largest product of nested counts within."""
    ambiguous: int
    """Live stacks its variable-length repetitions may keep (0 when none)."""

    @property
    def variable(self) -> bool:
        return self.max_len != self.min_len or self.min_len == 0


_ONE_CHAR = _Shape(1, 1, 1, 0)


def _check_pattern(pattern: str, path: str, budget: SchemaBudget) -> None:
    limits = budget.limits
    if len(pattern) > limits.max_pattern_chars:
        raise _Refusal(f"the pattern at {path} is {len(pattern)} characters; at most {limits.max_pattern_chars} here.")
    body = pattern[1:-1] if pattern.startswith("^") and pattern.endswith("$") else pattern
    _PatternReader(body, path, budget).read()


class _PatternReader:
    """Reads a pattern as the converter does, measuring counts; syntax it rejects is left for it to report."""

    def __init__(self, text: str, path: str, budget: SchemaBudget) -> None:
        self.text = text
        self.path = path
        self.budget = budget
        self.limits = budget.limits
        self.i = 0

    def read(self) -> None:
        self._alternation(depth=0)

    def _alternation(self, depth: int) -> _Shape:
        if depth > self.limits.max_depth:
            raise _Refusal(f"the pattern at {self.path} nests groups deeper than {self.limits.max_depth}.")
        branches = [self._sequence(depth)]
        while self.i < len(self.text) and self.text[self.i] == "|":
            self.i += 1
            branches.append(self._sequence(depth))
        maxima = [branch.max_len for branch in branches]
        return _Shape(
            min(branch.min_len for branch in branches),
            None if None in maxima else max(m for m in maxima if m is not None),
            max(branch.product for branch in branches),
            sum(branch.ambiguous for branch in branches),
        )

    def _sequence(self, depth: int) -> _Shape:
        min_len, product, ambiguous = 0, 1, 0
        max_len: int | None = 0
        while self.i < len(self.text) and self.text[self.i] not in "|)":
            item = self._quantified(self._atom(depth))
            min_len += item.min_len
            max_len = None if max_len is None or item.max_len is None else max_len + item.max_len
            product = max(product, item.product)
            ambiguous += item.ambiguous
        if ambiguous > self.limits.max_ambiguous:
            raise self._ambiguous()
        return _Shape(min_len, max_len, product, ambiguous)

    def _atom(self, depth: int) -> _Shape:
        text, char = self.text, self.text[self.i]
        self.i += 1
        if char == "(":
            shape = self._alternation(depth + 1)
            if self.i < len(text) and text[self.i] == ")":
                self.i += 1
            return shape
        if char == "[":
            while self.i < len(text) and text[self.i] != "]":
                self.i += 2 if text[self.i] == "\\" else 1
            self.i += 1
        elif char == "\\":
            self.i += 1
        return _ONE_CHAR

    def _quantified(self, item: _Shape) -> _Shape:
        text = self.text
        while self.i < len(text) and text[self.i] in "*+?{":
            char = text[self.i]
            self.i += 1
            if char == "{":
                end = text.find("}", self.i)
                if end < 0:
                    return item  # the converter reports the unbalanced brace
                low, high = self._counts(text[self.i:end])
                self.i = end + 1
            else:
                low, high = {"*": (0, None), "+": (1, None), "?": (0, 1)}[char]
            item = self._repeat(item, low, high)
        return item

    def _counts(self, inside: str) -> tuple[int, int | None]:
        parts = [part.strip() for part in inside.split(",")]
        try:
            low = int(parts[0]) if parts[0] else 0
            high = low if len(parts) == 1 else (int(parts[1]) if parts[1] else None)
        except ValueError:
            return 0, 1  # not a count: the converter reports it
        for count in (low, high):
            if count is not None and (count < 0 or count > self.limits.max_count):
                raise _Refusal(f"the pattern at {self.path} repeats {count} times; at most "
                               f"{self.limits.max_count} here.")
        return low, high

    def _repeat(self, item: _Shape, low: int, high: int | None) -> _Shape:
        # `*` and `+` become right-recursive rules that keep one stack whatever the count: they count once.
        count = max(high if high is not None else low, 1)
        if count > 1:
            self.budget.spend_count(count, self.path)
        product = item.product * count
        if product > self.limits.max_count:
            raise _Refusal(f"the pattern at {self.path} nests repetitions whose counts multiply to {product}; "
                           f"at most {self.limits.max_count} here.")
        ambiguous = item.ambiguous * count
        if item.variable and count > 1:
            ambiguous += count
        if ambiguous > self.limits.max_ambiguous:
            raise self._ambiguous()
        max_len = None if item.max_len is None or high is None else item.max_len * high
        return _Shape(item.min_len * low, max_len, product, ambiguous)

    def _ambiguous(self) -> _Refusal:
        return _Refusal(
            f"the pattern at {self.path} repeats items of varying length too often (the counts of such "
            f"repetitions, multiplied through nesting and added up, may be {self.limits.max_ambiguous} at most)."
        )
