"""The router's first tier: deterministic signals read from the question (which tools it needs, and how).

Every pattern here is linear-time (no nested quantifiers), and the text is cut to `MAX_SCAN_CHARS`
before any of them runs; pasted data is found with one JSON parse or one CSV sniff of bounded input.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

MAX_SCAN_CHARS = 20_000
"""Characters of the question the wording patterns read (cues sit in the words, not in pasted data)."""
MAX_DATA_CHARS = 2_000_000
"""Characters of pasted JSON or CSV the detector parses at most (data_analysis's own limit)."""

SAMPLE_TABLES = ("customers", "products", "orders", "order_items")

_MATH_STRONG = re.compile(
    r"\b(integrate|integral|antiderivative|derivative|differentiate|d/dx|factorial|square root|sqrt|cube root|"
    r"logarithm|prime factors|gcd|lcm|modulo|taylor series|series of|numeric value of|digits of pi|"
    r"pi to \d+ digits)\b",
    re.IGNORECASE,
)
_MATH_WEAK = re.compile(
    r"\b(limit|solve|equation|simplify|expand|factori[sz]e|factor|log|ln|sin|cos|tan|exp|percent of|"
    r"to the power|squared|cubed|calculate|compute|evaluate|arithmetic|times|divided by|plus|minus|multiply|"
    r"divide|double|halve|subtract)\b",
    re.IGNORECASE,
)
_MATH_OPERAND = re.compile(r"\d|\b[a-z]\s*[\^=+*/-]\s*[\w(]|\bpi\b|\be\^", re.IGNORECASE)
_CREATIVE = re.compile(
    r"^\s*(please\s+)?(write|compose|tell me|draft)\b[^.?!\n]{0,40}\b(poem|story|song|haiku|limerick|joke|letter|"
    r"essay)\b",
    re.IGNORECASE,
)
_ARITHMETIC = re.compile(
    r"\d\s*[-+*/^%×÷]\s*\(?\s*(?:\d|\.\d|[a-z]\b)|\d\s*%\s*of\b|\b\d+\s*!|\b[a-z]\^\d|\d[a-z]\b\s*[-+=]|"  # noqa: RUF001 -- the signs people type for times and divide
    r"\bx\s*[-+*/^=]\s*\d"
)
_SQL_STATEMENT = re.compile(r"\b(select\s+[\s\S]{1,2000}?\bfrom\b|with\s+\w+\s+as\s*\()", re.IGNORECASE)
_SQL_WORDS = re.compile(r"\b(sql|sqlite|database|db|shop data|sample data(base)?)\b", re.IGNORECASE)
_TABLE_WORDS = re.compile(
    r"\b(" + "|".join(SAMPLE_TABLES) + r"|order items|customer|product|order|tables?|rows|columns|schema)\b",
    re.IGNORECASE,
)
_SHOP_SUPERLATIVE = re.compile(
    r"\b(most expensive|cheapest|priciest|least expensive|best[- ]selling|top[- ]selling)\s+(products?|items?)\b|"
    r"\b(products?|items?)\b[\s\S]{0,60}?\b(most expensive|cheapest|priciest|costs? the most|costs? the least)\b",
    re.IGNORECASE,
)
_TABLE_QUESTION = re.compile(
    r"\b(" + "|".join(SAMPLE_TABLES) + r")\b[\s\S]{0,200}?\b(how many|list|count|which|top|most|least|average|"
    r"total|show|per|by)\b|\b(how many|list|count|which|top|most|least|average|total|show)\b[\s\S]{0,200}?\b("
    + "|".join(SAMPLE_TABLES) + r")\b",
    re.IGNORECASE,
)
_DATA_WORDS = re.compile(
    r"\b(json|csv|dataset|this data|the data|these numbers|statistics|average|mean|median|sum of|total of|"
    r"analy[sz]e|analysis)\b",
    re.IGNORECASE,
)
_DOCUMENT_WORDS = re.compile(
    r"\b(my|our|the uploaded|uploaded|attached)\s+(files?|uploads?|documents?|docs?|pdfs?|notes|reports?|"
    r"papers?|contracts?|manuals?|handbooks?|guides?|polic(?:y|ies)|invoices?|statements?|slides?|"
    r"spreadsheets?)\b|\bin (my|the) (file|document|pdf|upload)s?\b|\bi uploaded\b",
    re.IGNORECASE,
)
_WEATHER_WORDS = re.compile(
    r"\b(weather|forecast|temperature|rain(ing|y)?|snow(ing|y)?|sunny|humid(ity)?|wind(y)?|degrees outside|"
    r"umbrella)\b|\bhow (hot|cold|warm|chilly)\b|\b(hot|cold|warm) (is it|will it be)\b",
    re.IGNORECASE,
)
_CAPITALISED = r"[A-Z][\w'’.-]*"  # noqa: RUF001 -- typographic apostrophes, as phones type them
_PLACE = re.compile(
    rf"\b(?:in|for|at|of|and)\s+({_CAPITALISED}(?:[ ,]+{_CAPITALISED}){{0,3}}"
    rf"(?:(?:\s*,\s*|\s+and\s+|\s*&\s*)(?:in\s+)?{_CAPITALISED}(?:\s+{_CAPITALISED}){{0,2}}){{0,6}})"
)
_CODE_WORDS = re.compile(
    r"```|\b(run|execute)\s+(this|the|my|some|a|following)?\s*(python|code|script|program|snippet)\b|"
    r"\bpython (code|script|program)\b|\bwrite and run\b|\bdef \w+\(|\bprint\(",
    re.IGNORECASE,
)
_CURRENT_STRONG = re.compile(
    r"\b(latest|news|headlines|just announced|search the web|web search|search online|google|look (it )?up online|"
    r"stock price|share price|current (price|version|release|president|ceo|prime minister|events?))\b",
    re.IGNORECASE,
)
_CURRENT_WEAK = re.compile(
    r"\b(today'?s|this week|this month|this year|currently|recent(ly)?|right now|yesterday|last night|"
    r"who won|score of)\b",
    re.IGNORECASE,
)
_WIKI_WORDS = re.compile(r"\b(wikipedia|encyclop(a)?edia|look up|population of)\b", re.IGNORECASE)

_SEQUENTIAL = re.compile(
    r"\b(then|after that|afterwards|next,|step by step|first\b[\s\S]{0,200}?\bsecond|if|depending on|"
    r"based on|use (the|that|this) result|with (the|that) result|the result)\b",
    re.IGNORECASE,
)
_PARALLEL_STRONG = re.compile(r"\b(compare|comparison|both|each of|all of|as well as|comprehensive)\b", re.IGNORECASE)
_PARALLEL = re.compile(r"\b(and|also|both|all|compare|comparison|comprehensive|as well as|plus|together)\b",
                       re.IGNORECASE)


@dataclass(frozen=True)
class Signals:
    """What the rules found: the tools the question needs, best first, and its shape."""

    tools: tuple[str, ...] = ()
    reasons: tuple[str, ...] = ()
    sequential: bool = False
    parallel: bool = False
    parallel_strong: bool = False
    """Compare, both, each of…: the same tool may run once per thing named."""
    place: str | None = None
    places: tuple[str, ...] = ()
    asks: int = 1
    """Clauses joined by "and"/"also" that each need a tool of their own (two maths questions in one)."""
    pasted_data: str | None = None
    sql_statement: str | None = None
    document_names: tuple[str, ...] = field(default=())


def _names_document(filename: str, text: str) -> bool:
    """`budget.csv` is named by "budget.csv", and by "budget" as a word when the stem is long enough to mean it."""
    lowered = text.lower()
    if filename and filename.lower() in lowered:
        return True
    stem = filename.rsplit(".", 1)[0].lower()
    return len(stem) >= 4 and re.search(rf"\b{re.escape(stem)}\b", lowered) is not None


def read_signals(question: str, document_names: Sequence[str] = ()) -> Signals:
    """The deterministic signals of one question; `document_names` are the user's own file names."""
    text = question[:MAX_SCAN_CHARS]
    tools: list[str] = []
    reasons: list[str] = []

    def found(tool: str, reason: str) -> None:
        if tool not in tools:
            tools.append(tool)
        reasons.append(reason)

    pasted = find_pasted_data(question)
    words_outside_data = text.replace(pasted, " ") if pasted else text
    sql = find_sql_statement(words_outside_data)
    if sql:
        found("sql_query", "an SQL statement")
    elif _SQL_WORDS.search(words_outside_data) and _TABLE_WORDS.search(words_outside_data):
        found("sql_query", "SQL wording about a table of the sample database")
    elif (_TABLE_QUESTION.search(words_outside_data) or _SHOP_SUPERLATIVE.search(words_outside_data)) and not pasted:
        found("sql_query", "a question about a table of the sample database")
    if pasted:
        found("data_analysis", "pasted JSON or CSV data")
    names = tuple(name for name in document_names if _names_document(name, words_outside_data))
    if names:
        found("rag_retrieval", f"names the user's document {names[0]}")
    elif _DOCUMENT_WORDS.search(words_outside_data):
        found("rag_retrieval", "asks about the user's documents")
    creative = bool(_CREATIVE.search(words_outside_data))
    places = find_places(words_outside_data)
    place = places[0] if places else None
    if _WEATHER_WORDS.search(words_outside_data) and place and not creative:
        found("weather", f"weather wording and a place ({place})")
    if _CODE_WORDS.search(words_outside_data):
        found("python_code", "code to run")
    if not sql and not creative and (
        _ARITHMETIC.search(words_outside_data) or _MATH_STRONG.search(words_outside_data)
        or (_MATH_WEAK.search(words_outside_data) and _MATH_OPERAND.search(words_outside_data))
    ):
        found("math_calc", "a maths expression or maths wording")
    if _CURRENT_STRONG.search(words_outside_data) or (not tools and _CURRENT_WEAK.search(words_outside_data)):
        found("web_search", "asks about current events")
    if _WIKI_WORDS.search(words_outside_data):
        found("wikipedia", "asks for Wikipedia")
    return Signals(
        tools=tuple(tools), reasons=tuple(reasons), asks=_independent_asks(words_outside_data, tools),
        sequential=bool(_SEQUENTIAL.search(words_outside_data)),
        parallel=bool(_PARALLEL.search(words_outside_data)),
        parallel_strong=bool(_PARALLEL_STRONG.search(words_outside_data)),
        place=place, places=tuple(places), pasted_data=pasted, sql_statement=sql, document_names=names,
    )


_REPEATABLE = frozenset({"math_calc", "sql_query", "wikipedia", "web_search"})
"""Tools one question may ask twice for different things; code and places are read whole."""
_ASK_SPLIT = re.compile(r"\s*(?:,\s*)?\b(?:and also|and|also|as well as)\b\s*|\?\s+", re.IGNORECASE)


def _independent_asks(text: str, tools: Sequence[str]) -> int:
    """How many clauses of the question each signal a tool by themselves (1 when it is not split)."""
    if len(tools) != 1 or tools[0] not in _REPEATABLE or len(text) > 4000:
        return 1
    clauses = [part for part in _ASK_SPLIT.split(text) if part and len(part.split()) >= 2]
    if len(clauses) < 2:
        return 1
    asking = sum(1 for clause in clauses if read_signals(clause[:1000]).tools)
    return max(asking, 1)


def find_sql_statement(text: str) -> str | None:
    """The first SELECT (or WITH … SELECT) statement in the text, up to its `;`, closing fence or line break pair."""
    match = _SQL_STATEMENT.search(text[:MAX_SCAN_CHARS])
    if not match:
        return None
    rest = text[match.start():match.start() + 10_000]
    end = len(rest)
    for stop in (";", "```", "\n\n"):
        index = rest.find(stop)
        if index != -1:
            end = min(end, index)
    statement = rest[:end].strip().rstrip("?.")
    return statement or None


def find_place(text: str) -> str | None:
    """The first place name the question asks about (`Paris`, `Portland, Oregon`), or None."""
    places = find_places(text)
    return places[0] if places else None


def find_places(text: str) -> list[str]:
    """Capitalised place names after `in`/`for`/`at`/`of`, a list split at `and` (`Paris and London`).

    `Portland, Oregon` stays one place; `Amsterdam, Brussels and Luxembourg` are three.
    """
    places: list[str] = []
    for match in _PLACE.finditer(text[:MAX_SCAN_CHARS]):
        group = match.group(1)
        listed = bool(re.search(r"\s+and\s+|&", group))
        parts = re.split(r"\s*,\s*|\s+and\s+|\s*&\s*", group) if listed else [group]
        for part in parts:
            words = [word.strip(".'’") for word in part.split() if word.strip(".'’")]  # noqa: RUF001 -- typographic apostrophes, as phones type them
            if words and words[0] == "in":
                words = words[1:]
            while words and words[-1].lower() in _NOT_PLACE_WORDS:
                words.pop()
            if words and words[0].lower() not in _NOT_PLACE_WORDS:
                place = " ".join(words).replace(" ,", ",")
                if place not in places:
                    places.append(place)
    return places


_NOT_PLACE_WORDS = frozenset(
    [
        "i", "the", "a", "an", "my", "today", "tomorrow", "monday", "tuesday", "wednesday", "thursday",
        "friday", "saturday", "sunday", "celsius", "fahrenheit", "json", "csv", "sql", "python", "what", "how",
        "is", "it", "this", "that", "and", "then", "also",
    ]
)


def find_pasted_data(text: str) -> str | None:
    """Pasted JSON (an object or array that parses) or CSV (a header and rows with the same commas)."""
    bounded = text[:MAX_DATA_CHARS]
    fenced = re.search(r"```(?:json|csv)?\s*\n", bounded)
    if fenced:
        end = bounded.find("```", fenced.end())
        block = bounded[fenced.end(): end if end != -1 else len(bounded)].strip()
        if _is_json(block) or _is_csv(block):
            return block
    decoder = json.JSONDecoder()
    for opener in ("[", "{"):
        start = bounded.find(opener)
        while start != -1:
            try:
                value, end = decoder.raw_decode(bounded, start)
            except json.JSONDecodeError:
                start = bounded.find(opener, start + 1)
                if start > 5_000:  # pasted data starts near the top; a stray bracket deep in prose is not it
                    break
                continue
            if isinstance(value, list | dict) and value:
                return bounded[start:end]
            break
    return _csv_block(bounded)


def _is_json(block: str) -> bool:
    try:
        return isinstance(json.loads(block), list | dict)
    except json.JSONDecodeError:
        return False


def _is_csv(block: str) -> bool:
    lines = [line for line in block.splitlines() if line.strip()]
    if len(lines) < 2:
        return False
    counts = {len(row) for row in csv.reader(io.StringIO("\n".join(lines[:50])))}
    return len(counts) == 1 and counts.pop() >= 2


def _csv_block(text: str) -> str | None:
    """The longest run of at least two consecutive lines with the same number (>= 2) of comma-separated fields."""
    best: list[str] = []
    run: list[str] = []
    width = 0
    for line in text.splitlines():
        fields = _csv_fields(line)
        if not fields and ": " in line:  # "…compute the mean of this: a,b" puts the header after the prose
            line = line.rsplit(": ", 1)[1]
            fields = _csv_fields(line)
        if fields >= 2 and (not run or fields == width):
            run.append(line)
            width = fields
            continue
        if len(run) > len(best):
            best = run
        run, width = ([line], fields) if fields >= 2 else ([], 0)
    if len(run) > len(best):
        best = run
    if len(best) < 2 or not any(re.search(r"\d", line) for line in best[1:]):
        return None  # prose with a comma per line is not a table
    return "\n".join(line.strip() for line in best)


def _csv_fields(line: str) -> int:
    """Comma-separated fields of a table line (a cell holds a value, not a sentence); 0 if not one."""
    cells = line.split(",")
    return len(cells) if len(cells) >= 2 and all(len(cell.split()) <= 4 for cell in cells) else 0
