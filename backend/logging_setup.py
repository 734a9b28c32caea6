"""Logging for the whole process: console always, a rotating file when LOG_FILE is set."""

from __future__ import annotations

import logging
import logging.handlers

from backend.config import Settings

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(settings: Settings) -> None:
    handlers: list[logging.Handler] = [logging.StreamHandler()]
    if settings.log_file:
        settings.log_file.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(
            logging.handlers.RotatingFileHandler(
                settings.log_file, maxBytes=10_000_000, backupCount=3, encoding="utf-8"
            )
        )
    logging.basicConfig(level=settings.log_level, format=FORMAT, handlers=handlers, force=True)
