"""Why an upload or a document request was refused: typed service errors with their status and code.

The parse worker reports a failure as a `reason` name; `error_for_reason` turns it back into one of
these, so the worker never needs to know about HTTP and the client always gets a clear message.
"""

from __future__ import annotations

from backend.service_errors import Conflict, InvalidInput, NotFound, ServiceError, Unprocessable


class EmptyFile(InvalidInput):
    code = "empty_file"


class UploadTooLarge(ServiceError):
    status = 413
    code = "file_too_large"


class DocumentTooLong(ServiceError):
    """The file was small enough but its text is not (a compressed PDF can hold far more text than bytes)."""

    status = 413
    code = "document_too_long"


class UnsupportedFileType(ServiceError):
    status = 415
    code = "unsupported_file_type"


class CorruptFile(Unprocessable):
    code = "corrupt_file"


class EncryptedFile(Unprocessable):
    code = "encrypted_file"


class UnsafeFile(Unprocessable):
    """Refused before parsing: a zip bomb, a DTD or external entity, too many zip entries."""

    code = "unsafe_file"


class NoText(Unprocessable):
    code = "no_text"


class ParseTimeout(Unprocessable):
    code = "parse_timeout"


class ParseResourcesExceeded(Unprocessable):
    code = "parse_resources_exceeded"


class TooManyDocuments(Conflict):
    code = "too_many_documents"


class DocumentNotFound(NotFound):
    code = "document_not_found"


_BY_REASON: dict[str, type[ServiceError]] = {
    "empty": EmptyFile,
    "too_long": DocumentTooLong,
    "unsupported": UnsupportedFileType,
    "corrupt": CorruptFile,
    "encrypted": EncryptedFile,
    "unsafe": UnsafeFile,
    "no_text": NoText,
    "timeout": ParseTimeout,
    "resources": ParseResourcesExceeded,
}


def too_long_message(max_chars: int) -> str:
    return f"The document's text is longer than the limit of {max_chars:,} characters (MAX_DOCUMENT_CHARS)."


class ParseRefusal(Exception):
    """Raised inside the parse worker; carries a reason name from `_BY_REASON` and a message for the client."""

    def __init__(self, reason: str, message: str) -> None:
        if reason not in _BY_REASON:
            raise ValueError(f"unknown refusal reason {reason!r}")
        super().__init__(message)
        self.reason = reason
        self.message = message


def error_for_reason(reason: str, message: str) -> ServiceError:
    """The client-facing error for a worker's refusal; an unknown reason is treated as a corrupt file."""
    return _BY_REASON.get(reason, CorruptFile)(message, param="file")
