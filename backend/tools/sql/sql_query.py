"""`sql_query`: read-only SQL over the sample database and the user's own SQLite and CSV files.

Read-only is enforced three times over: every file is opened through a `mode=ro&immutable=1` URI,
`PRAGMA query_only` is on, and an authorizer admits only reads (no writes, DDL, ATTACH, transactions,
PRAGMA changes or dangerous functions). A progress handler stops a query at `SQL_TIMEOUT_S`, SQLite's
own limits cap the size of any one value, and at most `SQL_MAX_ROWS` rows come back. Queries run on the
tool's own threads (`SQL_MAX_WORKERS`), at most `SQL_MAX_PER_USER` per user at once.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, Field, StringConstraints

from backend.config import Settings
from backend.tools.base import Availability, Source, ToolContext, ToolResult
from backend.tools.sql.sources import SAMPLE_DB, UserDatabase, gather, read_only_uri
from backend.tools.thread_pools import ToolThreadPool

MAX_VALUE_BYTES = 10_000_000
"""SQLITE_LIMIT_LENGTH: `randomblob(1e9)` fails at once instead of allocating a gigabyte."""
MAX_CELL_CHARS = 80
MAX_SCHEMA_CHARS = 3000
PROGRESS_STEPS = 1000
"""VM instructions between deadline checks: frequent enough to stop within milliseconds."""

READ_PRAGMAS = {
    "table_info", "table_xinfo", "table_list", "index_list", "index_info", "index_xinfo",
    "foreign_key_list", "collation_list",
}
"""Pragmas that only report, with or without an argument. Not `database_list`: it shows where the
files lie on the server (both as `PRAGMA database_list` and as `pragma_database_list`); `.schema` names
every database instead."""
SETTING_PRAGMAS = {"user_version", "schema_version", "page_count", "page_size", "encoding", "freelist_count"}
"""Pragmas that are reads without an argument and writes with one."""
DENIED_FUNCTIONS = {"load_extension", "readfile", "writefile", "edit", "fts3_tokenizer"}


class SqlQueryArgs(BaseModel):
    query: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=10_000)] = Field(
        description=(
            "One SQLite SELECT statement (WITH … SELECT is fine). Unqualified names find the user's CSV tables "
            "first, then the sample database. `.schema` lists every table and its columns."
        )
    )


def authorize(action: int, arg1: str | None, arg2: str | None, _db: str | None, _trigger: str | None) -> int:
    """SQLite asks this for every operation while compiling a statement; only reads pass."""
    if action in (sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_RECURSIVE):
        return sqlite3.SQLITE_OK
    if action == sqlite3.SQLITE_FUNCTION:
        return sqlite3.SQLITE_DENY if (arg2 or "").lower() in DENIED_FUNCTIONS else sqlite3.SQLITE_OK
    if action == sqlite3.SQLITE_PRAGMA:
        name = (arg1 or "").lower()
        if name in READ_PRAGMAS or (name in SETTING_PRAGMAS and arg2 is None):
            return sqlite3.SQLITE_OK
    return sqlite3.SQLITE_DENY


@dataclass
class QueryOutcome:
    columns: list[str]
    rows: list[list[Any]]
    truncated: bool
    elapsed_s: float


class QueryRefused(Exception):
    """The statement was refused or failed; the message is for the user."""


def _connect(database: UserDatabase) -> sqlite3.Connection:
    connection = sqlite3.connect(
        read_only_uri(database.main) if database.main else "file::memory:", uri=True, isolation_level=None
    )
    try:
        for attachment in database.attachments:
            connection.execute("ATTACH DATABASE ? AS ?", (read_only_uri(attachment.path), attachment.schema))
        connection.execute("PRAGMA query_only = ON")
        connection.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, MAX_VALUE_BYTES)
        connection.setlimit(sqlite3.SQLITE_LIMIT_ATTACHED, len(database.attachments))
    except BaseException:
        connection.close()
        raise
    return connection


def _deadline_handler(deadline: float) -> Callable[[], int]:
    def check() -> int:
        return 1 if time.monotonic() > deadline else 0

    return check


def run_query(database: UserDatabase, query: str, max_rows: int, timeout_s: float) -> QueryOutcome:
    """Blocking: run one statement under the authorizer and the deadline."""
    connection = _connect(database)
    started = time.monotonic()
    try:
        connection.set_authorizer(authorize)
        connection.set_progress_handler(_deadline_handler(started + timeout_s), PROGRESS_STEPS)
        try:
            cursor = connection.execute(query)
            fetched = cursor.fetchmany(max_rows + 1)
        except (sqlite3.Error, sqlite3.Warning) as error:
            raise QueryRefused(_explain(error, query, timeout_s)) from None
        if cursor.description is None:
            raise QueryRefused("the statement returns no rows; use SELECT")
        columns = [column[0] for column in cursor.description]
        return QueryOutcome(
            columns=columns,
            rows=[[_json_value(value) for value in row] for row in fetched[:max_rows]],
            truncated=len(fetched) > max_rows,
            elapsed_s=time.monotonic() - started,
        )
    finally:
        connection.close()


def _explain(error: Exception, query: str, timeout_s: float) -> str:
    message = str(error).rstrip(".")
    if message == "interrupted":
        return f"the query ran longer than {timeout_s:g} s and was stopped"
    if message in ("not authorized", "authorization denied") or "prohibited" in message:
        if "database_list" in query.lower():  # only the wording: the authorizer is what refuses it
            return "database_list is not available, it would show server paths; `.schema` lists every database"
        return "only reading statements (SELECT, WITH … SELECT) are allowed; the database is read-only"
    return message


def describe(database: UserDatabase) -> str:
    """Every table and view with its columns, by schema: what the model needs to write a query."""
    connection = _connect(database)
    try:
        lines = []
        schemas = [("main", "your CSV files")] if database.main else []
        schemas += [(a.schema, "sample database" if a.path == SAMPLE_DB else a.path.name) for a in database.attachments]
        for schema, label in schemas:
            names = connection.execute(
                f'SELECT name, type FROM "{schema}".sqlite_master WHERE type IN (\'table\', \'view\') '
                "AND name NOT LIKE 'sqlite_%' ORDER BY name"
            ).fetchall()
            for name, kind in names:
                columns = connection.execute(f'PRAGMA "{schema}".table_info("{name}")').fetchall()
                spec = ", ".join(f"{c[1]} {c[2]}".strip() for c in columns)
                prefix = "" if schema == "main" else f"{schema}."
                lines.append(f"{prefix}{name}({spec})" + (" [view]" if kind == "view" else "") + f"  -- {label}")
        return "\n".join(lines) or "(no tables)"
    finally:
        connection.close()


def _json_value(value: Any) -> Any:
    if isinstance(value, bytes):
        return f"<blob, {len(value)} bytes>"
    return value


def _cell(value: Any) -> str:
    text = "NULL" if value is None else str(value)
    text = text.replace("\n", " ")
    return text if len(text) <= MAX_CELL_CHARS else text[: MAX_CELL_CHARS - 1] + "…"


def text_table(columns: list[str], rows: list[list[Any]]) -> str:
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]

    def line(values: list[str]) -> str:
        return " | ".join(v.ljust(w) for v, w in zip(values, widths, strict=True)).rstrip()

    return "\n".join([line(columns), "-+-".join("-" * w for w in widths)] + [line(row) for row in cells])


class SqlQueryTool:
    name = "sql_query"
    description = (
        "Run one read-only SQL SELECT (SQLite dialect) on the user's data: tables from their uploaded CSV and "
        "SQLite files, and a sample shop database with customers(id, name, email, city, country, signup_date), "
        "products(id, name, category, price), orders(id, customer_id, order_date, status) and "
        "order_items(order_id, product_id, quantity, unit_price). Send `.schema` to list all tables."
    )
    args_model = SqlQueryArgs

    def __init__(self, settings: Settings) -> None:
        self._timeout_s = settings.sql_timeout_s
        self._max_rows = settings.sql_max_rows
        self._threads = ToolThreadPool(
            "sql_query", settings.sql_max_workers, settings.sql_max_per_user, "SQL queries"
        )

    def availability(self) -> Availability:
        return Availability(True)

    async def run(self, args: SqlQueryArgs, context: ToolContext) -> ToolResult:
        """Raises `TooManyRequests` when the user already has `SQL_MAX_PER_USER` queries in progress."""
        return await self._threads.run(context.user.username, self._run, args.query, context)

    async def aclose(self) -> None:
        await self._threads.aclose()

    def _run(self, query: str, context: ToolContext) -> ToolResult:
        database = gather(context.settings.data_dir, context.user.username)
        notes = "".join(f"\nNote: {note}." for note in database.notes)
        if query.rstrip(";").strip().lower() in (".schema", ".tables"):
            schema = describe(database)
            return ToolResult(ok=True, text=f"Tables:\n{schema}{notes}", data={"schema": schema})
        try:
            outcome = run_query(database, query, self._max_rows, self._timeout_s)
        except QueryRefused as error:
            message = f"The query failed: {error}."
            if "no such table" in str(error) or "no such column" in str(error):
                message += f"\nAvailable tables:\n{describe(database)[:MAX_SCHEMA_CHARS]}"
            return ToolResult.failure(message + notes)
        shown = f"{len(outcome.rows)} row(s)" + (
            f", stopped at the limit of {self._max_rows}" if outcome.truncated else ""
        )
        text = f"{text_table(outcome.columns, outcome.rows)}\n({shown}){notes}"
        return ToolResult(
            ok=True,
            text=text,
            data={
                "columns": outcome.columns, "rows": outcome.rows, "row_count": len(outcome.rows),
                "truncated": outcome.truncated, "elapsed_s": round(outcome.elapsed_s, 4), "notes": database.notes,
            },
            sources=[Source(title=f"SQL: {query[:120]}", metadata={"databases": _database_names(database)})],
        )


def _database_names(database: UserDatabase) -> list[str]:
    names = ["your CSV files"] if database.main else []
    return names + [a.path.name for a in database.attachments]
