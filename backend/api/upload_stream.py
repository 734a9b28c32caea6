"""Receiving a multipart upload into a temp file while it streams in, bounded by MAX_UPLOAD_MB.

Starlette's `request.form()` spools the whole body before the route runs; here a declared
Content-Length over the limit is refused before a byte of the body is read, and an unannounced
(chunked) body is counted as it arrives and refused the moment it passes the limit. The file part is
hashed (SHA-256) as it is written, so the document's identity costs no second pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

from fastapi import Request
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect

from backend.rag.document_errors import UploadTooLarge
from backend.rag.document_service import IncomingFile
from backend.service_errors import InvalidInput

MB = 1024 * 1024
FILE_FIELD = "file"


class BadUpload(InvalidInput):
    code = "invalid_upload"


def too_large(limit_mb: int) -> UploadTooLarge:
    return UploadTooLarge(
        f"The upload is larger than the limit of {limit_mb} MB (MAX_UPLOAD_MB).", param="file",
        headers={"Connection": "close"},
    )


class _FilePart:
    """Collects the one `file` part of the form; other fields are ignored, a second file is refused."""

    def __init__(self) -> None:
        self.header_field = bytearray()
        self.header_value = bytearray()
        self.headers: dict[bytes, bytes] = {}
        self.in_file = False
        self.filename: str | None = None
        self.pending = bytearray()
        self.error: str | None = None
        self.ended = False

    def callbacks(self) -> dict[str, object]:
        return {
            "on_part_begin": self._part_begin, "on_header_field": self._header_field,
            "on_header_value": self._header_value, "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished, "on_part_data": self._part_data,
            "on_part_end": self._part_end, "on_end": self._end,
        }

    def _part_begin(self) -> None:
        self.headers = {}

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self.header_field.extend(data[start:end])

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self.header_value.extend(data[start:end])

    def _header_end(self) -> None:
        self.headers[bytes(self.header_field).lower()] = bytes(self.header_value)
        self.header_field.clear()
        self.header_value.clear()

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self.headers.get(b"content-disposition", b""))
        if options.get(b"name", b"").decode("utf-8", "replace") != FILE_FIELD:
            return
        if self.filename is not None:
            self.error = f"Send one file per upload, in the field '{FILE_FIELD}'."
            return
        self.in_file = True
        self.filename = options.get(b"filename", b"").decode("utf-8", "replace")

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self.in_file:
            self.pending.extend(data[start:end])

    def _part_end(self) -> None:
        self.in_file = False

    def _end(self) -> None:
        self.ended = True


def _boundary(request: Request) -> bytes:
    kind, options = parse_options_header(request.headers.get("content-type", ""))
    boundary = options.get(b"boundary")
    if kind != b"multipart/form-data" or not boundary:
        raise BadUpload(
            f"Send the document as multipart/form-data with the file in the field '{FILE_FIELD}' "
            "(curl -F file=@report.pdf).", param="file",
        )
    return boundary


async def _body(request: Request) -> AsyncIterator[bytes]:
    try:
        async for block in request.stream():
            yield block
    except ClientDisconnect:
        raise BadUpload("The client went away before the upload was complete.", param="file") from None


@contextlib.asynccontextmanager
async def received_upload(request: Request, limit_mb: int, folder: Path) -> AsyncIterator[IncomingFile]:
    """The upload in a temp file in `folder`, removed on exit unless the block moved it elsewhere."""
    limit = limit_mb * MB
    declared = request.headers.get("content-length", "")
    if declared.strip().isdigit() and int(declared) > limit:
        raise too_large(limit_mb)
    boundary = _boundary(request)
    await asyncio.to_thread(folder.mkdir, mode=0o700, parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(dir=folder, prefix=".upload-", suffix=".part")
    temp = Path(temp_name)
    try:
        part = _FilePart()
        parser = MultipartParser(boundary, part.callbacks())  # type: ignore[arg-type]
        digest = hashlib.sha256()
        received = size = 0
        with os.fdopen(handle, "wb") as out:
            async for block in _body(request):
                received += len(block)
                if received > limit:
                    raise too_large(limit_mb)
                try:
                    parser.write(block)
                except MultipartParseError as error:
                    raise BadUpload("The multipart body is malformed.", param="file") from error
                if part.error:
                    raise BadUpload(part.error, param="file")
                if part.pending:
                    data = bytes(part.pending)
                    part.pending.clear()
                    digest.update(data)
                    size += len(data)
                    await asyncio.to_thread(out.write, data)
            parser.finalize()
        if not part.ended:
            raise BadUpload("The multipart body ended before its closing boundary.", param="file")
        if part.filename is None:
            raise BadUpload(f"The form has no file in the field '{FILE_FIELD}'.", param="file")
        yield IncomingFile(path=temp, filename=part.filename, size=size, sha256=digest.hexdigest())
    finally:
        temp.unlink(missing_ok=True)
