"""Answers keep the tools' exact results: the values they must hold, citations checked, and the composed answer."""

from __future__ import annotations

import json
from typing import Any

from backend.agents.answer_check import (
    Evidence,
    check_answer,
    compose_answer,
    contains_value,
    decisive_values,
    evidence_of,
    final_answer,
    verify_citations,
)
from backend.agents.citation_check import CitedChunk
from backend.rag.ports import ChunkRecord, ScoredChunk
from backend.tools.base import ToolResult
from backend.tools.data_analysis import analyse


def math(result: str, text: str, solutions: list[dict[str, str]] | None = None) -> Evidence:
    data = {"operation": "x", "input": "i", "result": result, "numeric": None, "solutions": solutions, "notes": []}
    return evidence_of("math_calc", {"expression": "e"}, ToolResult(ok=True, text=text, data=data))


INTEGRAL = math("9", "Integral(x**2, (x, 0, 3)) = 9")
QUESTION = "What is the integral of x^2 from 0 to 3?"

CHUNK_TEXT = (
    "The warranty covers parts and labour. Claims must be filed within 30 days of delivery. "
    "Shipping is free for orders above 50 euros."
)


def documents(data: list[dict[str, Any]]) -> Evidence:
    return Evidence("rag_retrieval", {"query": "q"}, True, "passages", data)


THIS_BRANCH = documents([{"filename": "terms.pdf", "page": 2, "score": 0.8, "text": CHUNK_TEXT}])
RAG_BRANCH = documents([{"source": 1, "filename": "terms.pdf", "page_start": 3, "page_end": 4, "chunk_index": 7,
                         "score": 0.8, "text": CHUNK_TEXT}])


def test_an_answer_with_the_exact_result_passes_and_is_kept() -> None:
    answer, check = final_answer(QUESTION, "The integral of x^2 from 0 to 3 is 9.", [INTEGRAL])

    assert check.passed is True
    assert answer == "The integral of x^2 from 0 to 3 is 9."


def test_a_changed_number_fails_and_the_server_composes_the_answer_from_the_result() -> None:
    answer, check = final_answer(QUESTION, "The integral is 19.", [INTEGRAL])

    assert check.passed is False
    assert check.missing == ("9",)
    assert check.unsupported_numbers == ("19",)
    assert answer == "Integral(x**2, (x, 0, 3)) = 9"


def test_a_value_is_matched_as_a_whole_token_and_a_number_by_value() -> None:
    assert contains_value("it is 9.", "9") is True
    assert contains_value("it is 19 or 9.5", "9") is False
    assert contains_value("costs 54 euros", "54.0") is True
    assert contains_value("d/dx = 3 * x**2", "3*x**2") is True
    assert contains_value("d/dx = 3x^2", "3*x**2") is False


def test_every_solution_of_an_equation_is_decisive() -> None:
    solved = math("x = 2 or x = 3", "Solving [Eq(x**2 - 5*x + 6, 0)]: x = 2 or x = 3", [{"x": "2"}, {"x": "3"}])

    assert decisive_values("solve x^2-5x+6=0", solved) == ("2", "3")
    assert check_answer("solve x^2-5x+6=0", "x is 2.", [solved]).missing == ("3",)


def test_the_asked_statistic_of_the_named_field_is_decisive_not_every_key_of_the_pasted_data() -> None:
    data = json.dumps([{"price": 4, "qty": 10}, {"price": 8, "qty": 30}])
    report = analyse(data, "auto")
    evidence = Evidence("data_analysis", {"data": data}, True, "stats", report)
    question = f"What is the average price? {data}"

    assert decisive_values(question, evidence) == ("6",)
    assert compose_answer(question, [evidence]) == "The mean of price is 6."
    assert check_answer(question, "The average price is 6.", [evidence]).passed is True


def test_sql_rows_must_all_appear_and_a_long_result_is_composed_as_a_table() -> None:
    rows = [["Hand grinder", 54.0], ["Pour-over kettle", 42.0]]
    sql = Evidence("sql_query", {"query": "SELECT name, price FROM products"}, True, "table",
                   {"columns": ["name", "price"], "rows": rows, "row_count": 2})

    assert decisive_values("top products", sql) == ("Hand grinder", "54.0", "Pour-over kettle", "42.0")
    assert check_answer("top products", "Hand grinder (54) and Pour-over kettle (42).", [sql]).passed is True
    assert compose_answer("top products", [sql]) == (
        "| name | price |\n|---|---|\n| Hand grinder | 54.0 |\n| Pour-over kettle | 42.0 |\n(2 rows)"
    )


def test_a_number_no_result_holds_fails_the_check_even_when_the_values_are_there() -> None:
    check = check_answer(QUESTION, "It is 9, about 9.1 when rounded up.", [INTEGRAL])

    assert check.passed is False
    assert check.missing == ()
    assert check.unsupported_numbers == ("9.1",)


def test_a_failed_tool_is_reported_and_composed_as_an_observation() -> None:
    failed = evidence_of("sql_query", {"query": "SELECT"}, ToolResult.failure("The query failed: no such table: x."))

    check = check_answer("how many x", "I do not know.", [failed])

    assert check.failed_tools == ("sql_query",)
    assert check.passed is True
    assert compose_answer("how many x", [failed]) == "sql_query failed: The query failed: no such table: x."


def test_a_quote_found_in_the_cited_chunk_keeps_its_citation() -> None:
    answer = 'The terms say: "Claims must be filed within 30 days of delivery." [terms.pdf p.2]'

    cleaned, removed = verify_citations(answer, [THIS_BRANCH])

    assert cleaned == answer
    assert removed == ()
    assert check_answer("claims deadline?", answer, [THIS_BRANCH]).passed is True


def test_an_invented_quote_or_page_loses_its_citation_and_the_answer_quotes_the_chunk_instead() -> None:
    invented = 'The terms say "Claims must be filed within 90 days." [terms.pdf p.2] Also [terms.pdf p.9].'

    cleaned, removed = verify_citations(invented, [THIS_BRANCH])
    answer, check = final_answer("Within how many days must claims be filed?", invented, [THIS_BRANCH])

    assert cleaned == 'The terms say "Claims must be filed within 90 days." Also.'
    assert removed == ("[terms.pdf p.2]", "[terms.pdf p.9]")
    assert check.passed is False and "a quoted citation" in check.missing
    assert answer == '"Claims must be filed within 30 days of delivery." [terms.pdf p.2]'


def test_rag_branch_sources_cite_page_ranges_and_numbers_become_labels() -> None:
    answer = "\u201cShipping is FREE for orders  above 50 euros\u201d [1]"

    cleaned, removed = verify_citations(answer, [RAG_BRANCH])

    assert cleaned == "\u201cShipping is FREE for orders  above 50 euros\u201d [terms.pdf pp.3-4]"
    assert removed == ()
    assert verify_citations('"Shipping is free for orders above 50 euros" [terms.pdf p.4]', [RAG_BRANCH])[1] == ()


def test_a_web_result_number_is_not_taken_for_a_document_citation() -> None:
    assert verify_citations("See [7] and [terms of use].", [THIS_BRANCH]) == ("See [7] and [terms of use].", ())


def test_a_scored_chunk_of_the_rag_port_is_cited_by_file_and_pages() -> None:
    record = ChunkRecord("f1:0", "f1", "report.pdf", 0, CHUNK_TEXT, 0, len(CHUNK_TEXT), 5, 5)
    chunk = CitedChunk.from_scored(1, ScoredChunk(record, 0.9))

    assert chunk.label == "[report.pdf p.5]"
    assert chunk.holds("parts and labour") is True
    assert chunk.holds("labour") is False  # too short to prove anything


CROSSING_TEXT = "Invoices are due in 30 days.\n\nLate fees are 2% per month."
CROSSING = documents([{"source": 1, "filename": "terms.pdf", "page_start": 3, "page_end": 4, "chunk_index": 2,
                       "page_breaks": [CROSSING_TEXT.index("Late")], "score": 0.8, "text": CROSSING_TEXT}])


def test_a_quote_from_a_chunk_crossing_pages_is_cited_with_the_page_it_is_on() -> None:
    composed = compose_answer("How much are the late fees?", [CROSSING])
    written, removed = verify_citations('"Late fees are 2% per month." [terms.pdf p.3]', [CROSSING])
    first_page, _ = verify_citations('"Invoices are due in 30 days." [1]', [CROSSING])

    assert composed == '"Late fees are 2% per month." [terms.pdf p.4]'
    assert (written, removed) == ('"Late fees are 2% per month." [terms.pdf p.4]', ())  # the wrong page corrected
    assert first_page == '"Invoices are due in 30 days." [terms.pdf p.3]'
