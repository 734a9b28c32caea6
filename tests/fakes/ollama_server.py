"""A loopback HTTP server speaking Ollama's documented API: /api/tags, /api/chat with NDJSON streaming, /api/embed.

It records every request body, so tests can check what the adapter sent through the official client.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MODELS = ["llama3.1:8b", "qwen2.5:0.5b"]
EMBEDDING_MODELS = {"nomic-embed-text": 8}
"""Embedding model -> dimensions of the vectors the fake returns."""


def fake_embedding(text: str, dimensions: int) -> list[float]:
    """Deterministic and not normalised (so tests see the adapter normalise): byte sums per position."""
    data = text.encode()
    return [float(sum(data[i::dimensions]) + i + 1) for i in range(dimensions)]


class FakeOllama:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.reply_words = ["Hello", " from", " Ollama", "."]
        self.tool_call: dict[str, Any] | None = None
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_: object) -> None:
                pass

            def _json(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                if self.path == "/api/tags":
                    self._json(200, {"models": [
                        {"name": name, "model": name, "modified_at": "2026-05-01T10:00:00.000000+00:00",
                         "size": 1000, "digest": "abc", "details": {"format": "gguf", "family": "llama"}}
                        for name in MODELS
                    ]})
                else:
                    self._json(404, {"error": "not found"})

            def _embed(self, body: dict[str, Any]) -> None:
                dimensions = EMBEDDING_MODELS.get(body["model"])
                if dimensions is None:
                    self._json(404, {"error": f'model "{body["model"]}" not found, try pulling it first'})
                    return
                texts = [body["input"]] if isinstance(body["input"], str) else body["input"]
                self._json(200, {
                    "model": body["model"], "embeddings": [fake_embedding(text, dimensions) for text in texts],
                    "total_duration": 1000, "load_duration": 10,
                    "prompt_eval_count": sum(len(text.split()) for text in texts),
                })

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.requests.append({"path": self.path, "body": body})
                if self.path == "/api/embed":
                    self._embed(body)
                    return
                if self.path != "/api/chat":
                    self._json(404, {"error": "not found"})
                    return
                if body["model"] not in MODELS:
                    self._json(404, {"error": f"model '{body['model']}' not found"})
                    return
                lines = fake._chat_lines(body)
                if not body.get("stream", True):
                    self._json(200, lines[-1])
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/x-ndjson")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for line in lines:
                    data = (json.dumps(line) + "\n").encode()
                    self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                    self.wfile.flush()
                self.wfile.write(b"0\r\n\r\n")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def _chat_lines(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        base = {"model": body["model"], "created_at": "2026-11-25T12:00:00.000000Z"}
        if self.tool_call and body.get("tools"):
            return [
                {**base, "message": {"role": "assistant", "content": "", "tool_calls": [{"function": self.tool_call}]},
                 "done": False},
                {**base, "message": {"role": "assistant", "content": ""}, "done": True, "done_reason": "stop",
                 "prompt_eval_count": 20, "eval_count": 9},
            ]
        lines = [{**base, "message": {"role": "assistant", "content": word}, "done": False}
                 for word in self.reply_words]
        lines.append({**base, "message": {"role": "assistant", "content": ""}, "done": True, "done_reason": "stop",
                      "total_duration": 1000, "prompt_eval_count": 12, "eval_count": len(self.reply_words)})
        return lines

    def __enter__(self) -> FakeOllama:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
