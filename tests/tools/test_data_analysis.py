"""data_analysis: statistics of nested JSON and CSV, clear refusals of bad input, one analysis per user at once."""

from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path

import pytest

from backend.auth.models import User
from backend.config import load_settings
from backend.service_errors import TooManyRequests
from backend.tools.base import ToolContext, ToolResult
from backend.tools.data_analysis import MAX_INPUT_CHARS, DataAnalysisArgs, DataAnalysisTool
from backend.tools.registry import InvalidToolArguments, ToolRegistry

ORDERS = [
    {"id": 1, "customer": {"name": "Ada", "address": {"city": "Paris"}}, "total": 10.5, "paid": True,
     "items": [{"sku": "A", "qty": 2}, {"sku": "B", "qty": 1}]},
    {"id": 2, "customer": {"name": "Ben", "address": {"city": "Lyon"}}, "total": 4, "paid": False,
     "items": [{"sku": "A", "qty": 5}]},
    {"id": 3, "customer": {"name": "Cleo", "address": {"city": "Paris"}}, "total": None, "paid": True,
     "items": []},
]


async def analyse(tmp_path: Path, data: str, fmt: str = "auto") -> ToolResult:
    context = ToolContext(user=User("alice"), settings=load_settings(data_dir=tmp_path))
    return await DataAnalysisTool().run(DataAnalysisArgs(data=data, format=fmt), context)


async def test_nested_json_is_flattened_to_dotted_paths_with_numeric_statistics(tmp_path: Path) -> None:
    result = await analyse(tmp_path, json.dumps(ORDERS))

    assert result.ok, result.text
    fields = result.data["fields"]
    assert result.data["records"] == 3
    assert list(fields) == ["id", "customer.name", "customer.address.city", "total", "paid", "items.sku", "items.qty"]
    assert fields["total"] == {
        "type": "numeric", "count": 2, "missing": 1,
        "numeric": {"count": 2, "sum": 14.5, "min": 4, "max": 10.5, "mean": 7.25, "median": 7.25},
    }
    assert fields["items.qty"]["numeric"] == {"count": 3, "sum": 8, "min": 1, "max": 5, "mean": 2.66666666667,
                                              "median": 2}
    assert fields["id"]["numeric"]["median"] == 2


async def test_text_fields_get_distinct_value_counts(tmp_path: Path) -> None:
    result = await analyse(tmp_path, json.dumps(ORDERS))

    city = result.data["fields"]["customer.address.city"]
    assert city["type"] == "text"
    assert city["distinct"] == 2
    assert city["top_values"] == [{"value": "Paris", "count": 2}, {"value": "Lyon", "count": 1}]
    paid = result.data["fields"]["paid"]
    assert paid["top_values"] == [{"value": "true", "count": 2}, {"value": "false", "count": 1}]
    assert result.data["fields"]["items.sku"]["top_values"] == [{"value": "A", "count": 2}, {"value": "B", "count": 1}]
    assert "- customer.address.city (text, 3 value(s))\n    2 distinct: 'Paris': 2, 'Lyon': 1" in result.text


async def test_a_single_json_object_is_one_record(tmp_path: Path) -> None:
    result = await analyse(tmp_path, '{"sensor": {"readings": [1, 2, 3, 10]}, "unit": "C"}')

    assert result.data["records"] == 1
    assert result.data["fields"]["sensor.readings"]["numeric"] == {
        "count": 4, "sum": 16, "min": 1, "max": 10, "mean": 4, "median": 2.5
    }


async def test_csv_columns_are_typed_and_summarised_with_missing_cells_counted(tmp_path: Path) -> None:
    data = "city,temp,rain\nParis,12.5,0\nLyon,15,2.5\nParis,,1\nNice,20.5,\n"

    result = await analyse(tmp_path, data)

    assert result.ok, result.text
    assert result.data["format"] == "csv"
    assert result.data["records"] == 4
    temp = result.data["fields"]["temp"]
    assert temp["missing"] == 1
    assert temp["numeric"] == {"count": 3, "sum": 48, "min": 12.5, "max": 20.5, "mean": 16, "median": 15}
    assert result.data["fields"]["city"]["top_values"][0] == {"value": "Paris", "count": 2}
    assert "    count=3 sum=48 min=12.5 max=20.5 mean=16 median=15" in result.text


async def test_semicolon_csv_is_detected(tmp_path: Path) -> None:
    result = await analyse(tmp_path, "name;score\na;1\nb;3\n")

    assert result.data["fields"]["score"]["numeric"]["mean"] == 2


async def test_mixed_column_reports_both_kinds(tmp_path: Path) -> None:
    result = await analyse(tmp_path, "v\n1\n2\nn/a\nnan\n")

    field = result.data["fields"]["v"]
    assert field["type"] == "mixed"
    assert field["numeric"]["sum"] == 3
    assert field["top_values"] == [{"value": "n/a", "count": 1}, {"value": "nan", "count": 1}]


async def test_json_numbers_beyond_the_float_range_stay_text_as_in_csv(tmp_path: Path) -> None:
    huge = "9" * 400  # a valid JSON integer that no float can hold
    from_json = await analyse(tmp_path, f'{{"a": [1e999, 1, {huge}, -2e999]}}')
    from_csv = await analyse(tmp_path, f"a\n1e999\n1\n{huge}\n-2e999\n")

    assert from_json.ok, from_json.text
    field = from_json.data["fields"]["a"]
    assert field["numeric"] == {"count": 1, "sum": 1, "min": 1, "max": 1, "mean": 1, "median": 1}
    assert [item["value"] for item in field["top_values"]] == ["1e999", huge, "-2e999"]
    assert field == from_csv.data["fields"]["a"]


@pytest.mark.parametrize("data", ["[1e308, 1e308]", "v\n1e308\n1e308\n"])
async def test_a_sum_beyond_the_float_range_is_infinite_while_mean_and_median_stay_exact(
    tmp_path: Path, data: str
) -> None:
    result = await analyse(tmp_path, data)

    assert result.ok, result.text
    numeric = next(iter(result.data["fields"].values()))["numeric"]
    assert numeric == {"count": 2, "sum": math.inf, "min": 1e308, "max": 1e308, "mean": 1e308, "median": 1e308}


async def test_huge_values_that_cancel_out_still_sum_exactly(tmp_path: Path) -> None:
    result = await analyse(tmp_path, "[1e308, 1e308, -1e308]")

    assert result.data["fields"]["value"]["numeric"]["sum"] == 1e308


@pytest.mark.parametrize(
    ("data", "fmt", "message"),
    [
        ('{"a": 1,', "auto", "Cannot analyse the data: invalid JSON at line 1, column 9: Expecting property name"),
        ('[1, NaN]', "json", "Cannot analyse the data: invalid JSON: NaN is not a JSON number."),
        ("a,b\n1,2,3\n", "csv", "Cannot analyse the data: CSV line 2 has 3 fields but the header has 2."),
        ("a,b\n", "csv", "Cannot analyse the data: the CSV has a header but no data rows."),
        ("   \n", "auto", "Cannot analyse the data: the data is empty."),
        ("[" * 100 + "]" * 100, "json", "Cannot analyse the data: nesting deeper than 64 levels at '(root)'."),
    ],
)
async def test_invalid_input_gets_a_clear_error(tmp_path: Path, data: str, fmt: str, message: str) -> None:
    result = await analyse(tmp_path, data, fmt)

    assert not result.ok
    assert result.text.startswith(message)


async def test_input_over_the_size_cap_is_refused_naming_the_field(tmp_path: Path) -> None:
    registry = ToolRegistry(timeout_s=10)
    registry.register(DataAnalysisTool())
    context = ToolContext(user=User("alice"), settings=load_settings(data_dir=tmp_path))

    with pytest.raises(InvalidToolArguments) as raised:
        await registry.invoke("data_analysis", {"data": "x" * (MAX_INPUT_CHARS + 1)}, context)

    assert raised.value.field == "data"
    assert "at most 2000000 characters" in raised.value.message


async def test_a_second_analysis_of_the_same_user_is_refused_while_another_users_runs(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path)
    big = "a,b,c\n" + "\n".join(f"{i},{i * 1.5},name{i % 50}" for i in range(60_000))
    tool = DataAnalysisTool()
    alice, bob = ToolContext(User("alice"), settings), ToolContext(User("bob"), settings)
    try:
        first = asyncio.create_task(tool.run(DataAnalysisArgs(data=big), alice))
        await asyncio.sleep(0)
        with pytest.raises(TooManyRequests) as refused:
            await tool.run(DataAnalysisArgs(data="x\n1\n"), alice)
        bobs = await tool.run(DataAnalysisArgs(data="x\n1\n"), bob)
        alices = await first
        again = await tool.run(DataAnalysisArgs(data="x\n2\n"), alice)
    finally:
        await tool.aclose()

    assert refused.value.message.startswith("You already have 1 data analyses in progress (the limit per user)")
    assert bobs.ok and bobs.data["fields"]["x"]["numeric"]["sum"] == 1
    assert alices.ok and alices.data["records"] == 60_000
    assert again.ok
