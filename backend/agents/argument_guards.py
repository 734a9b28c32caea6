"""Deterministic argument guards: the model proposes a tool call, these fill or correct its arguments.

A small model copies numbers wrongly, paraphrases an expression or forgets the pasted data, so the main
argument of each tool is taken from the question when the question holds it: the maths expression
(rewritten into the words `math_calc` reads), the SQL statement or a templated SELECT, the pasted
JSON/CSV, the place name, the code block. A follow-up step ("then multiply the result by 4") is
written with the previous result in it. Every correction is named, for the trace.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from backend.agents.answer_check import Evidence, decisive_values
from backend.agents.signals import Signals, find_places, find_sql_statement
from backend.agents.sql_templates import sql_from_wording

MAX_ARGUMENT_CHARS = 100_000
"""A guard never builds an argument longer than this (the tools' own limits are lower or equal)."""

MAIN_ARGUMENT = {
    "math_calc": "expression", "sql_query": "query", "data_analysis": "data", "weather": "location",
    "python_code": "code", "web_search": "query", "wikipedia": "query", "rag_retrieval": "query",
}
_STEP_SPLIT = re.compile(r"\s*(?:,\s*|;\s*|\.\s+)?\b(?:and then|then|after that|afterwards|next)\b[,:]?\s*",
                         re.IGNORECASE)
_LEADING = re.compile(
    r"^\s*(?:(?:please|kindly|now|ok|so|first(?:ly)?|step by step|could you|can you|would you|i need to|"
    r"i want to|help me)[\s,:]+)*(?:(?:what\s+is|what's|whats|how\s+much\s+is|compute|calculate|find|work\s+out|"
    r"determine|give\s+me|tell\s+me|get|evaluate)\s+)?(?:the\s+)?(?:value\s+of\s+|result\s+of\s+)?",
    re.IGNORECASE,
)
_TRAILING = re.compile(r"\s+(?:for me|please|exactly|for us|precisely)\s*$|[\s?.,;:]+$|(?<![\d)])!+$", re.IGNORECASE)
_WORD_OPERATORS = (
    (r"\bmultiplied by\b|\btimes\b", "*"), (r"\bdivided by\b|\bover\b", "/"), (r"\bplus\b", "+"),
    (r"\bminus\b", "-"), (r"\bto the power of\b|\braised to(?: the power of)?\b", "^"), (r"\bsquared\b", "^2"),
    (r"\bcubed\b", "^3"), (r"\bmod(?:ulo)?\b", "%"),
)
_REFERENCE = r"(?:it|that|this|the result|the answer|the value|the number|the total|this number|that number)"


@dataclass(frozen=True)
class Guarded:
    arguments: dict[str, Any]
    corrections: tuple[str, ...] = ()


def question_steps(question: str) -> list[str]:
    """The question split at its sequential cues: "integrate …, then multiply the result by 4" is two steps."""
    words = question[:20_000]
    return [part.strip(" ,.;") for part in _STEP_SPLIT.split(words) if part and part.strip(" ,.;")]


def math_expression(text: str) -> str | None:
    """The maths in a sentence, in the words `math_calc` reads ("factorial of 12" becomes "12!")."""
    phrase = _LEADING.sub("", text.strip(), count=1).strip()
    for _ in range(4):  # "…for me?" ends in two trailers
        phrase = _TRAILING.sub("", phrase).strip()
    if not phrase:
        return None
    phrase = re.sub(r"\b(?:the\s+)?factorial\s+of\s+(\d+)", r"\1!", phrase, flags=re.IGNORECASE)
    phrase = re.sub(r"\b(\d+)\s+factorial\b", r"\1!", phrase, flags=re.IGNORECASE)
    phrase = re.sub(r"(\d+(?:\.\d+)?)\s*(?:%|percent)\s+of\s+", r"\1/100 * ", phrase, flags=re.IGNORECASE)
    phrase = re.sub(r"\b(?:the\s+)?square\s+root\s+of\s+(\S+)", r"sqrt(\1)", phrase, flags=re.IGNORECASE)
    phrase = re.sub(r"\b(?:the\s+)?cube\s+root\s+of\s+(\S+)", r"(\1)^(1/3)", phrase, flags=re.IGNORECASE)
    if digits := re.search(r"\bpi\s+to\s+(\d+)\s+(?:decimal\s+)?digits\b", phrase, re.IGNORECASE):
        return f"numeric value of pi to {digits.group(1)} digits"
    if digits := re.search(r"\b(\S+)\s+to\s+(\d+)\s+(?:decimal\s+)?digits\b", phrase, re.IGNORECASE):
        return f"numeric value of {digits.group(1)} to {digits.group(2)} digits"
    phrase = re.sub(r"\bwith respect to\s+([a-z])\b", "", phrase, flags=re.IGNORECASE).strip()
    phrase = re.sub(r"\b(?:approaches|goes to|tends to)\b", "->", phrase, flags=re.IGNORECASE)
    phrase = re.sub(r"\binfinity\b", "oo", phrase, flags=re.IGNORECASE)
    for pattern, operator in _WORD_OPERATORS:
        phrase = re.sub(pattern, operator, phrase, flags=re.IGNORECASE)
    phrase = re.sub(r"^(?:all\s+)?solutions?\s+of\s+", "solve ", phrase, flags=re.IGNORECASE)
    phrase = re.sub(r"^(?:the\s+)?(?:roots?|zeros?)\s+of\s+", "solve ", phrase, flags=re.IGNORECASE)
    phrase = re.sub(r"^(?:the\s+)?(?:sum|product)\s+of\s+", "", phrase, flags=re.IGNORECASE)
    if not re.search(r"[\d(]|\b[a-z]\b|\bpi\b", phrase):
        return None
    return phrase[:2000]


def follow_up_expression(step: str, previous: str) -> str | None:
    """A step that works on the previous result ("multiply it by 4", "square the answer"), written out."""
    value = f"({previous})"
    text = re.sub(r"[\s?.]+$|(?<![\d)])!+$", "", step.strip())
    patterns: tuple[tuple[str, Callable[[re.Match[str]], str]], ...] = (
        (rf"\bmultiply {_REFERENCE} by (\S+)", lambda m: f"{value} * {m.group(1)}"),
        (rf"\bdivide {_REFERENCE} by (\S+)", lambda m: f"{value} / {m.group(1)}"),
        (rf"\badd (\S+) to {_REFERENCE}|\b{_REFERENCE} plus (\S+)|\badd (\S+)$", lambda m: f"{value} + {_first(m)}"),
        (rf"\bsubtract (\S+) from {_REFERENCE}|\b{_REFERENCE} minus (\S+)|^minus (\S+)|\bsubtract (\S+)$",
         lambda m: f"{value} - {_first(m)}"),
        (rf"\bsquare {_REFERENCE}|\b{_REFERENCE} squared", lambda m: f"{value}^2"),
        (rf"\bcube {_REFERENCE}|\b{_REFERENCE} cubed", lambda m: f"{value}^3"),
        (rf"\bsquare root of {_REFERENCE}|\btake the square root", lambda m: f"sqrt{value}"),
        (rf"(\d+(?:\.\d+)?)\s*(?:%|percent) of {_REFERENCE}", lambda m: f"{m.group(1)}/100 * {value}"),
        (rf"\bround {_REFERENCE}(?: to (?:an |the nearest )?integer| to a whole number)?", lambda m: f"round{value}"),
        (rf"\b(?:raise|take) {_REFERENCE} to the power (?:of )?(\S+)", lambda m: f"{value}^{m.group(1)}"),
        (r"^(?:multiply|times) by (\S+)", lambda m: f"{value} * {m.group(1)}"),
        (r"^divide by (\S+)", lambda m: f"{value} / {m.group(1)}"),
    )
    for pattern, build in patterns:
        match = re.search(pattern, text, re.IGNORECASE)
        if match:
            return build(match)
    return None


def _first(match: re.Match[str]) -> str:
    return next(group for group in match.groups() if group)


def previous_value(question: str, previous: Sequence[Evidence]) -> str | None:
    """The value of the last successful result: what "the result" of a follow-up step means."""
    for evidence in reversed(previous):
        if not evidence.ok:
            continue
        data = evidence.data if isinstance(evidence.data, dict) else {}
        if evidence.tool == "math_calc" and isinstance(data.get("result"), str):
            single = re.fullmatch(r"[A-Za-z]\w* = ([^=]+)", data["result"])  # one solution: "x = 4"
            return single.group(1).strip() if single else str(data["result"])
        values = decisive_values(question, evidence)
        if values:
            return values[0]
    return None


def arguments_for(
    tool: str, question: str, signals: Signals, previous: Sequence[Evidence] = ()
) -> dict[str, Any] | None:
    """The arguments the guard sends for `tool` when the model proposed none (None: the question holds none)."""
    done = [evidence for evidence in previous if evidence.tool == tool]
    if tool == "math_calc":
        expression = _math_for_step(question, previous)
        return {"expression": expression} if expression else None
    if tool == "sql_query":
        steps = question_steps(question)
        index = step_index(steps, done, previous)
        if index >= len(steps):
            return None
        single = len(steps) == 1 and not done
        statement = (signals.sql_statement if single else None) or find_sql_statement(steps[index]) \
            or sql_from_wording(steps[index]) or (sql_from_wording(question) if single else None)
        return {"query": statement} if statement else None
    if tool == "data_analysis":
        return {"data": signals.pasted_data[:MAX_ARGUMENT_CHARS]} if signals.pasted_data else None
    if tool == "weather":
        places = list(signals.places) or find_places(question)
        asked = {str(evidence.arguments.get("location", "")).lower() for evidence in done}
        remaining = [place for place in places if place.lower() not in asked]
        return {"location": remaining[0][:120]} if remaining else None
    if tool == "python_code":
        code = code_in(question)
        return {"code": code} if code else None
    if tool == "wikipedia":
        topic = wikipedia_topic(question)
        return {"query": (topic or _plain_query(question))[:300]}
    if tool in ("web_search", "rag_retrieval"):
        limit = 400 if tool == "web_search" else 1000
        return {"query": _plain_query(question)[:limit]}
    return None


def guard_arguments(
    tool: str, proposed: dict[str, Any], question: str, signals: Signals, previous: Sequence[Evidence] = ()
) -> Guarded:
    """The arguments to run: the question's own value wins over the model's where the question has one."""
    arguments = {key: value for key, value in proposed.items() if isinstance(key, str)}
    main = MAIN_ARGUMENT.get(tool)
    expected = arguments_for(tool, question, signals, previous)
    if main is None or expected is None:
        return Guarded(arguments)
    given = arguments.get(main)
    wanted = expected[main]
    if tool in ("web_search", "rag_retrieval") and isinstance(given, str) and given.strip():
        return Guarded(arguments)  # a search query in the model's words is fine
    if tool == "python_code" and isinstance(given, str) and given.strip() and not code_in(question, strict=True):
        return Guarded(arguments)  # the model wrote the program the question asked for
    if given == wanted:
        return Guarded(arguments)
    arguments[main] = wanted
    shown = "missing" if not given else _short(str(given))
    return Guarded(arguments, (f"{tool}.{main}: {shown} -> {_short(str(wanted))} (from the question)",))


def step_index(steps: Sequence[str], done: Sequence[Evidence], previous: Sequence[Evidence]) -> int:
    """Which step a tool's next call is for: in a sequence ("…, then …") the steps run in order, one call
    each, whatever the tool; otherwise each call of the same tool takes the next step."""
    return len(previous) if len(steps) > 1 else len(done)


def _math_for_step(question: str, previous: Sequence[Evidence]) -> str | None:
    """The expression of the next maths step: the first from the question, later ones on the last result."""
    steps = question_steps(question)
    index = step_index(steps, [evidence for evidence in previous if evidence.tool == "math_calc"], previous)
    if index >= len(steps):
        return None
    step = steps[index]
    before = previous_value(question, previous) if previous else None
    if before is not None:
        follow_up = follow_up_expression(step, before)
        if follow_up:
            return follow_up
    return math_expression(step)


def code_in(question: str, strict: bool = False) -> str | None:
    """The program pasted in the question: a fenced block, or what follows "run this code:"."""
    fenced = re.search(r"```(?:python|py)?\s*\n?([\s\S]+?)```", question[:MAX_ARGUMENT_CHARS])
    if fenced:
        return fenced.group(1).strip() or None
    after = re.search(r"\b(?:code|script|snippet|program)\b[^:\n]{0,60}:\s*([\s\S]+)$", question[:MAX_ARGUMENT_CHARS],
                      re.IGNORECASE)
    if after:
        return after.group(1).strip() or None
    if strict:
        return None
    inline = re.search(r"\b(print\([\s\S]+\))\s*$", question[:MAX_ARGUMENT_CHARS])
    return inline.group(1) if inline else None


def wikipedia_topic(question: str) -> str | None:
    patterns = (
        r"\blook up (?:the )?(.+?) on wikipedia", r"\bwikipedia (?:article|page|summary|entry) (?:on|of|about|for) "
        r"(?:the )?(.+?)(?:[,.?]| and |$)", r"\bpopulation of ([A-Z][\w'-]+(?: [A-Z][\w'-]+)?)",
        r"\babout (.+?) on wikipedia", r"\blook up (?:the )?(.+?)(?:[,.?]| and | then |$)",
    )
    for pattern in patterns:
        match = re.search(pattern, question[:2000], re.IGNORECASE)
        if match and match.group(1).strip():
            return match.group(1).strip()
    return None


def _plain_query(question: str) -> str:
    return " ".join(question.split())[:1000] or "?"


def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
