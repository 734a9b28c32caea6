"""Request bodies parsed by a dependency, so that a route's credentials are checked before its body is read.

FastAPI reads and validates a declared body (`body: Model`) before it runs the route's dependencies:
a stranger's body was parsed before the 401. A route instead takes its body as
`Annotated[Model, Depends(json_body(Model))]` after its user (FastAPI resolves dependencies in the
order of the signature) and documents it with `openapi_extra=body_docs(Model)`.

This is also the one place where every body's text is checked: a string that is not valid Unicode
(a lone surrogate such as `"\\ud800"`) is a 400 here, before it can fail to encode anywhere later.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn

import anyio
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import TypeAdapter, ValidationError
from starlette.requests import ClientDisconnect

from backend.api.deps import SettingsDep
from backend.api.errors import APIError
from backend.config import Settings
from backend.field_paths import field_path

FORM_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data"})
SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
"""Only a `\\uD800`-`\\uDFFF` escape can put a surrogate into decoded JSON (raw ones are invalid UTF-8)."""
OFF_LOOP_BYTES = 256 * 1024
"""Bodies larger than this are decoded and validated on a worker thread, not on the event loop."""

BodyParser = Callable[[Request, Settings], Awaitable[Any]]


def json_body(schema: Any, *, forms: bool = False, required: bool = True) -> BodyParser:
    """A dependency reading the (size-bounded) body as JSON, or as a form when `forms`, validated as `schema`.

    Validators see the settings as the validation context (`info.context["settings"]`), so request
    limits are checked at the schema layer. Without `required`, an empty body is `None`.
    """
    adapter: TypeAdapter[Any] = TypeAdapter(schema)

    def validate(payload: Any, settings: Settings) -> Any:
        try:
            return adapter.validate_python(payload, context={"settings": settings})
        except ValidationError as error:
            problems = [{**problem, "loc": ("body", *problem["loc"])} for problem in error.errors(include_url=False)]
            raise RequestValidationError(problems) from None

    def decode_and_validate(raw: bytes, settings: Settings) -> Any:
        return validate(decode_json(raw), settings)

    async def parse_body(request: Request, settings: SettingsDep) -> Any:
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        try:
            if forms and content_type in FORM_TYPES:
                async with request.form() as form:
                    fields = {key: value for key, value in form.items() if isinstance(value, str)}
                reject_invalid_text(fields)
                return validate(fields, settings)
            raw = await request.body()
        except ClientDisconnect:
            raise APIError(499, "The client closed the request.", code="client_closed_request") from None
        if not raw.strip():
            if required:
                raise RequestValidationError([{"type": "missing", "loc": ("body",), "msg": "A body is required."}])
            return validate(None, settings)
        if len(raw) > OFF_LOOP_BYTES:
            return await anyio.to_thread.run_sync(decode_and_validate, raw, settings)
        return decode_and_validate(raw, settings)

    return parse_body


def decode_json(raw: bytes) -> Any:
    """The body as JSON (UTF-8, as RFC 8259 requires), with every string and key valid Unicode."""
    try:
        text = raw.decode("utf-8").removeprefix("\ufeff")
        payload = json.loads(text)
    except RecursionError:
        raise APIError(400, "The body is nested too deeply.", code="invalid_body") from None
    except ValueError as error:  # JSONDecodeError, UnicodeDecodeError, too many digits
        raise APIError(400, f"The body is not valid JSON: {error}.", code="invalid_body") from None
    if SURROGATE_ESCAPE.search(text):
        reject_invalid_text(payload)
    return payload


def reject_invalid_text(payload: Any) -> None:
    """400 naming the first string (or the object holding the first key) that is not valid Unicode."""
    stack: list[tuple[tuple[int | str, ...], Any]] = [((), payload)]
    while stack:  # a loop, not recursion: nesting depth is the client's choice
        path, value = stack.pop()
        if isinstance(value, str):
            if not _is_valid_text(value):
                _refuse(path)
        elif isinstance(value, dict):
            if not all(_is_valid_text(key) for key in value if isinstance(key, str)):
                _refuse(path)  # the key itself is not echoed: it cannot be encoded
            stack.extend(((*path, key), item) for key, item in reversed(value.items()))
        elif isinstance(value, list):
            stack.extend(((*path, index), item) for index, item in reversed(list(enumerate(value))))


def _is_valid_text(text: str) -> bool:
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _refuse(path: tuple[int | str, ...]) -> NoReturn:
    param = field_path(path)
    where = f"Invalid value for '{param}': " if param else ""
    raise APIError(
        400, f"{where}text must be valid Unicode (a lone surrogate such as \\ud800 is not).",
        param=param, code="invalid_unicode",
    )


def body_docs(schema: Any, *, required: bool = True, description: str | None = None) -> dict[str, Any]:
    """`openapi_extra` documenting a `json_body(schema)` as the route's JSON request body."""
    json_schema = _inline_definitions(TypeAdapter(schema).json_schema())
    body: dict[str, Any] = {"required": required, "content": {"application/json": {"schema": json_schema}}}
    if description:
        body["description"] = description
    return {"requestBody": body}


def _inline_definitions(schema: dict[str, Any]) -> dict[str, Any]:
    """Replace pydantic's `#/$defs/...` references (which an OpenAPI document cannot resolve) by their targets.

    The request models here are not recursive, so inlining ends.
    """
    definitions = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                rest = {key: value for key, value in node.items() if key != "$ref"}
                return resolve({**definitions[ref.removeprefix("#/$defs/")], **rest})
            return {key: resolve(value) for key, value in node.items()}
        if isinstance(node, list):
            return [resolve(item) for item in node]
        return node

    resolved: dict[str, Any] = resolve(schema)
    return resolved
