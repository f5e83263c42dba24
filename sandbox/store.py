"""File-backed state of the stand-ins: JSON documents under the state dir.

The serving process is the only writer. Documents are cached in memory and every change is
written atomically (temporary file + rename), so ``sandbox show`` in another process always reads
a whole document, and a restarted sandbox continues from exactly what the last run left.

The big documents every QBO write changes (``DEFERRED``: the invoices and the requestids) are
written behind, at most every ``flush_seconds``, instead of on every write: rewriting 4,000
invoices whole on each create made the stand-in, not QBO's limit, set the pace of a 2,000-client
bench. The cache is what the stand-ins answer from, so nothing they serve changes; readers of the
files flush first (``Sandbox.state`` and ``stop`` do), and a sandbox killed outright loses at most
the last ``flush_seconds`` of those two documents.
"""

from __future__ import annotations

import copy
import json
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

DEFERRED = frozenset({"qbo/invoices", "qbo/requestids"})


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() and "." not in str(value) else float(value)
    if isinstance(value, bytes | bytearray):
        return value.decode("utf-8", "replace")
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def dumps(value: Any, *, indent: int | None = None) -> str:
    """JSON with Decimal as numbers (QBO sends money as JSON numbers) and non-ASCII kept readable."""
    return json.dumps(value, default=_default, indent=indent, ensure_ascii=False)


def write_atomic(path: Path, data: bytes | str, mode: int | None = None) -> None:
    """Write a whole file so that readers never see half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    payload = data.encode("utf-8") if isinstance(data, str) else data
    with open(tmp, "wb") as handle:
        handle.write(payload)
    if mode is not None:
        os.chmod(tmp, mode)
    os.replace(tmp, path)


def read_json(path: Path, default: Any = None) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return copy.deepcopy(default)


class JsonStore:
    """Named JSON documents (``qbo/invoices`` -> ``<root>/qbo/invoices.json``) behind one lock."""

    def __init__(self, root: Path, deferred: frozenset[str] = DEFERRED, flush_seconds: float = 0.5) -> None:
        self.root = root
        self.lock = threading.RLock()
        self._cache: dict[str, Any] = {}
        self._deferred, self._flush_seconds = deferred, flush_seconds
        self._dirty: set[str] = set()
        self._writer: threading.Thread | None = None

    def path(self, name: str) -> Path:
        return self.root / f"{name}.json"

    def get(self, name: str, default: Any = None) -> Any:
        """The cached document; callers that change it must hold ``lock`` and call ``put``."""
        with self.lock:
            if name not in self._cache:
                self._cache[name] = read_json(self.path(name), default)
            return self._cache[name]

    def put(self, name: str, value: Any) -> None:
        with self.lock:
            self._cache[name] = value
            if name in self._deferred:
                self._dirty.add(name)
                self._start_writer()
                return
            # compact: with an indent json takes its slow pure-Python path (2.5x); `sandbox show`
            # prints the documents readably
            write_atomic(self.path(name), dumps(value))

    def flush(self) -> None:
        """Write every document whose write was deferred (before anyone reads the files)."""
        with self.lock:
            for name in sorted(self._dirty):
                write_atomic(self.path(name), dumps(self._cache[name]))
            self._dirty.clear()

    def _start_writer(self) -> None:
        if self._writer is None or not self._writer.is_alive():
            self._writer = threading.Thread(target=self._write_behind, name="store-writer", daemon=True)
            self._writer.start()

    def _write_behind(self) -> None:
        """Flush every ``flush_seconds`` while there is something to write, then end."""
        while True:
            time.sleep(self._flush_seconds)
            with self.lock:
                if not self._dirty:
                    self._writer = None
                    return
                self.flush()

    @contextmanager
    def edit(self, name: str, default: Any = None) -> Iterator[Any]:
        """Change a document in place; it is written when the block ends without an error."""
        with self.lock:
            value = self.get(name, default)
            yield value
            self.put(name, value)

    def forget(self) -> None:
        """Drop the cache (after the files were replaced by a reset): deferred writes included."""
        with self.lock:
            self._dirty.clear()
            self._cache.clear()
