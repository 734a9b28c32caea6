"""GET /api/tools and POST /api/tools/{name}/invoke on the real server, as signed-in users."""

from __future__ import annotations

import os
from typing import Any

import httpx
import pytest

from backend.storage.layout import DataLayout
from backend.tools.sandbox.python_code import PythonCodeTool
from tests.api.account_helpers import admin_token, assert_error, bearer, new_user_token
from tests.conftest import RunningServer

ALL_TOOLS = {
    "web_search", "wikipedia", "weather", "rag_retrieval", "data_analysis", "python_code", "math_calc", "sql_query"
}


def invoke(server: RunningServer, name: str, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    headers = server.headers() if headers is None else headers
    return httpx.post(f"{server.base_url}/api/tools/{name}/invoke", json=body, headers=headers, timeout=60)


def test_listing_needs_a_signed_in_user(server: RunningServer) -> None:
    assert_error(httpx.get(f"{server.base_url}/api/tools", timeout=30), 401)
    assert_error(invoke(server, "math_calc", {"expression": "1+1"}, headers={}), 401)


def test_listing_shows_all_eight_tools_with_schema_and_honest_availability(server: RunningServer) -> None:
    response = httpx.get(f"{server.base_url}/api/tools", headers=server.headers(), timeout=30)

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "list"
    tools = {tool["name"]: tool for tool in body["data"]}
    assert set(tools) == ALL_TOOLS
    assert len(body["data"]) == len(ALL_TOOLS)
    assert all(set(tool) == {"name", "description", "parameters", "available", "reason"} for tool in tools.values())
    assert tools["math_calc"]["parameters"]["required"] == ["expression"]
    for name in ("data_analysis", "math_calc", "sql_query"):
        assert (tools[name]["available"], tools[name]["reason"]) == (True, None), name
    for name in ("wikipedia", "weather"):  # no key needed; a failed call would only add a "last call failed" note
        assert tools[name]["available"] is True, name
        assert tools[name]["reason"] is None or tools[name]["reason"].startswith("last call failed: "), name
    assert (tools["rag_retrieval"]["available"], tools["rag_retrieval"]["reason"]) == (True, None)


def test_web_search_is_listed_as_unavailable_naming_the_settings_it_needs(server: RunningServer) -> None:
    tools = {t["name"]: t for t in httpx.get(f"{server.base_url}/api/tools", headers=server.headers(),
                                               timeout=30).json()["data"]}

    if server.settings.tavily_api_key or server.settings.searxng_url:
        assert tools["web_search"]["available"] is True
    else:
        assert tools["web_search"]["available"] is False
        assert tools["web_search"]["reason"] == "set TAVILY_API_KEY or SEARXNG_URL"


def test_python_code_is_listed_as_available_exactly_when_the_sandbox_works(server: RunningServer) -> None:
    tools = {t["name"]: t for t in httpx.get(f"{server.base_url}/api/tools", headers=server.headers(),
                                               timeout=30).json()["data"]}
    sandbox = PythonCodeTool(server.settings).availability()  # a fresh probe of this machine

    if os.environ.get("CI"):
        assert tools["python_code"]["available"] is True, tools["python_code"]["reason"]
    if sandbox.available:
        # the reason of an available sandbox names its isolation mode and what bounds a run on this host
        assert (tools["python_code"]["available"], tools["python_code"]["reason"]) == (True, sandbox.reason)
    else:
        assert tools["python_code"]["available"] is False
        assert tools["python_code"]["reason"] == sandbox.reason
        assert sandbox.reason.startswith("no sandbox can be set up: ")


def test_invoking_a_tool_returns_its_result(server: RunningServer) -> None:
    response = invoke(server, "math_calc", {"expression": "integrate x^2 from 0 to 3"})

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["tool"] == "math_calc"
    assert body["ok"] is True
    assert body["data"]["result"] == "9"
    assert body["text"] == "Integral(x**2, (x, 0, 3)) = 9"
    assert body["sources"] == []


def test_an_infinite_number_in_json_data_is_text_as_in_csv_not_a_500(server: RunningServer) -> None:
    from_json = invoke(server, "data_analysis", {"data": "[1e999, 2, -1e999]"})
    from_csv = invoke(server, "data_analysis", {"data": "value\n1e999\n2\n-1e999\n"})

    assert from_json.status_code == 200, from_json.text
    assert from_json.json()["ok"] is True, from_json.json()["text"]
    field = from_json.json()["data"]["fields"]["value"]
    assert field["type"] == "mixed"
    assert field["numeric"] == {"count": 1, "sum": 2, "min": 2, "max": 2, "mean": 2, "median": 2}
    assert field["top_values"] == [{"value": "1e999", "count": 1}, {"value": "-1e999", "count": 1}]
    assert field == from_csv.json()["data"]["fields"]["value"]


def test_a_sum_beyond_the_float_range_is_reported_not_a_500(server: RunningServer) -> None:
    response = invoke(server, "data_analysis", {"data": "[1e308, 1e308]"})

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["ok"] is True, body["text"]
    assert body["data"]["fields"]["value"]["numeric"] == {
        "count": 2, "sum": "Infinity", "min": 1e308, "max": 1e308, "mean": 1e308, "median": 1e308
    }
    assert "sum=inf" in body["text"]


def test_non_finite_sql_values_come_back_as_json_safe_strings(server: RunningServer) -> None:
    response = invoke(server, "sql_query", {"query": "SELECT 1e999 AS big, -1e999 AS small, 1.5 AS plain"})

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["ok"] is True, body["text"]
    assert body["data"]["columns"] == ["big", "small", "plain"]
    assert body["data"]["rows"] == [["Infinity", "-Infinity", 1.5]]
    assert "inf" in body["text"] and "-inf" in body["text"]


def test_unknown_tool_is_404_in_the_openai_error_shape(server: RunningServer) -> None:
    error = assert_error(invoke(server, "teleport", {}), 404, "tool_not_found")

    assert error["param"] == "name"
    assert "Unknown tool 'teleport'" in error["message"] and "math_calc" in error["message"]


@pytest.mark.parametrize(
    ("tool", "arguments", "param"),
    [
        ("math_calc", {}, "expression"),
        ("math_calc", {"expression": "1+1", "operation": "guess"}, "operation"),
        ("data_analysis", {"data": "a\n1", "format": "xml"}, "format"),
        ("sql_query", {"query": "SELECT 1", "database": "other"}, "database"),
        ("rag_retrieval", {"query": "x", "top_k": 0}, "top_k"),
    ],
)
def test_invalid_arguments_are_400_naming_the_field(server: RunningServer, tool: str, arguments: dict[str, Any],
                                                    param: str) -> None:
    error = assert_error(invoke(server, tool, arguments), 400, "invalid_tool_arguments")

    assert error["param"] == param
    assert error["type"] == "invalid_request_error"
    assert f"'{param}'" in error["message"]


def test_arguments_must_be_a_json_object(server: RunningServer) -> None:
    error = assert_error(invoke(server, "math_calc", ["1+1"]), 400, "invalid_tool_arguments")

    assert error["param"] is None
    assert "JSON object" in error["message"]


def test_a_failing_tool_is_200_with_ok_false_and_the_reason(server: RunningServer) -> None:
    response = invoke(server, "sql_query", {"query": "DELETE FROM customers"})

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["ok"] is False
    assert body["text"].startswith("The query failed: only reading statements")


def test_an_unavailable_tool_answers_with_its_reason(server: RunningServer) -> None:
    assert not (server.settings.tavily_api_key or server.settings.searxng_url)
    response = invoke(server, "web_search", {"query": "invoices"})

    assert response.status_code == 200
    assert response.json()["ok"] is False
    assert response.json()["text"] == "Tool 'web_search' is unavailable: set TAVILY_API_KEY or SEARXNG_URL"


def test_tools_run_as_the_signed_in_user_and_see_only_their_files(server: RunningServer) -> None:
    admin = admin_token(server)
    name, token = new_user_token(server, admin)
    files = DataLayout(server.settings.data_dir).user_files_dir(name)
    files.mkdir(parents=True, exist_ok=True)
    (files / "budget.csv").write_text("item,cost\nrent,900\nfood,310.5\n", encoding="utf-8")

    own = invoke(server, "sql_query", {"query": "SELECT sum(cost) AS total FROM budget"}, headers=bearer(token))
    others = invoke(server, "sql_query", {"query": "SELECT sum(cost) FROM budget"}, headers=bearer(admin))

    assert own.status_code == 200 and own.json()["ok"] is True, own.text
    assert own.json()["data"]["rows"] == [[1210.5]]
    assert others.json()["ok"] is False
    assert "no such table: budget" in others.json()["text"]


def test_python_code_runs_sandboxed_through_the_api(server: RunningServer) -> None:
    if not PythonCodeTool(server.settings).availability().available and not os.environ.get("CI"):
        pytest.skip("no sandbox on this machine")

    response = invoke(server, "python_code", {"code": "import os\nprint(6 * 7, os.getuid() != 0)"})

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["ok"] is True, body["text"]
    assert body["data"]["stdout"] == "42 True\n"
