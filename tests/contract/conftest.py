"""Contract tests: every client of ``libs/integrations`` over real HTTP against the local sandbox.

One in-process ``Sandbox`` per test module (its own state dir, ports and moto account), with the
sandbox environment in ``os.environ`` for the module's lifetime: boto3 reads ``AWS_ENDPOINT_URL``
from there and ``requests`` lets ``REQUESTS_CA_BUNDLE`` override ``Session.verify``. Clients are
built exactly as the jobs build them: ``load_settings(env)`` then ``services.connect(settings)``.
Each module carries its own ``xdist_group`` so its tests share one worker (and one sandbox).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from integrations.config import Settings, load_settings
from integrations.services import Services, connect
from sandbox import Sandbox

# Retry waits stay tiny: Retry-After (the stand-ins send >= 1 s) is capped at a quarter second.
FAST = {
    "HTTP_MAX_RETRY_AFTER_SECONDS": "0.25",
    "HTTP_TIMEOUT_SECONDS": "10",
    "HTTP_MAX_RETRIES": "5",
    "LOG_LEVEL": "warning",
}


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    with Sandbox(tmp_path_factory.mktemp("contract")) as running, running.environ():
        yield running


@pytest.fixture(autouse=True)
def _no_faults_left(sandbox: Sandbox) -> Iterator[None]:
    yield
    sandbox.clear_faults()


SettingsFactory = Callable[..., Settings]
ServicesFactory = Callable[..., Services]


@pytest.fixture(scope="module")
def make_settings(sandbox: Sandbox) -> SettingsFactory:
    """Settings from the sandbox env plus FAST plus ``overrides`` (e.g. HTTP_TIMEOUT_SECONDS="1")."""

    def build(**overrides: str) -> Settings:
        return load_settings({**sandbox.env, **FAST, **overrides})

    return build


@pytest.fixture(scope="module")
def make_services(make_settings: SettingsFactory) -> ServicesFactory:
    """A fresh ``Services`` (new sessions, new token cache), as one job run would have."""

    def build(**overrides: str) -> Services:
        return connect(make_settings(**overrides))

    return build


@pytest.fixture(scope="module")
def services(make_services: ServicesFactory) -> Services:
    """One module-wide ``Services``, like one job run (its token cache and sessions are reused)."""
    return make_services()
