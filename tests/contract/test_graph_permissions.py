"""Graph application permissions (issue 11.11): the stand-in puts the app registration's roles in
the token and refuses, with Graph's 403, each call they do not allow. Fails if made lenient again."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from integrations import errors
from integrations.msgraph import token_roles
from integrations.services import Services
from sandbox import Sandbox
from tests.contract.conftest import ServicesFactory
from tests.e2e.conftest import default_scenario

pytestmark = pytest.mark.xdist_group("contract-graph-permissions")
BIG = b"%PDF" + b"x" * (3 * 1024 * 1024 + 10)  # over 3 MB: the draft + upload-session path


@pytest.fixture
def granted(sandbox: Sandbox, make_services: ServicesFactory) -> Iterator[Callable[..., Services]]:
    def seed(roles: list[str], site_grant: str | None = None) -> Services:
        scenario = default_scenario()
        scenario["graph"]["app_roles"] = roles
        if site_grant:
            scenario["graph"]["sites"][0]["app_grants"] = {scenario["graph"]["client_id"]: site_grant}
        sandbox.reset(scenario)
        return make_services()

    yield seed
    sandbox.reset(default_scenario())


def _mail(services: Services, content: bytes = b"") -> None:
    from integrations.models import Attachment

    attachments = [Attachment("big.pdf", "application/pdf", content)] if content else []
    services.graph.send_mail(
        services.settings.sender_email, ["someone@example.com"], "s", "<p>b</p>", attachments=attachments
    )


def test_the_token_carries_the_granted_roles(granted: Callable[..., Services]) -> None:
    services = granted(["Mail.Send", "Sites.Selected"], site_grant="write")

    assert token_roles(services.graph.access_token()) == {"Mail.Send", "Sites.Selected"}


def test_without_mail_send_a_mail_is_refused_with_403(granted: Callable[..., Services]) -> None:
    services = granted(["Mail.ReadWrite", "Sites.ReadWrite.All"])

    with pytest.raises(errors.ServiceError) as caught:
        _mail(services)
    assert caught.value.status == 403


def test_a_large_mail_needs_mail_readwrite_too(granted: Callable[..., Services]) -> None:
    services = granted(["Mail.Send", "Sites.ReadWrite.All"])
    _mail(services)  # a small one goes

    with pytest.raises(errors.ServiceError) as caught:
        _mail(services, BIG)
    assert caught.value.status == 403


@pytest.mark.parametrize(
    ("roles", "grant", "allowed"),
    [
        (["Mail.Send", "Sites.Selected"], "write", True),
        (["Mail.Send", "Sites.Selected"], "read", False),
        (["Mail.Send", "Sites.Selected"], None, False),
        (["Mail.Send", "Sites.Read.All"], None, False),
        (["Mail.Send", "Sites.ReadWrite.All"], None, True),
    ],
)
def test_the_archive_needs_a_site_write_permission(
    granted: Callable[..., Services], roles: list[str], grant: str | None, allowed: bool
) -> None:
    services = granted(roles, site_grant=grant)

    def archive() -> None:
        services.archive(["2026-10", "check.csv"], b"a,b\n")

    if allowed:
        archive()
    else:
        with pytest.raises(errors.ServiceError) as caught:
            archive()
        assert caught.value.status == 403
