"""Start the API server: `python run_backend.py [--host H] [--port P]`; everything else comes from settings."""

from __future__ import annotations

import argparse
import sys

import uvicorn

from backend.api.http_protocol import slow_client_protocol
from backend.app import create_app
from backend.config import SettingsError, load_settings
from backend.logging_setup import configure_logging


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Local-first OpenAI-compatible agentic LLM server")
    parser.add_argument("--host", help="bind address (overrides SERVER_HOST)")
    parser.add_argument("--port", type=int, help="port (overrides SERVER_PORT)")
    args = parser.parse_args(argv)
    overrides: dict[str, object] = {}
    if args.host:
        overrides["server_host"] = args.host
    if args.port is not None:
        overrides["server_port"] = args.port
    try:
        settings = load_settings(**overrides)
    except SettingsError as error:
        print(error, file=sys.stderr)
        return 2
    configure_logging(settings)
    uvicorn.run(
        create_app(settings), host=settings.server_host, port=settings.server_port,
        log_config=None, timeout_graceful_shutdown=10,
        # The client address (which failed sign-ins are counted against) comes from X-Forwarded-For
        # only on connections from these proxies; anyone else could write any address there.
        proxy_headers=True, forwarded_allow_ips=settings.forwarded_allow_ips,
        # Slow or never-finished request headers and bodies are timed out (uvicorn alone never does).
        http=slow_client_protocol(settings),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
