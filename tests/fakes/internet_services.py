"""Loopback stand-ins for the internet services the tools call: real HTTP servers on 127.0.0.1.

Each `LoopbackServer` runs `http.server.ThreadingHTTPServer` in a thread, records every request it gets
(method, path, query, headers, body) and answers through a responder function. The responders below speak
each service's documented wire format: Tavily's `POST /search`, SearXNG's `GET /search?format=json`,
Open-Meteo's geocoding and forecast APIs, and the MediaWiki action API as the `wikipedia` package calls it.
Failure modes (status codes, garbage, silence, trickling bodies) are replies like any other.
"""

from __future__ import annotations

import json
import re
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, timedelta
from html import escape
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    """Each query parameter's last value; the services here never repeat one."""
    headers: dict[str, str]
    """Names lower-cased."""
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass(frozen=True)
class Reply:
    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    delay_s: float = 0.0
    """Wait this long before answering at all."""
    trickle_s: float = 0.0
    """Send the body one byte at a time with this pause between bytes."""

    @classmethod
    def json(cls, payload: Any, status: int = 200) -> Reply:
        return cls(status=status, body=json.dumps(payload).encode())


Responder = Callable[[RecordedRequest], Reply]


class LoopbackServer:
    """A real HTTP server on a free loopback port, for the duration of a `with` block."""

    def __init__(self, responder: Responder) -> None:
        self.responder = responder
        self.requests: list[RecordedRequest] = []
        self._stopping = threading.Event()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.02,), daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def __enter__(self) -> LoopbackServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopping.set()  # wakes handlers that are deliberately slow
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=10)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                self._serve()

            def do_POST(self) -> None:
                self._serve()

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep test output clean

            def _serve(self) -> None:
                split = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                recorded = RecordedRequest(
                    method=self.command,
                    path=split.path,
                    query={key: values[-1] for key, values in parse_qs(split.query, keep_blank_values=True).items()},
                    headers={name.lower(): value for name, value in self.headers.items()},
                    body=self.rfile.read(length) if length else b"",
                )
                server.requests.append(recorded)
                reply = server.responder(recorded)
                if reply.delay_s and server._stopping.wait(reply.delay_s):
                    return
                try:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", reply.content_type)
                    self.send_header("Content-Length", str(len(reply.body)))
                    self.end_headers()
                    if not reply.trickle_s:
                        self.wfile.write(reply.body)
                        return
                    for index in range(len(reply.body)):
                        self.wfile.write(reply.body[index : index + 1])
                        self.wfile.flush()
                        if server._stopping.wait(reply.trickle_s):
                            return
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up, as it should after its timeout

        return Handler


@contextmanager
def refused_url(path: str = "") -> Iterator[str]:
    """Yield a loopback URL on which every connection is refused: the port is held, bound but not listening."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}{path}"


GARBAGE = Reply(status=200, body=b"<html><body>Gateway says hello</body></html>", content_type="text/html")
SERVER_ERROR = Reply.json({"error": "internal"}, status=500)


def silent_for(seconds: float) -> Responder:
    """Accept the connection, then say nothing for `seconds` (or until the server stops)."""
    return lambda request: Reply(delay_s=seconds, body=b"{}")


# --- Tavily: POST /search with a bearer key (https://docs.tavily.com/api-reference/endpoint/search)


def tavily_responder(api_key: str, results: list[dict[str, Any]]) -> Responder:
    def respond(request: RecordedRequest) -> Reply:
        if request.method != "POST" or request.path != "/search":
            return Reply.json({"detail": {"error": "Not Found"}}, status=404)
        if request.headers.get("authorization") != f"Bearer {api_key}":
            return Reply.json({"detail": {"error": "Unauthorized: missing or invalid API key."}}, status=401)
        body = request.json()
        if not isinstance(body.get("query"), str) or not body["query"]:
            return Reply.json({"detail": {"error": "Query is missing."}}, status=400)
        max_results = int(body.get("max_results", 5))
        return Reply.json(
            {
                "query": body["query"],
                "follow_up_questions": None,
                "answer": None,
                "images": [],
                "results": [{**result, "raw_content": None} for result in results[:max_results]],
                "response_time": 0.81,
                "request_id": "3f1c1a9e-0000-4000-8000-000000000001",
            }
        )

    return respond


# --- SearXNG: GET /search?q=…&format=json (https://docs.searxng.org/dev/search_api.html)


def searxng_responder(results: list[dict[str, Any]]) -> Responder:
    def respond(request: RecordedRequest) -> Reply:
        if request.path != "/search":
            return Reply(status=404, body=b"Not Found", content_type="text/html")
        if request.query.get("format") != "json":
            # What an instance answers when the asked-for format is not enabled in settings.yml.
            return Reply(status=403, body=b"<title>403 Forbidden</title>", content_type="text/html")
        query = request.query.get("q", "")
        return Reply.json(
            {
                "query": query,
                "number_of_results": 0,
                "results": results,
                "answers": [],
                "corrections": [],
                "infoboxes": [],
                "suggestions": [],
                "unresponsive_engines": [],
            }
        )

    return respond


# --- Open-Meteo geocoding: GET /v1/search?name=…&count=…&language=…&format=json


BERLIN = {
    "id": 2950159,
    "name": "Berlin",
    "latitude": 52.52437,
    "longitude": 13.41053,
    "elevation": 74.0,
    "feature_code": "PPLC",
    "country_code": "DE",
    "admin1_id": 2950157,
    "timezone": "Europe/Berlin",
    "population": 3426354,
    "country_id": 2921044,
    "country": "Germany",
    "admin1": "Land Berlin",
}
PARIS_FRANCE = {
    "id": 2988507,
    "name": "Paris",
    "latitude": 48.85341,
    "longitude": 2.3488,
    "elevation": 42.0,
    "feature_code": "PPLC",
    "country_code": "FR",
    "timezone": "Europe/Paris",
    "population": 2138551,
    "country": "France",
    "admin1": "Île-de-France",
}
PARIS_TEXAS = {
    "id": 4717560,
    "name": "Paris",
    "latitude": 33.66094,
    "longitude": -95.55551,
    "elevation": 183.0,
    "feature_code": "PPLA2",
    "country_code": "US",
    "timezone": "America/Chicago",
    "population": 24782,
    "country": "United States",
    "admin1": "Texas",
}


def geocoding_responder(places: list[dict[str, Any]]) -> Responder:
    def respond(request: RecordedRequest) -> Reply:
        if request.path != "/v1/search":
            return Reply.json({"error": True, "reason": "Not found"}, status=404)
        name = request.query.get("name", "").strip().lower()
        count = int(request.query.get("count", "10"))
        if not 1 <= count <= 100:
            return Reply.json({"error": True, "reason": "Parameter count must be between 1 and 100."}, status=400)
        matches = [place for place in places if len(name) >= 2 and place["name"].lower().startswith(name)]
        payload: dict[str, Any] = {"generationtime_ms": 0.71}
        if matches:  # the real API leaves `results` out when nothing matches
            payload["results"] = matches[:count]
        return Reply.json(payload)

    return respond


# --- Open-Meteo forecast: GET /v1/forecast?latitude&longitude&current=…&daily=…&timezone&forecast_days

FORECAST_START = date(2026, 11, 1)
CURRENT_VALUES: dict[str, tuple[Any, str]] = {
    "temperature_2m": (12.3, "°C"),
    "relative_humidity_2m": (81, "%"),
    "apparent_temperature": (10.9, "°C"),
    "weather_code": (3, "wmo code"),
    "wind_speed_10m": (11.2, "km/h"),
}
DAILY_SERIES: dict[str, tuple[Callable[[int], Any], str]] = {
    "weather_code": (lambda day: [61, 0, 95, 3, 71][day % 5], "wmo code"),
    "temperature_2m_max": (lambda day: round(13.0 + day * 0.5, 1), "°C"),
    "temperature_2m_min": (lambda day: round(5.0 + day * 0.25, 1), "°C"),
    "precipitation_sum": (lambda day: [4.2, 0.0, 12.5, 0.1, 2.0][day % 5], "mm"),
    "precipitation_probability_max": (lambda day: [80, 5, 95, 20, 60][day % 5], "%"),
}


def forecast_responder(timezone: str = "Europe/Berlin", null_daily: tuple[str, ...] = ()) -> Responder:
    """Answers only the variables asked for, as Open-Meteo does, and rejects unknown ones with its 400 shape."""

    def respond(request: RecordedRequest) -> Reply:
        if request.path != "/v1/forecast":
            return Reply.json({"error": True, "reason": "Not found"}, status=404)
        try:
            latitude = float(request.query["latitude"])
            longitude = float(request.query["longitude"])
        except (KeyError, ValueError):
            return Reply.json({"error": True, "reason": "Parameter 'latitude' and 'longitude' must be numbers"}, 400)
        days = int(request.query.get("forecast_days", "7"))
        if not 0 <= days <= 16:
            return Reply.json({"error": True, "reason": "Forecast days is invalid. Allowed range 0 to 16."}, 400)
        current_vars = [v for v in request.query.get("current", "").split(",") if v]
        daily_vars = [v for v in request.query.get("daily", "").split(",") if v]
        for key, names, known in (("current", current_vars, CURRENT_VALUES), ("daily", daily_vars, DAILY_SERIES)):
            for variable in names:
                if variable not in known:
                    reason = f"Cannot initialize {key} variable from invalid String value {variable}"
                    return Reply.json({"error": True, "reason": reason}, status=400)
        zone = timezone if request.query.get("timezone") == "auto" else request.query.get("timezone", "GMT")
        payload: dict[str, Any] = {
            "latitude": round(latitude, 2),
            "longitude": round(longitude, 2),
            "generationtime_ms": 0.05,
            "utc_offset_seconds": 3600,
            "timezone": zone,
            "timezone_abbreviation": "GMT+1",
            "elevation": 38.0,
        }
        if current_vars:
            payload["current_units"] = {"time": "iso8601", "interval": "seconds"} | {
                v: CURRENT_VALUES[v][1] for v in current_vars
            }
            payload["current"] = {"time": f"{FORECAST_START.isoformat()}T12:00", "interval": 900} | {
                v: CURRENT_VALUES[v][0] for v in current_vars
            }
        if daily_vars:
            payload["daily_units"] = {"time": "iso8601"} | {v: DAILY_SERIES[v][1] for v in daily_vars}
            payload["daily"] = {"time": [(FORECAST_START + timedelta(days=d)).isoformat() for d in range(days)]} | {
                v: [None if v in null_daily else DAILY_SERIES[v][0](d) for d in range(days)] for v in daily_vars
            }
        return Reply.json(payload)

    return respond


# --- MediaWiki action API, as the `wikipedia` package (1.4.0) calls it: GET /w/api.php?action=query&format=json…


@dataclass(frozen=True)
class WikiPage:
    title: str
    pageid: int
    text: str = ""
    """Plain-text intro, sentences separated by ". "."""
    disambiguation_options: list[str] = field(default_factory=list)
    """Non-empty makes this a disambiguation page listing these titles."""


@dataclass
class FakeWiki:
    pages: list[WikiPage]
    redirects: dict[str, str] = field(default_factory=dict)
    """Title -> target title, answered the way the API reports a followed redirect."""
    search_results: dict[str, list[str]] = field(default_factory=dict)
    """Query (lower-cased) -> titles in rank order; other queries match titles containing the query."""

    def page(self, title: str) -> WikiPage | None:
        return next((page for page in self.pages if page.title == title), None)

    def responder(self) -> Responder:
        def respond(request: RecordedRequest) -> Reply:
            q = request.query
            if request.path != "/w/api.php" or q.get("format") != "json" or q.get("action") != "query":
                return Reply.json({"error": {"code": "badvalue", "info": "Unrecognized request."}})
            if q.get("list") == "search":
                return Reply.json(self._search(q))
            if q.get("prop") == "info|pageprops":
                return Reply.json(self._info(q["titles"]))
            if q.get("prop") == "revisions" and "rvparse" in q:
                return Reply.json(self._pages(q["titles"], self._parsed_revision))
            if q.get("prop") == "extracts" and "explaintext" in q:
                sentences = int(q.get("exsentences", "0"))
                return Reply.json(self._pages(q["titles"], lambda page: {"extract": _sentences(page.text, sentences)}))
            return Reply.json({"error": {"code": "badvalue", "info": f"Unsupported query {sorted(q)}"}})

        return respond

    def _search(self, q: dict[str, str]) -> dict[str, Any]:
        query = q.get("srsearch", "").lower()
        limit = int(q.get("srlimit", "10"))
        titles = self.search_results.get(query)
        if titles is None:
            titles = [page.title for page in self.pages if query in page.title.lower()]
        hits = []
        for title in titles[:limit]:
            page = self.page(title)
            hits.append({"ns": 0, "title": title, "pageid": page.pageid if page else 0})
        return {"batchcomplete": "", "query": {"searchinfo": {"totalhits": len(titles)}, "search": hits}}

    def _info(self, title: str) -> dict[str, Any]:
        query: dict[str, Any] = {}
        if title in self.redirects:
            query["redirects"] = [{"from": title, "to": self.redirects[title]}]
            title = self.redirects[title]
        page = self.page(title)
        if page is None:
            query["pages"] = {"-1": {"ns": 0, "title": title, "missing": ""}}
            return {"batchcomplete": "", "query": query}
        url = "https://en.wikipedia.org/wiki/" + _wiki_path(page.title)
        info: dict[str, Any] = {
            "pageid": page.pageid,
            "ns": 0,
            "title": page.title,
            "contentmodel": "wikitext",
            "pagelanguage": "en",
            "pagelanguagehtmlcode": "en",
            "pagelanguagedir": "ltr",
            "touched": "2026-10-30T08:00:00Z",
            "lastrevid": page.pageid * 10,
            "length": len(page.text) * 3,
            "fullurl": url,
            "editurl": f"https://en.wikipedia.org/w/index.php?title={_wiki_path(page.title)}&action=edit",
            "canonicalurl": url,
        }
        if page.disambiguation_options:
            info["pageprops"] = {"disambiguation": ""}
        query["pages"] = {str(page.pageid): info}
        return {"batchcomplete": "", "query": query}

    def _pages(self, title: str, fields: Callable[[WikiPage], dict[str, Any]]) -> dict[str, Any]:
        page = self.page(title)
        if page is None:
            return {"batchcomplete": "", "query": {"pages": {"-1": {"ns": 0, "title": title, "missing": ""}}}}
        entry = {"pageid": page.pageid, "ns": 0, "title": page.title} | fields(page)
        return {"batchcomplete": "", "query": {"pages": {str(page.pageid): entry}}}

    @staticmethod
    def _parsed_revision(page: WikiPage) -> dict[str, Any]:
        """Answer in the legacy (formatversion=1) revision shape, rendered HTML under `*`, as `rvparse` gives."""
        items = "".join(
            f'<li><a href="/wiki/{_wiki_path(option)}" title="{escape(option)}">{escape(option)}</a>,'
            " one of the meanings</li>"
            for option in page.disambiguation_options
        )
        html = (
            f'<div class="mw-parser-output"><p><b>{escape(page.title)}</b> may refer to:</p>'
            f'<ul><li class="toclevel-1 tocsection-1"><a href="#Science">Science</a></li></ul>'
            f"<ul>{items}</ul></div>"
        )
        return {"revisions": [{"contentformat": "text/x-wiki", "contentmodel": "wikitext", "*": html}]}


def _wiki_path(title: str) -> str:
    """MediaWiki's title encoding (`wfUrlencode`): spaces become underscores, these characters stay as they are."""
    return quote(title.replace(" ", "_"), safe=";:@$!*(),/~")


def _sentences(text: str, count: int) -> str:
    parts = [part for part in re.split(r"(?<=\.)\s+", text.strip()) if part]
    return " ".join(parts[:count] if count else parts)
