"""The one logging setup: loguru, JSON lines in containers, readable text locally, and a mask
that removes every secret value this process has loaded from every line it writes.

Secrets are registered as they are read (``aws.SecretStore`` does it) or received (a rotated
refresh token, an access token); the mask is applied to the fully formatted line, so messages,
``extra`` fields and exception tracebacks are all covered.
"""

from __future__ import annotations

import json
import logging as std_logging
import re
import sys
import threading
from collections.abc import Iterable
from typing import TextIO

from loguru import logger

MASK = "***"
_MIN_SECRET_LENGTH = 6  # shorter values (ids like "10000", "true") would mask ordinary text


class SecretMasker:
    """Replaces registered secret values (and their JSON-escaped forms) in text."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: tuple[str, ...] = ()

    def register(self, *values: object) -> None:
        new: set[str] = set()
        for value in _flatten(values):
            if isinstance(value, str) and len(value) >= _MIN_SECRET_LENGTH:
                new.add(value)
                # Both JSON spellings: json.dumps escapes non-ASCII, loguru's serializer does not.
                new.update(json.dumps(value, ensure_ascii=ascii_only)[1:-1] for ascii_only in (True, False))
        if not new:
            return
        with self._lock:
            merged = set(self._values) | new
            # Longest first, so a secret that contains another is masked whole.
            self._values = tuple(sorted(merged, key=len, reverse=True))

    def mask(self, text: str) -> str:
        for value in self._values:
            if value in text:
                text = text.replace(value, MASK)
        return text

    def clear(self) -> None:
        with self._lock:
            self._values = ()


def _flatten(values: Iterable[object]) -> Iterable[object]:
    for value in values:
        if isinstance(value, dict):
            yield from _flatten(value.values())
        elif isinstance(value, list | tuple | set):
            yield from _flatten(value)
        else:
            yield value


masker = SecretMasker()


def register_secret(*values: object) -> None:
    """Never let these values (strings, or dicts/lists of them) reach a log line."""
    masker.register(*values)


def mask(text: str) -> str:
    return masker.mask(text)


_PRETTY = (
    "<green>{time:HH:mm:ss}</green> <level>{level: <7}</level> {message}{extra[extra_text]}\n{exception}"
)


# extra_text is the rendering itself; summary is the JSON run summary, shown as a table locally.
_NOT_SHOWN_PRETTY = frozenset({"extra_text", "summary"})


def _spelled_out(value: str, message: str) -> bool:
    """Whether ``value`` stands in ``message`` as a whole token (not inside another word or number)."""
    return re.search(rf"(?<![\w-]){re.escape(value)}(?![\w-])", message) is not None


def _pretty_format(record: dict) -> str:
    # Fields already spelled out in the message are not repeated; context (client=...) is shown.
    extra = {
        k: v
        for k, v in record["extra"].items()
        if k not in _NOT_SHOWN_PRETTY
        and not k.startswith("_")
        and not _spelled_out(str(v), record["message"])
    }
    record["extra"]["extra_text"] = (" " + " ".join(f"{k}={v}" for k, v in extra.items())) if extra else ""
    return _PRETTY


class _ToLoguru(std_logging.Handler):
    """Sends standard-library log records (urllib3, botocore, msal) through loguru and its mask."""

    def emit(self, record: std_logging.LogRecord) -> None:
        try:
            level: str | int = logger.level(record.levelname).name
        except ValueError:
            level = record.levelno
        logger.opt(depth=6, exception=record.exc_info).log(level, "{}: {}", record.name, record.getMessage())


def setup_logging(fmt: str = "json", level: str = "INFO", stream: TextIO | None = None) -> None:
    """Route all logging, the standard library's included, to one masked sink: JSON lines
    (``fmt="json"``) or readable text."""
    std_logging.basicConfig(handlers=[_ToLoguru()], level=std_logging.WARNING, force=True)

    def sink(message: object) -> None:
        out = stream or sys.stderr  # looked up per line: tests and tools swap sys.stderr
        out.write(masker.mask(str(message)))
        out.flush()

    logger.remove()
    if fmt == "json":
        logger.add(sink, level=level, serialize=True, backtrace=False, diagnose=False)
    else:
        logger.add(sink, level=level, format=_pretty_format, colorize=False, backtrace=False, diagnose=False)
