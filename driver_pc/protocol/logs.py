"""Logging set-up shared by every PitBox program: one format, the level from the caller or env."""

from __future__ import annotations

import logging
import logging.handlers
import os
from pathlib import Path

#: Every program logs in this one format.
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
#: Overrides each program's default level (DEBUG, INFO, WARNING, ERROR or a number).
LEVEL_ENV = "PITBOX_LOG_LEVEL"


#: A log file rolls over at this size, keeping this many old ones (a few MB at most).
LOG_FILE_BYTES = 1_000_000
LOG_FILE_BACKUPS = 5


def setup_logging(
    default: int = logging.INFO,
    level: str | int | None = None,
    log_file: Path | None = None,
) -> None:
    """Log to stderr in :data:`LOG_FORMAT` (to a rotating ``log_file`` too, if given).

    The level is ``level`` when given, else ``$PITBOX_LOG_LEVEL``, else ``default``
    (each program's own: services INFO, commands WARNING). Like
    ``logging.basicConfig`` this does nothing when the root logger has handlers
    already (tests, an embedding program).
    """
    wanted = level if level is not None else os.environ.get(LEVEL_ENV) or None
    resolved = default if wanted is None else parse_level(wanted)
    logging.basicConfig(
        level=default if resolved is None else resolved, format=LOG_FORMAT
    )
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.handlers.RotatingFileHandler(
            log_file,
            maxBytes=LOG_FILE_BYTES,
            backupCount=LOG_FILE_BACKUPS,
            encoding="utf-8",
        )
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        logging.getLogger().addHandler(handler)
    if resolved is None:
        logging.getLogger(__name__).warning(
            "log level %r is not a level; using %s",
            wanted,
            logging.getLevelName(default),
        )


def parse_level(value: str | int) -> int | None:
    """A logging level from a name (any case) or a number; None if it is neither."""
    if isinstance(value, int):
        return value
    text = value.strip()
    if text.isdigit():
        return int(text)
    return logging.getLevelNamesMapping().get(text.upper())
