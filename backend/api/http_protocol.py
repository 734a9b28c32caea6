"""uvicorn's HTTP/1.1 protocol with timeouts for slow clients (slowloris): request headers and stalled bodies.

uvicorn times out idle keep-alive connections only: a connection that sends half a header line, or
a body that stops midway, stays open forever. This subclass of its httptools protocol adds two
timers per connection, the way nginx's client_header_timeout and client_body_timeout work:
the headers must be complete within CLIENT_HEADER_TIMEOUT_S of the connection (or of the request's
first byte on a kept-alive one), and a body may pause at most CLIENT_BODY_TIMEOUT_S between reads.
Either answers 408 in the OpenAI error shape, if no response has started, and closes the connection.
A body still arriving after its response (a 401 before it was read) is discarded only up to the
largest body any route accepts; past that the connection is closed instead of read forever.
Passed to uvicorn as `http=` by run_backend.py (and the tests' server).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any, ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from backend.api.errors import APIError
from backend.api.security_headers import API_CSP, security_headers
from backend.config import Settings


class SlowClientTimeouts(HttpToolsProtocol):
    header_timeout_s: ClassVar[float] = 10.0
    body_timeout_s: ClassVar[float] = 30.0
    max_discarded_bytes: ClassVar[int] = 25 * 1024 * 1024

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._timer: asyncio.TimerHandle | None = None
        self._reading_headers = False
        self._discarded = 0

    def _arm(self, delay: float, callback: Callable[[], None]) -> None:
        self._disarm()
        self._timer = self.loop.call_later(delay, callback)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self.header_timeout_s, self._headers_too_slow)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    # httptools parser callbacks
    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._reading_headers = True
        if self._timer is None:  # a kept-alive connection's next request: its clock starts now
            self._arm(self.header_timeout_s, self._headers_too_slow)

    def on_headers_complete(self) -> None:
        self._disarm()
        self._reading_headers = False
        super().on_headers_complete()
        self._arm(self.body_timeout_s, self._body_too_slow)

    def on_body(self, body: bytes) -> None:
        super().on_body(body)
        if self.cycle.response_complete:  # answered already: uvicorn reads on only to discard it
            self._discarded += len(body)
            if self._discarded > self.max_discarded_bytes:
                self._disarm()
                self.transport.close()
                return
        self._arm(self.body_timeout_s, self._body_too_slow)

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._disarm()
        self._discarded = 0

    # timers
    def _headers_too_slow(self) -> None:
        self._timer = None
        # A connection that never sent a byte (a browser's preconnect) is closed without an answer.
        idle = self.cycle is None or self.cycle.response_complete
        self._give_up("The request headers did not arrive in time.", answer=self._reading_headers and idle)

    def _body_too_slow(self) -> None:
        self._timer = None
        if self.flow.read_paused:
            # The app has not read the buffered body yet: the wait is ours, not the client's.
            self._arm(self.body_timeout_s, self._body_too_slow)
            return
        self._give_up("The request body stalled.", answer=self.cycle is not None and not self.cycle.response_started)

    def _give_up(self, message: str, *, answer: bool) -> None:
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            # As when the client leaves: the app's receive() sees a disconnect and its answer is dropped.
            self.cycle.disconnected = True
            self.cycle.message_event.set()
        if answer:
            self.transport.write(self._timeout_response(message))
        self.transport.close()

    def _timeout_response(self, message: str) -> bytes:
        body = json.dumps(APIError(408, message, code="request_timeout").body()).encode()
        headers = [
            *self.server_state.default_headers,
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
            *security_headers(API_CSP),
        ]
        head = b"HTTP/1.1 408 Request Timeout\r\n" + b"".join(name + b": " + value + b"\r\n" for name, value in headers)
        return head + b"\r\n" + body


def slow_client_protocol(settings: Settings) -> type[SlowClientTimeouts]:
    """The protocol class for uvicorn's `http=`, with the settings' timeouts."""

    class Configured(SlowClientTimeouts):
        header_timeout_s = settings.client_header_timeout_s
        body_timeout_s = settings.client_body_timeout_s
        max_discarded_bytes = max(settings.max_request_mb, settings.max_upload_mb) * 1024 * 1024

    return Configured
