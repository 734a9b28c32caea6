"""field_paths: one way to name the field a pydantic error points at, for the API and the tool registry."""

from __future__ import annotations

import pytest

from backend.field_paths import field_path, param_from_location


@pytest.mark.parametrize(
    ("location", "expected"),
    [((), None), (("query",), "query"), (("rows", 0, "name"), "rows[0].name"), (("a", "0", 1), "a.0[1]")],
)
def test_field_path_puts_list_indices_in_brackets_and_keys_after_dots(
    location: tuple[int | str, ...], expected: str | None
) -> None:
    assert field_path(location) == expected


@pytest.mark.parametrize(
    ("location", "expected"),
    [
        (("body", "messages", 0, "content"), "messages[0].content"),
        (("query", "limit"), "limit"),
        (("body",), None),
        (("body", "tool", "path"), "tool.path"),  # a field named like a request part keeps its name
    ],
)
def test_request_locations_lose_only_their_leading_request_part(
    location: tuple[int | str, ...], expected: str | None
) -> None:
    assert param_from_location(location) == expected
