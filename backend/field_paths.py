"""Turn a pydantic error location into the field name clients see, e.g. `messages[0].content`.

Shared by the API's validation errors and the tool registry's argument errors, so both name a field
the same way.
"""

from __future__ import annotations

from collections.abc import Sequence

REQUEST_PARTS = frozenset({"body", "query", "path", "header", "cookie"})
"""FastAPI's first location element: where in the request the field was, not part of its name."""


def field_path(location: Sequence[int | str]) -> str | None:
    """`("rows", 0, "name")` → `rows[0].name`; list indices in brackets, None for the whole value."""
    if not location:
        return None
    text = str(location[0])
    for part in location[1:]:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text


def param_from_location(location: Sequence[int | str]) -> str | None:
    """A FastAPI request error location (`("body", "messages", 0)`) as the OpenAI `param` (`messages[0]`)."""
    if location and location[0] in REQUEST_PARTS:
        location = location[1:]
    return field_path(location)
