"""`data_analysis`: descriptive statistics of JSON or CSV text, per field.

Nested JSON is flattened to dotted paths (`order.customer.city`); array elements are pooled under
their array's path, so `items.price` summarises every item's price across all records.
"""

from __future__ import annotations

import json
import math
import statistics
from collections import Counter
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, StringConstraints

from backend.tools.base import Availability, ToolContext, ToolResult
from backend.tools.csv_table import CsvTable, InvalidCsv, cell_value
from backend.tools.thread_pools import ToolThreadPool

MAX_INPUT_CHARS = 2_000_000
"""Large enough for a real export, small enough that parsing stays well under a second."""
MAX_DEPTH = 64
MAX_FIELDS = 500
TOP_VALUES = 10
"""Distinct values listed per text field; the count of all distinct values is always given."""
THREADS = 2
PER_USER = 1
"""Analyses one user may have in progress: with two threads, one user's flood always leaves one for the others."""


class DataAnalysisArgs(BaseModel):
    data: Annotated[str, StringConstraints(min_length=1, max_length=MAX_INPUT_CHARS)] = Field(
        description="The data itself as text: JSON (object or array, may be nested) or CSV with a header row."
    )
    format: Literal["auto", "json", "csv"] = Field(
        "auto", description="`json`, `csv`, or `auto` to detect (JSON if it starts with { or [)."
    )


class InvalidData(ValueError):
    """Input that cannot be analysed; the message says what and where."""


@dataclass
class FieldStats:
    """Every value seen under one path, split by kind."""

    numbers: list[float] = field(default_factory=list)
    texts: Counter[str] = field(default_factory=Counter)
    missing: int = 0

    def summary(self) -> dict[str, Any]:
        present = len(self.numbers) + sum(self.texts.values())
        kind = "numeric" if self.numbers and not self.texts else "text" if self.texts and not self.numbers else (
            "mixed" if self.numbers else "empty"
        )
        out: dict[str, Any] = {"type": kind, "count": present, "missing": self.missing}
        if self.numbers:
            values = self.numbers
            total, mean = _sum_and_mean(values)
            out["numeric"] = {
                "count": len(values),
                "sum": _tidy(total),
                "min": _tidy(min(values)),
                "max": _tidy(max(values)),
                "mean": _tidy(mean),
                "median": _tidy(_median(values)),
            }
        if self.texts:
            out["distinct"] = len(self.texts)
            out["top_values"] = [{"value": v, "count": c} for v, c in self.texts.most_common(TOP_VALUES)]
        return out


def _sum_and_mean(values: list[float]) -> tuple[float, float]:
    """Exact sums (fsum); where finite values add up beyond the float range the sum is ±inf, the mean still right."""
    try:
        total = math.fsum(values)
    except OverflowError:  # fsum raises instead of returning inf; adding scaled-down values cannot overflow
        mean = math.fsum(value / len(values) for value in values)
        return mean * len(values), mean
    return total, total / len(values)


def _median(values: list[float]) -> float:
    """`statistics.median`, except that two huge middle values average to themselves, not to inf."""
    middle = statistics.median(values)
    if math.isfinite(middle):
        return middle
    ordered = sorted(values)
    return ordered[len(ordered) // 2 - 1] / 2 + ordered[len(ordered) // 2] / 2


def _tidy(value: float) -> int | float:
    """Whole numbers print as integers; others keep 12 significant digits against float noise."""
    if value.is_integer() and abs(value) < 2**53:
        return int(value)
    return float(f"{value:.12g}")


class Collector:
    def __init__(self) -> None:
        self.fields: dict[str, FieldStats] = {}

    def stats(self, path: str) -> FieldStats:
        if path not in self.fields:
            if len(self.fields) >= MAX_FIELDS:
                raise InvalidData(f"more than {MAX_FIELDS} distinct fields; analyse a smaller part of the data")
            self.fields[path] = FieldStats()
        return self.fields[path]

    def add_json(self, value: Any, path: str, depth: int = 0) -> None:
        if depth > MAX_DEPTH:
            raise InvalidData(f"nesting deeper than {MAX_DEPTH} levels at '{path or '(root)'}'")
        if isinstance(value, dict):
            for key, inner in value.items():
                self.add_json(inner, f"{path}.{key}" if path else str(key), depth + 1)
        elif isinstance(value, list):
            for inner in value:
                self.add_json(inner, path, depth + 1)
        else:
            target = self.stats(path or "value")
            if value is None:
                target.missing += 1
            elif isinstance(value, bool):
                target.texts["true" if value else "false"] += 1
            elif isinstance(value, (int, float)):
                target.numbers.append(float(value))
            else:
                target.texts[str(value)] += 1

    def add_csv_cell(self, column: str, cell: str | None) -> None:
        """Typed by `csv_table.cell_value`, the rule `sql_query` follows too: 'nan', 'inf', '1e999' are text."""
        target = self.stats(column)
        value = cell_value(cell)
        if value is None:
            target.missing += 1
        elif isinstance(value, str):
            target.texts[value] += 1
        else:
            target.numbers.append(float(value))


def _reject_constant(name: str) -> float:
    raise InvalidData(f"invalid JSON: {name} is not a JSON number")


def _json_number(text: str) -> float | str:
    """A JSON number as a float when finite; one beyond the float range ('1e999') stays text, as in a CSV cell."""
    number = float(text)
    return number if math.isfinite(number) else text


def analyse_json(text: str) -> tuple[int, Collector]:
    try:
        # Integers too go through float: a 400-digit one would otherwise overflow float() later.
        value = json.loads(text, parse_constant=_reject_constant, parse_float=_json_number, parse_int=_json_number)
    except json.JSONDecodeError as error:
        raise InvalidData(f"invalid JSON at line {error.lineno}, column {error.colno}: {error.msg}") from None
    except RecursionError:
        raise InvalidData("invalid JSON: nested too deeply") from None
    collector = Collector()
    collector.add_json(value, "")
    records = len(value) if isinstance(value, list) else 1
    return records, collector


def analyse_csv(text: str) -> tuple[int, Collector]:
    try:
        table = CsvTable(text)
        columns = _unique_columns(table.header)
        collector = Collector()
        for column in columns:
            collector.stats(column)
        rows = 0
        for row in table.rows():
            if len(row) > len(columns):
                raise InvalidData(f"CSV line {table.line} has {len(row)} fields but the header has {len(columns)}")
            rows += 1
            for index, column in enumerate(columns):
                collector.add_csv_cell(column, row[index] if index < len(row) else None)
    except InvalidCsv as error:
        raise InvalidData(str(error)) from None
    if rows == 0:
        raise InvalidData("the CSV has a header but no data rows")
    return rows, collector


def _unique_columns(header: list[str]) -> list[str]:
    names: list[str] = []
    for index, raw in enumerate(header, start=1):
        name = raw.strip() or f"column_{index}"
        candidate, suffix = name, 2
        while candidate in names:
            candidate, suffix = f"{name}_{suffix}", suffix + 1
        names.append(candidate)
    return names


def detect_format(text: str) -> Literal["json", "csv"]:
    return "json" if text.lstrip()[:1] in ("{", "[") else "csv"


def analyse(text: str, fmt: Literal["auto", "json", "csv"]) -> dict[str, Any]:
    """The whole analysis as plain data; raises `InvalidData` with a message for the user."""
    if not text.strip():
        raise InvalidData("the data is empty")
    chosen = detect_format(text) if fmt == "auto" else fmt
    records, collector = analyse_json(text) if chosen == "json" else analyse_csv(text)
    return {
        "format": chosen,
        "records": records,
        "fields": {path: stats.summary() for path, stats in collector.fields.items()},
    }


def render(report: dict[str, Any]) -> str:
    lines = [f"{report['format'].upper()} data: {report['records']} record(s), {len(report['fields'])} field(s)."]
    for path, summary in report["fields"].items():
        missing = f", {summary['missing']} missing" if summary["missing"] else ""
        lines.append(f"- {path} ({summary['type']}, {summary['count']} value(s){missing})")
        if "numeric" in summary:
            n = summary["numeric"]
            lines.append(
                f"    count={n['count']} sum={n['sum']} min={n['min']} max={n['max']} "
                f"mean={n['mean']} median={n['median']}"
            )
        if "top_values" in summary:
            shown = ", ".join(f"{item['value']!r}: {item['count']}" for item in summary["top_values"])
            more = summary["distinct"] - len(summary["top_values"])
            lines.append(f"    {summary['distinct']} distinct: {shown}" + (f" (+{more} more)" if more else ""))
    return "\n".join(lines)


class DataAnalysisTool:
    name = "data_analysis"
    description = (
        "Compute statistics of data given as JSON or CSV text: for each numeric field count, sum, min, max, "
        "mean and median; for each text field the number of distinct values and the most frequent ones. "
        "Nested JSON fields appear as dotted paths such as `order.total`."
    )
    args_model = DataAnalysisArgs

    def __init__(self) -> None:
        self._threads = ToolThreadPool("data_analysis", THREADS, PER_USER, "data analyses")

    def availability(self) -> Availability:
        return Availability(True)

    async def run(self, args: DataAnalysisArgs, context: ToolContext) -> ToolResult:
        """Raises `TooManyRequests` when the user already has an analysis in progress."""
        try:
            report = await self._threads.run(context.user.username, analyse, args.data, args.format)
        except InvalidData as error:
            return ToolResult.failure(f"Cannot analyse the data: {error}.")
        return ToolResult(ok=True, text=render(report), data=report)

    async def aclose(self) -> None:
        await self._threads.aclose()
