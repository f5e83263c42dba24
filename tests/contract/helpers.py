"""Small helpers for the contract tests (fixtures live in conftest.py)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import requests

from sandbox import Sandbox, report


def calls_since(sandbox: Sandbox, service: str, mark: int) -> list[dict[str, Any]]:
    """The calls the stand-in served for ``service`` after ``mark`` (= len(sandbox.requests(service)))."""
    return sandbox.requests(service)[mark:]


def wait_for(condition: Callable[[], Any], seconds: float = 5.0) -> Any:
    """Poll briefly for state the stand-in writes after answering (stalled calls are logged late)."""
    deadline = time.monotonic() + seconds
    while True:
        value = condition()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(0.05)


def trusted_session(sandbox: Sandbox) -> requests.Session:
    """A plain session for the few direct calls a test makes itself (e.g. an old refresh token)."""
    session = requests.Session()
    session.trust_env = False
    session.verify = sandbox.env["REQUESTS_CA_BUNDLE"]
    return session


def disk_state(sandbox: Sandbox) -> dict[str, Any]:
    """``sandbox.state()`` without the moto snapshot: invoices, mails, SharePoint files and pending
    faults come from the state dir (the same ``report.collect_state``), in a millisecond instead of
    a few hundred. Use ``sandbox.state()`` for secrets, ledger, metrics and request counts."""
    sandbox.store.flush()  # the documents it writes behind (sandbox/store.py)
    return report.collect_state(sandbox.state_dir, aws_data=None)
