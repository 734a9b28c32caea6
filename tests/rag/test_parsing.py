"""Parsing in the worker process: every format, its refusals, and the limits that stop a runaway parser."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from pathlib import Path

import pytest

from backend.rag.document_errors import (
    CorruptFile,
    DocumentTooLong,
    EmptyFile,
    EncryptedFile,
    NoText,
    ParseResourcesExceeded,
    ParseTimeout,
    UnsafeFile,
    UnsupportedFileType,
)
from backend.rag.extract_text import flatten_json
from backend.rag.parsed_document import DocumentKind, ParsedDocument
from backend.rag.parsing import DocumentParser, ParseLimits
from tests.rag import sample_files

LIMITS = ParseLimits(timeout_s=20, memory_mb=1024, max_chars=200_000, group_chars=300)


def parse(tmp_path: Path, name: str, data: bytes, kind: DocumentKind, limits: ParseLimits = LIMITS,
          worker: str | None = None) -> ParsedDocument:
    path = tmp_path / name
    path.write_bytes(data)
    parser = DocumentParser(limits, max_workers=2, **({"worker_module": worker} if worker else {}))
    return asyncio.run(parser.parse(path, kind))


def test_a_pdf_keeps_one_based_pages_with_their_offsets_in_the_text(tmp_path: Path) -> None:
    document = parse(tmp_path, "facts.pdf", sample_files.pdf_bytes(), "pdf")
    assert document.kind == "pdf" and document.page_count == 4 and len(document.pages) == 4
    for number, (start, end) in enumerate(document.pages, start=1):
        page_text = document.text[start:end]
        assert page_text.startswith(sample_files.FACTS[number])
        assert f"Filler sentence 29 of page {number} " in page_text
        assert all(f"of page {other} " not in page_text for other in sample_files.FACTS if other != number)
    assert [document.pages[i + 1][0] - document.pages[i][1] for i in range(3)] == [2, 2, 2]


def test_an_encrypted_pdf_is_refused_as_encrypted(tmp_path: Path) -> None:
    with pytest.raises(EncryptedFile, match="encrypted"):
        parse(tmp_path, "locked.pdf", sample_files.encrypted_pdf_bytes(), "pdf")


@pytest.mark.parametrize("data", [b"%PDF-1.7\nthis is no pdf at all\n", sample_files.pdf_bytes()[:600]])
def test_a_corrupt_or_truncated_pdf_is_refused_as_corrupt(tmp_path: Path, data: bytes) -> None:
    with pytest.raises(CorruptFile):
        parse(tmp_path, "broken.pdf", data, "pdf")


def test_a_docx_gives_headings_paragraphs_and_a_markdown_table_under_its_header(tmp_path: Path) -> None:
    document = parse(tmp_path, "fleet.docx", sample_files.docx_bytes(), "docx")
    assert document.text == (
        "# Fleet report\n\nThe fleet of the Northwind ferry company has three ships.\n\n"
        "| Ship | Built | Home port |\n| --- | --- | --- |\n| Aurora | 1998 | Bergen |\n"
        "| Borealis | 2004 | Tromsø |\n| Corvus | 2011 | Ålesund |\n\n"
        "All ships pass their safety inspection every March."
    )
    assert [document.text[s:e][:12] for s, e in document.sections] == ["# Fleet repo", "| Ship | Bui", "All ships pa"]
    assert document.page_count is None


def test_a_long_docx_table_repeats_its_header_in_every_row_group(tmp_path: Path) -> None:
    document = parse(tmp_path, "fleet.docx", sample_files.docx_bytes(extra_rows=40), "docx")
    tables = [document.text[s:e] for s, e in document.sections if document.text[s:e].startswith("| Ship")]
    assert len(tables) > 3
    assert all(t.startswith("| Ship | Built | Home port |\n| --- | --- | --- |\n| ") and len(t) <= 300 for t in tables)
    rows = [line for t in tables for line in t.splitlines()[2:]]
    assert len(rows) == 43 and rows[-1] == "| Extra39 | 2019 | Port number 39 |"


def test_a_zip_bomb_docx_is_refused_before_parsing(tmp_path: Path) -> None:
    started = time.monotonic()
    with pytest.raises(UnsafeFile, match="zip bomb"):
        parse(tmp_path, "bomb.docx", sample_files.zip_bomb_docx_bytes(), "docx")
    assert time.monotonic() - started < 10


def test_a_docx_declaring_a_dtd_with_an_external_entity_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UnsafeFile, match="DTD"):
        parse(tmp_path, "xxe.docx", sample_files.dtd_docx_bytes(), "docx")


def test_a_zip_that_is_not_a_word_document_is_refused_as_the_wrong_type(tmp_path: Path) -> None:
    with pytest.raises(UnsupportedFileType, match="not a Word document"):
        parse(tmp_path, "notes.docx", sample_files.plain_zip_bytes(), "docx")


def test_json_is_flattened_to_key_paths_in_document_order(tmp_path: Path) -> None:
    document = parse(tmp_path, "orders.json", json.dumps(sample_files.JSON_VALUE).encode(), "json")
    assert document.text.splitlines() == [
        "orders[0].id: 1", "orders[0].customer.name: Alice", "orders[0].customer.city: Lyon", "orders[0].paid: true",
        "orders[1].id: 2", "orders[1].customer.name: Bob", "orders[1].customer.city: Porto", "orders[1].paid: false",
        "orders[1].notes: null", "shop: Tiny Teas",
    ]
    assert flatten_json({"a.b": {"": []}, "x": {}}) == ['["a.b"][""]: []', "x: {}"]


def test_invalid_json_is_refused_as_the_wrong_type(tmp_path: Path) -> None:
    with pytest.raises(UnsupportedFileType, match="not valid JSON"):
        parse(tmp_path, "broken.json", b'{"a": 1,', "json")


def test_deeply_nested_json_is_refused_as_unsafe(tmp_path: Path) -> None:
    with pytest.raises(UnsafeFile, match="nested"):
        parse(tmp_path, "deep.json", b"[" * 100_000 + b"]" * 100_000, "json")


def test_csv_rows_come_in_groups_that_each_start_with_the_header(tmp_path: Path) -> None:
    document = parse(tmp_path, "cities.csv", sample_files.CSV_TEXT.encode(), "csv")
    groups = [document.text[s:e] for s, e in document.sections]
    assert len(groups) > 5
    assert all(group.startswith("city,country,population\nCity") and len(group) <= 300 for group in groups)
    rows = [line for group in groups for line in group.splitlines()[1:]]
    assert rows == [f"City{n},Country{n % 7},{1000 + n}" for n in range(120)]


def test_a_semicolon_csv_is_sniffed_and_a_text_without_delimiters_is_one_column(tmp_path: Path) -> None:
    semicolons = parse(tmp_path, "a.csv", b"name;age\nAda;36\nAlan;41\n", "csv")
    assert semicolons.text == "name,age\nAda,36\nAlan,41"
    single = parse(tmp_path, "b.csv", b"name\nAda\nAlan\n", "csv")
    assert single.text == "name\nAda\nAlan"


def test_text_in_a_legacy_encoding_is_detected_and_decoded(tmp_path: Path) -> None:
    text = "Le café crème coûte trois euros à la brasserie près de l'église, été comme hiver.\n" * 5
    document = parse(tmp_path, "menu.txt", text.encode("cp1252"), "text")
    assert document.text == text
    bom = parse(tmp_path, "bom.md", "# Überschrift\r\nÄrger".encode("utf-16"), "markdown")
    assert bom.text == "# Überschrift\nÄrger"


def test_binary_data_named_as_text_is_refused_as_the_wrong_type(tmp_path: Path) -> None:
    with pytest.raises(UnsupportedFileType, match="binary"):
        parse(tmp_path, "data.txt", b"abc\x00\x01\x02" * 100, "text")


def test_whitespace_only_text_is_refused_as_empty(tmp_path: Path) -> None:
    with pytest.raises(EmptyFile):
        parse(tmp_path, "blank.txt", b" \n\t\n ", "text")


def test_a_sqlite_database_passes_its_integrity_check_and_lists_its_tables(tmp_path: Path) -> None:
    document = parse(tmp_path, "planets.sqlite", sample_files.sqlite_bytes(tmp_path), "sqlite")
    assert (document.kind, document.text, document.tables) == ("sqlite", "", ["planets"])


def test_a_damaged_sqlite_database_is_refused_as_corrupt(tmp_path: Path) -> None:
    data = bytearray(sample_files.sqlite_bytes(tmp_path))
    data[100:4096] = b"\xff" * (4096 - 100)  # the schema page
    with pytest.raises(CorruptFile):
        parse(tmp_path, "broken.sqlite", bytes(data), "sqlite")


def test_a_sqlite_database_without_tables_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "empty.db"
    sqlite3.connect(path).execute("PRAGMA user_version = 1").connection.close()
    with pytest.raises(NoText, match="no tables"):
        parse(tmp_path, "empty2.db", path.read_bytes(), "sqlite")


def test_text_longer_than_the_limit_is_refused_with_413(tmp_path: Path) -> None:
    limits = ParseLimits(timeout_s=20, memory_mb=1024, max_chars=5000, group_chars=300)
    with pytest.raises(DocumentTooLong) as caught:
        parse(tmp_path, "long.txt", b"word " * 2000, "text", limits)
    assert caught.value.status == 413
    with pytest.raises(DocumentTooLong):
        parse(tmp_path, "long.pdf", sample_files.pdf_bytes(), "pdf", limits)


def _worker_processes() -> list[str]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if b"hanging_parse_worker" in cmdline.read_bytes():
                found.append(cmdline.parent.name)
        except OSError:
            continue
    return found


def test_a_parse_that_hangs_is_killed_at_the_timeout(tmp_path: Path) -> None:
    limits = ParseLimits(timeout_s=1.0, memory_mb=1024, max_chars=5000, group_chars=300)
    started = time.monotonic()
    with pytest.raises(ParseTimeout, match="1 s"):
        parse(tmp_path, "hang.txt", b"anything", "text", limits, worker="tests.rag.hanging_parse_worker")
    waited_s = time.monotonic() - started
    assert waited_s >= 1.0, "the worker was given its whole time"
    assert waited_s < 5, "and then killed, not waited for"
    assert _worker_processes() == []


def test_a_parse_that_allocates_past_the_memory_cap_is_stopped(tmp_path: Path) -> None:
    limits = ParseLimits(timeout_s=20, memory_mb=512, max_chars=5000, group_chars=300)
    with pytest.raises(ParseResourcesExceeded, match="memory"):
        parse(tmp_path, "allocate.txt", b"anything", "text", limits, worker="tests.rag.hanging_parse_worker")


def test_the_worker_sees_none_of_the_servers_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SECRET_KEY", "x" * 40)
    document = parse(tmp_path, "environment.txt", b"anything", "text", worker="tests.rag.hanging_parse_worker")
    assert "SECRET_KEY" not in document.text
    assert document.text == "LANG=C.UTF-8"


def test_a_parsed_document_with_spans_outside_its_text_is_rejected() -> None:
    with pytest.raises(ValueError, match="outside"):
        ParsedDocument.from_json({"kind": "pdf", "text": "abc", "pages": [[0, 9]]})
    assert ParsedDocument.from_json(ParsedDocument("pdf", "abc", [(0, 3)], [(0, 3)]).to_json()).pages == [(0, 3)]
