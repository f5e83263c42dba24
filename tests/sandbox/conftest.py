"""Fixtures for the sandbox's own tests: one seeded sandbox per test module (fast), plain requests
sessions that trust the sandbox CA, and a QBO caller holding a fresh access token."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from sandbox import Sandbox
from tests.sandbox.helpers import Qbo, session_for


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    with Sandbox(tmp_path_factory.mktemp("sandbox")) as running:
        yield running


@pytest.fixture
def http(sandbox: Sandbox) -> Iterator[requests.Session]:
    session = session_for(sandbox)
    yield session
    session.close()


@pytest.fixture
def qbo(sandbox: Sandbox, http: requests.Session) -> Qbo:
    return Qbo(sandbox, http)
