"""sql_query: reads over the sample database and the user's own files; every write refused; runaway queries
stopped; no host path shown; a fair share of the tool's own threads per user."""

from __future__ import annotations

import asyncio
import hashlib
import os
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from backend.auth.models import User
from backend.config import Settings, load_settings
from backend.service_errors import TooManyRequests
from backend.storage.layout import DataLayout
from backend.tools.base import ToolContext, ToolResult
from backend.tools.sql.sources import SAMPLE_DB
from backend.tools.sql.sql_query import SqlQueryArgs, SqlQueryTool


def settings_for(tmp_path: Path, **overrides: object) -> Settings:
    return load_settings(data_dir=tmp_path, **overrides)


RUNAWAY = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT max(i) FROM n"
REPO_ROOT = Path(__file__).resolve().parents[3]


async def query(settings: Settings, sql: str, username: str = "alice") -> ToolResult:
    tool = SqlQueryTool(settings)
    try:
        return await ask(tool, settings, sql, username)
    finally:
        await tool.aclose()


async def ask(tool: SqlQueryTool, settings: Settings, sql: str, username: str = "alice") -> ToolResult:
    return await tool.run(SqlQueryArgs(query=sql), ToolContext(user=User(username), settings=settings))


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def alice_files(tmp_path: Path) -> Path:
    files = DataLayout(tmp_path).user_files_dir("alice")
    files.mkdir(parents=True)
    (files / "Sales 2024.csv").write_text(
        "region,amount,units,note\nnorth,10.5,3,first\nsouth,2.5,1,\nnorth,7,2,\"with, comma\"\n", encoding="utf-8"
    )
    with sqlite3.connect(files / "pets.db") as db:
        db.execute("CREATE TABLE pets (name TEXT, age INTEGER)")
        db.executemany("INSERT INTO pets VALUES (?, ?)", [("Rex", 3), ("Tom", 7)])
    return files


async def test_the_sample_database_answers_for_everyone(tmp_path: Path) -> None:
    result = await query(settings_for(tmp_path), "SELECT count(*) AS n FROM customers", username="newcomer")

    assert result.ok, result.text
    assert result.data["columns"] == ["n"]
    assert result.data["rows"] == [[40]]
    assert result.text == "n\n--\n40\n(1 row(s))"


async def test_a_join_over_the_sample_gives_columns_rows_and_a_text_table(tmp_path: Path) -> None:
    sql = (
        "SELECT p.category, count(DISTINCT o.id) AS orders FROM order_items i "
        "JOIN orders o ON o.id = i.order_id JOIN products p ON p.id = i.product_id "
        "GROUP BY p.category ORDER BY p.category"
    )
    with sqlite3.connect(f"file:{SAMPLE_DB}?mode=ro", uri=True) as direct:
        expected = [list(row) for row in direct.execute(sql)]

    result = await query(settings_for(tmp_path), sql)

    assert result.ok, result.text
    assert result.data["columns"] == ["category", "orders"]
    assert result.data["rows"] == expected
    assert [row[0] for row in expected] == ["Accessories", "Chocolate", "Coffee", "Equipment", "Tea"]
    lines = result.text.splitlines()
    assert lines[0].split(" | ") == ["category   ", "orders"]
    assert lines[2].startswith("Accessories | ")


async def test_user_csv_files_become_typed_tables(tmp_path: Path, alice_files: Path) -> None:
    settings = settings_for(tmp_path)

    result = await query(settings, "SELECT region, sum(amount), sum(units), typeof(units) FROM sales_2024 "
                                   "GROUP BY region ORDER BY region")

    assert result.ok, result.text
    assert result.data["rows"] == [["north", 17.5, 5, "integer"], ["south", 2.5, 1, "integer"]]
    note = await query(settings, "SELECT note FROM sales_2024 WHERE note IS NULL OR note LIKE 'with%'")
    assert note.data["rows"] == [[None], ["with, comma"]]


async def test_user_sqlite_files_are_attached_by_name(tmp_path: Path, alice_files: Path) -> None:
    settings = settings_for(tmp_path)

    qualified = await query(settings, "SELECT name FROM pets.pets WHERE age > 5")
    plain = await query(settings, "SELECT count(*) FROM pets")

    assert qualified.data["rows"] == [["Tom"]]
    assert plain.data["rows"] == [[2]]


async def test_schema_lists_every_table_with_its_columns(tmp_path: Path, alice_files: Path) -> None:
    result = await query(settings_for(tmp_path), ".schema")

    assert result.ok
    lines = result.text.splitlines()
    assert "sales_2024(region TEXT, amount REAL, units INTEGER, note TEXT)  -- your CSV files" in lines
    assert "pets.pets(name TEXT, age INTEGER)  -- pets.db" in lines
    assert "sample.products(id INTEGER, name TEXT, category TEXT, price REAL)  -- sample database" in lines


async def test_another_user_sees_only_the_sample(tmp_path: Path, alice_files: Path) -> None:
    result = await query(settings_for(tmp_path), "SELECT * FROM sales_2024", username="bob")

    assert not result.ok
    assert result.text.startswith("The query failed: no such table: sales_2024.\nAvailable tables:\n")
    assert "sales_2024(" not in result.text and "pets" not in result.text


@pytest.mark.parametrize(
    "sql",
    [
        "INSERT INTO customers (name, email, city, country, signup_date) VALUES ('x', 'x@x', 'x', 'x', 'x')",
        "UPDATE customers SET name = 'hacked'",
        "DELETE FROM orders",
        "DELETE FROM sales_2024",
        "INSERT INTO pets VALUES ('Evil', 1)",
        "DROP TABLE products",
        "CREATE TABLE evil (x)",
        "CREATE TEMP TABLE evil (x)",
        "ALTER TABLE customers ADD COLUMN evil TEXT",
        "ATTACH DATABASE '/tmp/evil.sqlite' AS evil",
        "DETACH DATABASE sample",
        "PRAGMA query_only = OFF",
        "PRAGMA user_version = 7",
        "PRAGMA journal_mode = WAL",
        "PRAGMA writable_schema = ON",
        "VACUUM",
        "BEGIN",
        "REPLACE INTO products VALUES (1, 'x', 'x', 0)",
        "WITH x AS (SELECT 1) DELETE FROM customers",
        "SELECT load_extension('/tmp/evil.so')",
    ],
)
async def test_every_kind_of_write_is_refused_and_nothing_changes(tmp_path: Path, alice_files: Path, sql: str) -> None:
    before = {path: digest(path) for path in (SAMPLE_DB, *alice_files.iterdir())}

    result = await query(settings_for(tmp_path), sql)

    assert not result.ok
    assert result.text.startswith("The query failed:")
    assert "not authorized" in result.text or "only reading statements" in result.text
    assert {path: digest(path) for path in before} == before
    assert not Path("/tmp/evil.sqlite").exists()


async def test_reading_pragmas_are_allowed(tmp_path: Path) -> None:
    result = await query(settings_for(tmp_path), "PRAGMA table_info(products)")

    assert result.ok, result.text
    assert [row[1] for row in result.data["rows"]] == ["id", "name", "category", "price"]


async def test_a_runaway_recursive_query_is_stopped_by_the_timeout(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, sql_timeout_s=1.0)
    started = time.monotonic()

    result = await query(settings, RUNAWAY)

    elapsed = time.monotonic() - started
    assert not result.ok
    assert result.text == "The query failed: the query ran longer than 1 s and was stopped."
    assert elapsed < 3
    after = await query(settings, "SELECT 1")
    assert after.ok


async def test_a_huge_value_is_refused_instead_of_allocated(tmp_path: Path) -> None:
    result = await query(settings_for(tmp_path), "SELECT length(randomblob(1000000000))")

    assert not result.ok
    assert result.text == "The query failed: string or blob too big."


async def test_rows_stop_at_the_cap_and_say_so(tmp_path: Path) -> None:
    result = await query(settings_for(tmp_path, sql_max_rows=5), "SELECT id FROM orders ORDER BY id")

    assert result.ok
    assert result.data["rows"] == [[1], [2], [3], [4], [5]]
    assert result.data["truncated"] is True
    assert result.text.endswith("(5 row(s), stopped at the limit of 5)")


async def test_several_statements_are_refused(tmp_path: Path) -> None:
    result = await query(settings_for(tmp_path), "SELECT 1; DELETE FROM orders")

    assert not result.ok
    assert "one statement at a time" in result.text


async def test_csv_tables_are_cached_outside_the_files_folder_and_follow_changes(tmp_path: Path,
                                                                               alice_files: Path) -> None:
    settings = settings_for(tmp_path)
    listing = sorted(p.name for p in alice_files.iterdir())

    results = await asyncio.gather(*(query(settings, "SELECT count(*) FROM sales_2024") for _ in range(6)))

    assert all(r.ok and r.data["rows"] == [[3]] for r in results)
    assert sorted(p.name for p in alice_files.iterdir()) == listing
    cache = DataLayout(tmp_path).user_cache_dir("alice") / "sql"
    assert len(list(cache.glob("csv-*.sqlite"))) == 1
    assert not list(cache.glob(".building-*"))

    csv = alice_files / "Sales 2024.csv"
    csv.write_text(csv.read_text(encoding="utf-8") + "east,1,1,late\n", encoding="utf-8")
    os.utime(csv, ns=(time.time_ns(), time.time_ns() + 1_000_000_000))
    changed = await query(settings, "SELECT count(*) FROM sales_2024")

    assert changed.data["rows"] == [[4]]
    assert len(list(cache.glob("csv-*.sqlite"))) == 1


async def test_files_that_cannot_be_used_are_reported_not_silently_skipped(tmp_path: Path, alice_files: Path) -> None:
    (alice_files / "broken.db").write_bytes(b"not a database at all")
    (alice_files / "ragged.csv").write_text("a,b\n1,2,3\n4,5\n", encoding="utf-8")

    result = await query(settings_for(tmp_path), "SELECT count(*) FROM ragged")

    assert result.ok, result.text
    assert result.data["rows"] == [[2]]
    assert "Note: broken.db: left out, not an SQLite database." in result.text
    assert "Note: ragged.csv: 1 row(s) had more cells than the header; the extra cells were dropped." in result.text


@pytest.mark.parametrize(
    "sql", ["PRAGMA database_list", "SELECT * FROM pragma_database_list", "SELECT file FROM pragma_database_list()"]
)
async def test_database_list_is_refused_so_no_server_path_is_shown(tmp_path: Path, alice_files: Path,
                                                                  sql: str) -> None:
    result = await query(settings_for(tmp_path), sql)

    assert not result.ok
    assert result.text == (
        "The query failed: database_list is not available, it would show server paths; "
        "`.schema` lists every database."
    )


async def test_no_answer_of_the_tool_names_a_server_folder(tmp_path: Path, alice_files: Path) -> None:
    (alice_files / "broken.db").write_bytes(b"not a database at all")
    (alice_files / "latin1.csv").write_bytes("name\ncaf\xe9\n".encode("latin-1"))
    settings = settings_for(tmp_path)
    answers = [
        await query(settings, sql)
        for sql in (".schema", "SELECT * FROM pets.pets", "SELECT * FROM nowhere", "SELECT nope FROM sample.orders",
                    "SELECT sqlite_source_id(), sqlite_version()", "PRAGMA table_list")
    ]

    assert [answer.ok for answer in answers] == [True, True, False, False, True, True]
    for answer in answers:
        shown = repr([answer.text, answer.data, [(s.title, s.metadata) for s in answer.sources]])
        assert str(tmp_path) not in shown and str(REPO_ROOT) not in shown, shown
    assert "Note: latin1.csv: left out," in answers[0].text


async def test_a_user_past_their_share_of_queries_is_refused_while_another_user_is_served(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, sql_timeout_s=1.5, sql_max_per_user=2, sql_max_workers=3)
    tool = SqlQueryTool(settings)
    try:
        runaways = [asyncio.create_task(ask(tool, settings, RUNAWAY)) for _ in range(2)]
        await asyncio.sleep(0.2)
        with pytest.raises(TooManyRequests) as refused:
            await ask(tool, settings, "SELECT 1")
        started = time.monotonic()
        bobs = await ask(tool, settings, "SELECT count(*) FROM customers", username="bob")
        bobs_wait = time.monotonic() - started
        stopped = await asyncio.gather(*runaways)
        after = await ask(tool, settings, "SELECT 1")
    finally:
        await tool.aclose()

    assert refused.value.status == 429 and refused.value.headers == {"Retry-After": "2"}
    assert refused.value.message.startswith("You already have 2 SQL queries in progress (the limit per user)")
    assert bobs.ok and bobs.data["rows"] == [[40]]
    assert bobs_wait < 0.5
    stopped_text = "The query failed: the query ran longer than 1.5 s and was stopped."
    assert [result.text for result in stopped] == [stopped_text, stopped_text]
    assert after.ok


async def test_queries_run_on_their_own_threads_so_a_saturated_default_pool_does_not_delay_them(
    tmp_path: Path,
) -> None:
    settings = settings_for(tmp_path)
    tool = SqlQueryTool(settings)
    loop = asyncio.get_running_loop()
    default_pool = ThreadPoolExecutor(max_workers=1)
    loop.set_default_executor(default_pool)
    blocker = loop.run_in_executor(None, time.sleep, 1.5)  # stands in for bcrypt and fsync'd writes
    try:
        started = time.monotonic()
        result = await ask(tool, settings, "SELECT count(*) FROM orders")
        elapsed = time.monotonic() - started
    finally:
        await blocker
        await tool.aclose()

    assert result.ok
    assert elapsed < 0.5
