"""Attacks on the shared tool pools through POST /api/tools/{name}/invoke: one user flooding slow maths or
SQL gets 429s past their share while everyone else is served at once; no answer shows a host path or
the internals of an unexpected failure."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from backend.storage.layout import DataLayout
from tests.api.account_helpers import admin_token, assert_error, bearer, new_user_token
from tests.conftest import RunningServer, ServerThread, make_settings

SLOW_MATHS = {"expression": "integrate x^12*sin(x)^5 dx"}
"""About 10 s of SymPy on one core, so every run ends at MATH_TIMEOUT_S."""
RUNAWAY_SQL = {"query": "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT max(i) FROM n"}
REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    settings = make_settings(tmp_path_factory.mktemp("fairness"), math_timeout_s=3, sql_timeout_s=2)
    assert (settings.math_max_workers, settings.math_max_per_user) == (2, 1)
    assert (settings.sql_max_workers, settings.sql_max_per_user) == (4, 2)
    with ServerThread(settings) as base_url:
        yield RunningServer(base_url=base_url, settings=settings, api_key="unused")


@pytest.fixture(scope="module")
def users(server: RunningServer) -> tuple[dict[str, str], dict[str, str]]:
    """Bearer headers of the flooding user and of a bystander."""
    flooder = admin_token(server)
    _, bystander = new_user_token(server, flooder)
    return bearer(flooder), bearer(bystander)


async def _invoke(
    client: httpx.AsyncClient, tool: str, body: dict[str, Any], headers: dict[str, str]
) -> httpx.Response:
    return await client.post(f"/api/tools/{tool}/invoke", json=body, headers=headers)


async def _timed(call: Any) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = await call
    return response, time.monotonic() - started


def _math_workers() -> int:
    """The maths worker processes this test process (the server runs in a thread of it) has started."""
    count = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            command = (entry / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue
        count += ppid == os.getpid() and b"backend.tools.math.engine" in command
    return count


def _assert_share_refused(response: httpx.Response, what: str) -> None:
    error = assert_error(response, 429, "per_user_limit")
    assert response.headers["Retry-After"] == "2"
    assert error["message"].startswith(f"You already have {what} in progress (the limit per user)")


async def test_a_flood_of_slow_maths_gets_429s_while_another_users_sum_answers_within_2_s(
    server: RunningServer, users: tuple[dict[str, str], dict[str, str]]
) -> None:
    flooder, bystander = users
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as client:
        # Other servers of the suite (agents answer with math_calc too) may keep maths workers of their own.
        workers_before = _math_workers()
        flood = [asyncio.create_task(_invoke(client, "math_calc", SLOW_MATHS, flooder)) for _ in range(10)]
        await asyncio.sleep(0.5)
        workers_during_flood = _math_workers() - workers_before
        sums = [await _timed(_invoke(client, "math_calc", {"expression": "2+2"}, bystander)) for _ in range(3)]
        answers = await asyncio.gather(*flood)

    for response, elapsed in sums:
        assert response.status_code == 200 and response.json()["data"]["result"] == "4", response.text
        assert elapsed < 2
    ran = [response for response in answers if response.status_code == 200]
    assert len(ran) == 1
    assert ran[0].json()["text"].startswith("The calculation took longer than 3 s and was stopped")
    for response in answers:
        if response.status_code != 200:
            _assert_share_refused(response, "1 math_calc computation(s)")
    assert workers_during_flood <= server.settings.math_max_workers


async def test_slow_sql_of_one_user_leaves_sign_in_checks_and_other_users_queries_fast(
    server: RunningServer, users: tuple[dict[str, str], dict[str, str]]
) -> None:
    flooder, bystander = users
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as client:
        flood = [asyncio.create_task(_invoke(client, "sql_query", RUNAWAY_SQL, flooder)) for _ in range(8)]
        await asyncio.sleep(0.5)
        checks = [await _timed(client.get("/api/auth/me", headers=bystander)) for _ in range(5)]
        query, query_s = await _timed(_invoke(client, "sql_query", {"query": "SELECT count(*) FROM orders"}, bystander))
        still_running = not all(task.done() for task in flood)
        answers = await asyncio.gather(*flood)

    assert still_running  # the bystander was measured while the flooder's queries held their threads
    for response, elapsed in checks:
        assert response.status_code == 200, response.text
        assert elapsed < 0.5
    assert query.status_code == 200 and query.json()["ok"] is True, query.text
    assert query_s < 1
    ran = [response for response in answers if response.status_code == 200]
    assert len(ran) == 2
    assert all(r.json()["text"] == "The query failed: the query ran longer than 2 s and was stopped." for r in ran)
    for response in answers:
        if response.status_code != 200:
            _assert_share_refused(response, "2 SQL queries")


async def test_no_sql_answer_shows_where_the_server_keeps_its_files(
    server: RunningServer, users: tuple[dict[str, str], dict[str, str]]
) -> None:
    _, bystander = users
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as client:
        answers = [
            await _invoke(client, "sql_query", {"query": sql}, bystander)
            for sql in ("PRAGMA database_list", "SELECT file FROM pragma_database_list", ".schema",
                        "SELECT * FROM nowhere", "ATTACH DATABASE 'x.db' AS x")
        ]

    assert [response.status_code for response in answers] == [200] * 5
    assert [response.json()["ok"] for response in answers] == [False, False, True, False, False]
    assert answers[0].json()["text"] == (
        "The query failed: database_list is not available, it would show server paths; `.schema` lists every database."
    )
    for response in answers:
        assert str(server.settings.data_dir.resolve()) not in response.text
        assert str(REPO_ROOT) not in response.text


async def test_an_unexpected_failure_inside_a_tool_is_a_plain_sentence_without_its_type_or_paths(
    server: RunningServer,
) -> None:
    name, token = new_user_token(server, admin_token(server))
    layout = DataLayout(server.settings.data_dir)
    files = layout.user_files_dir(name)
    files.mkdir(parents=True)
    (files / "budget.csv").write_text("item,cost\nrent,900\n", encoding="utf-8")
    cache = layout.user_cache_dir(name)
    cache.mkdir(parents=True)
    (cache / "sql").write_text("a file where the CSV cache folder belongs")  # mkdir raises FileExistsError

    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as client:
        response = await _invoke(client, "sql_query", {"query": "SELECT * FROM budget"}, bearer(token))

    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["ok"], body["data"], body["sources"]) == (False, None, [])
    assert body["text"] == "Tool 'sql_query' failed because of an internal error; see the server log."
    assert "FileExistsError" not in response.text and str(server.settings.data_dir.resolve()) not in response.text
