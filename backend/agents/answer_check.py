"""Answers that keep the tools' exact results: what an answer must contain, the check, and the server's own answer.

A small model drops digits, rounds, rewrites `3*x**2` as `3x^2` or invents a number, so the final
answer is checked against the tool results deterministically: every decisive value (the maths result,
the asked statistic, the rows, the program's output, the temperature) must appear in it verbatim
(numbers compare by value, so `54` is `54.0`), no number may appear that neither the question nor a
result holds, and a document answer must keep a verified `"quote" [file p.N]`. When the model's answer
fails, the server composes one from the results instead (`compose_answer`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from backend.agents.citation_check import CitedChunk, chunks_of, normalise
from backend.agents.citation_check import verify as verify_chunk_citations
from backend.tools.base import Source, ToolResult

MAX_TABLE_ROWS = 20
"""Rows of an SQL result whose cells the answer must hold; a longer result is composed as a table."""
MAX_OUTPUT_LINES = 5
MAX_COMPOSED_CHARS = 4000
_NUMBER = re.compile(r"(?<![\w.])-?\d+(?:[.,]\d+)*(?:\.\d+)?(?:[eE][-+]?\d+)?(?![\w])")
_LIST_MARKER = re.compile(r"^\s*\d+[.)]\s", re.MULTILINE)
_SENTENCE = re.compile(r"(?<=[.!?])\s+")
_WORD = re.compile(r"[a-z0-9]+")

_STATS = {
    "mean": ("mean", "average", "avg"),
    "sum": ("sum", "total"),
    "min": ("min", "minimum", "lowest", "smallest", "least", "cheapest"),
    "max": ("max", "maximum", "highest", "largest", "biggest", "greatest", "most expensive"),
    "median": ("median",),
    "count": ("count", "how many", "number of"),
}


@dataclass(frozen=True)
class Evidence:
    """One tool call and its result, as the answer must reflect it."""

    tool: str
    arguments: dict[str, Any]
    ok: bool
    text: str
    data: Any = None
    sources: tuple[Source, ...] = ()


def evidence_of(tool: str, arguments: dict[str, Any], result: ToolResult) -> Evidence:
    return Evidence(tool, arguments, result.ok, result.text, result.data, tuple(result.sources))


@dataclass(frozen=True)
class AnswerCheck:
    passed: bool
    answer: str
    """The checked answer, failed citations already removed."""
    missing: tuple[str, ...]
    """Decisive values the answer lacks (and `a quoted citation` for a document answer without one)."""
    removed_citations: tuple[str, ...]
    failed_tools: tuple[str, ...]
    unsupported_numbers: tuple[str, ...] = ()
    """Numbers in the answer that neither the question nor any result holds."""


# --- what an answer must contain


def _question_words(question: str, evidence: Evidence) -> str:
    """The question without pasted data, so a JSON key is not taken for a field the user asked about."""
    pasted = evidence.arguments.get("data")
    text = question.replace(pasted, " ") if isinstance(pasted, str) and pasted else question
    return " " + " ".join(_WORD.findall(normalise(text))) + " "


def _asked_stats(words: str) -> list[str]:
    return [stat for stat, cues in _STATS.items() if any(f" {cue} " in words or f" {cue}s " in words for cue in cues)]


def _asked_fields(words: str, fields: dict[str, Any]) -> list[str]:
    asked = []
    for path in fields:
        leaf = " ".join(_WORD.findall(normalise(path.rsplit(".", 1)[-1])))
        whole = " ".join(_WORD.findall(normalise(path)))
        if leaf and any(f" {form} " in words for form in {leaf, leaf + "s", whole}):
            asked.append(path)
    return asked


def _stat_values(question: str, evidence: Evidence) -> list[tuple[str, str, str]]:
    """(field, statistic, value) the question asks of a data_analysis report."""
    report = evidence.data if isinstance(evidence.data, dict) else {}
    fields: dict[str, Any] = report.get("fields") or {}
    words = _question_words(question, evidence)
    stats = _asked_stats(words)
    out: list[tuple[str, str, str]] = []
    if "count" in stats and any(f" {w} " in words for w in ("records", "rows", "items", "entries", "people")):
        out.append(("records", "count", str(report.get("records"))))
        stats.remove("count")
    numeric = {path: summary["numeric"] for path, summary in fields.items() if "numeric" in summary}
    named = [path for path in _asked_fields(words, fields) if path in numeric] or list(numeric)
    for path in named:
        out.extend((path, stat, str(numeric[path][stat])) for stat in stats if stat in numeric[path])
    return out


def _cell(value: Any) -> str | None:
    if value is None or isinstance(value, bool):
        return None
    return value if isinstance(value, str) else json.dumps(value) if isinstance(value, dict | list) else str(value)


def decisive_values(question: str, evidence: Evidence) -> tuple[str, ...]:
    """The strings the answer must contain verbatim; () for a failed call and for results read as prose."""
    data = evidence.data
    if not evidence.ok or not isinstance(data, dict):
        return ()
    if evidence.tool == "math_calc":
        solutions = data.get("solutions")
        if isinstance(solutions, list) and solutions and all(isinstance(s, dict) for s in solutions):
            return tuple(dict.fromkeys(str(v) for s in solutions for v in s.values()))
        return (str(data["result"]),) if data.get("result") not in (None, "") else ()
    if evidence.tool == "data_analysis":
        return tuple(dict.fromkeys(value for _, _, value in _stat_values(question, evidence)))
    if evidence.tool == "sql_query":
        rows = data.get("rows")
        if not isinstance(rows, list) or len(rows) > MAX_TABLE_ROWS:
            return ()
        cells = (_cell(value) for row in rows if isinstance(row, list) for value in row)
        return tuple(dict.fromkeys(cell for cell in cells if cell))
    if evidence.tool == "python_code":
        lines = [line.strip() for line in str(data.get("stdout") or "").splitlines() if line.strip()]
        return tuple(lines[-MAX_OUTPUT_LINES:])
    if evidence.tool == "weather":
        current = data.get("current")
        temperature = current.get("temperature_2m") if isinstance(current, dict) else None
        return (str(temperature),) if temperature is not None else ()
    return ()


# --- the check


def _as_number(text: str) -> Decimal | None:
    try:
        return Decimal(text.replace(",", ""))
    except InvalidOperation:
        return None


def _numbers(text: str) -> set[Decimal]:
    found = (_as_number(match.group()) for match in _NUMBER.finditer(text))
    return {number for number in found if number is not None}


def contains_value(answer: str, value: str) -> bool:
    """`value` in `answer` as a whole token (so `9` is not found in `19`); a number also by value."""
    number = _as_number(value) if _NUMBER.fullmatch(value.strip()) else None
    if number is not None:
        return number in _numbers(answer)
    pattern = re.compile(r"(?<![\w])" + re.escape(value.strip()) + r"(?![\w])", re.IGNORECASE)
    if pattern.search(answer):
        return True
    squeezed = re.sub(r"\s+", "", value)
    return len(squeezed) > 1 and not squeezed.isalnum() and squeezed in re.sub(r"\s+", "", answer)


def _unsupported_numbers(question: str, answer: str, evidence: Sequence[Evidence]) -> tuple[str, ...]:
    known = _numbers(question)
    for item in evidence:
        known |= _numbers(item.text) | _numbers(json.dumps(item.data, default=str))
    text = _LIST_MARKER.sub(" ", answer)
    return tuple(dict.fromkeys(m.group() for m in _NUMBER.finditer(text) if _as_number(m.group()) not in known))


def _document_chunks(evidence: Sequence[Evidence]) -> list[CitedChunk]:
    return [chunk for item in evidence if item.tool == "rag_retrieval" and item.ok for chunk in chunks_of(item.data)]


def verify_citations(answer: str, evidence: Sequence[Evidence]) -> tuple[str, tuple[str, ...]]:
    """The answer with every document citation whose quote is not in the cited chunk removed, and those removed."""
    report = verify_chunk_citations(answer, _document_chunks(evidence))
    return report.answer, report.removed


def check_answer(question: str, answer: str, evidence: Sequence[Evidence]) -> AnswerCheck:
    chunks = _document_chunks(evidence)
    report = verify_chunk_citations(answer, chunks)
    cleaned = report.answer
    missing = [v for item in evidence for v in decisive_values(question, item) if not contains_value(cleaned, v)]
    if chunks and not report.verified:
        missing.append("a quoted citation")
    unsupported = _unsupported_numbers(question, cleaned, evidence) if evidence else ()
    failed = tuple(item.tool for item in evidence if not item.ok)
    return AnswerCheck(
        passed=bool(cleaned.strip()) and not missing and not unsupported,
        answer=cleaned, missing=tuple(dict.fromkeys(missing)), removed_citations=report.removed,
        failed_tools=failed, unsupported_numbers=unsupported,
    )


# --- the server's own answer


def _math_line(data: dict[str, Any], text: str) -> str:
    line = text.splitlines()[0] if text else f"{data.get('input')} = {data.get('result')}"
    return line + (f" (≈ {data['numeric']})" if data.get("numeric") else "")


def _markdown_table(columns: list[Any], rows: list[Any]) -> str:
    shown = rows[:MAX_TABLE_ROWS]
    lines = ["| " + " | ".join(str(c) for c in columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join("" if v is None else str(v) for v in row) + " |" for row in shown]
    if len(rows) > len(shown):
        lines.append(f"({len(rows)} rows; the first {len(shown)} shown)")
    return "\n".join(lines)


def _sql_answer(data: dict[str, Any], arguments: dict[str, Any]) -> str:
    rows, columns = data.get("rows") or [], data.get("columns") or []
    if "schema" in data:
        return f"Tables:\n{data['schema']}"
    if not rows:
        return "The query returned no rows."
    if len(rows) == 1 and len(rows[0]) == 1:
        return f"The answer is {_cell(rows[0][0])} ({columns[0]} from the sample database)."
    return f"{_markdown_table(columns, rows)}\n({len(rows)} row{'s' if len(rows) != 1 else ''})"


def _best_sentence(question: str, chunk: CitedChunk) -> str:
    asked = set(_WORD.findall(normalise(question))) - {"the", "a", "an", "of", "in", "is", "what", "my", "does"}
    sentences = [s.strip() for s in _SENTENCE.split(" ".join(chunk.text.split())) if len(s.strip()) >= 8]
    if not sentences:
        return " ".join(chunk.text.split())[:300]
    return max(sentences, key=lambda s: (len(asked & set(_WORD.findall(normalise(s)))), -sentences.index(s)))


def _compose_one(question: str, item: Evidence) -> str:
    data = item.data if isinstance(item.data, dict) else {}
    if not item.ok:
        return f"{item.tool} failed: {item.text}"
    if item.tool == "math_calc":
        return _math_line(data, item.text)
    if item.tool == "data_analysis":
        stats = _stat_values(question, item)
        if stats:
            return "\n".join(f"The {stat} of {path} is {value}." for path, stat, value in stats)
        return item.text
    if item.tool == "sql_query":
        return _sql_answer(data, item.arguments)
    if item.tool == "python_code":
        output = str(data.get("stdout") or "").strip()
        return f"The program printed:\n```\n{output}\n```" if output else item.text
    if item.tool == "rag_retrieval":
        chunks = chunks_of(item.data)
        if not chunks:
            return item.text
        best = chunks[0]
        sentence = _best_sentence(question, best)
        return f'"{sentence}" {best.label_for(sentence)}'
    if item.tool == "weather":
        return "\n".join(item.text.splitlines()[:2])
    if item.tool == "wikipedia":
        lines = item.text.splitlines()
        summary = " ".join(_SENTENCE.split(" ".join(lines[2:]))[:2]) if len(lines) > 2 else item.text
        return f"{summary}\n({lines[0]}, {lines[1]})" if len(lines) > 2 else summary
    if item.tool == "web_search":
        return "\n".join(item.text.splitlines()[:10])
    return item.text


def compose_answer(question: str, evidence: Sequence[Evidence]) -> str:
    """The answer written from the results alone: each decisive value verbatim, a document quote with its label."""
    if not evidence:
        return "I could not find an answer with the tools available."
    parts = [_compose_one(question, item) for item in evidence]
    answer = "\n\n".join(part for part in parts if part.strip())
    return answer if len(answer) <= MAX_COMPOSED_CHARS else answer[: MAX_COMPOSED_CHARS - 1] + "…"


def final_answer(question: str, answer: str, evidence: Sequence[Evidence]) -> tuple[str, AnswerCheck]:
    """The model's answer when it passes the check (citations cleaned), else the composed one."""
    check = check_answer(question, answer, evidence)
    if check.passed or not evidence:
        return (check.answer if evidence else answer), check
    return compose_answer(question, evidence), check
