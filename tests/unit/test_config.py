"""Configuration from the environment (DESIGN §3): defaults, parsing, and every problem at once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from integrations.config import DEFAULT_URLS, REQUIRED, Settings, load_settings
from integrations.errors import ConfigError
from tests.settings import VALID_ENV

ENV = VALID_ENV


def problems_of(env: dict[str, str]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_settings(env)
    return caught.value.problems


def test_minimal_environment_gives_documented_defaults() -> None:
    settings = load_settings(ENV)
    assert settings.aws_region == "us-west-2"
    assert settings.qbo_secret_name == "QBO/10000"
    assert settings.robocorp_secret_name == "RoboCorp/10000/ClientAPIKeys"
    assert settings.registry_table == "Robocorp_Client_Org_Workspace_IDs"
    assert settings.ledger_table == "qbo-invoice-processor-ledger"
    assert settings.sharepoint_folder == "Invoices"
    assert settings.excluded_customers == ()
    assert (settings.invoice_delivery, settings.log_format, settings.log_level) == ("qbo", "json", "INFO")
    assert settings.qbo_base_url is None  # chosen later from the QBO secret's environment
    assert settings.qbo_token_url == DEFAULT_URLS["QBO_TOKEN_URL"]
    assert settings.msgraph_base_url == "https://graph.microsoft.com/v1.0"
    assert settings.msgraph_authority_url == "https://login.microsoftonline.com"
    assert settings.clickup_base_url == "https://api.clickup.com/api/v2"
    assert settings.robocorp_base_url == "https://cloud.robocorp.com/api/v1"
    assert (settings.item_robot_runtime, settings.item_professional_services, settings.item_subscription) == (
        "Robot Runtime",
        "Professional Services",
        "Automation Subscription",
    )
    assert settings.metrics_namespace == "QboInvoiceProcessor"
    assert settings.send_lookback_days == 120
    assert (
        settings.http_timeout_seconds,
        settings.http_max_retries,
        settings.http_max_retry_after_seconds,
    ) == (
        None,
        5,
        120.0,
    )
    assert settings.scheduled_time is None


def test_every_problem_is_reported_in_one_error() -> None:
    env = {
        "AWS_REGION": "us-west-2",
        "BOOKKEEPER_EMAIL": "not-an-address",
        "SENDER_EMAIL": "a@example.com, b@example.com",
        "MS_GRAPH_HOSTNAME": "https://contoso.sharepoint.com",
        "SHAREPOINT_SITE_PATH": "sites/Finance",
        "INVOICE_DELIVERY": "fax",
        "LOG_FORMAT": "xml",
        "QBO_BASE_URL": "quickbooks.api.intuit.com",
        "SCHEDULED_TIME": "2026-11-04T09:00:00",  # falls back to now: never a start problem
        "HTTP_MAX_RETRIES": "many",
        "SEND_LOOKBACK_DAYS": "0",
    }
    with pytest.raises(ConfigError) as caught:
        load_settings(env)
    problems = caught.value.problems
    text = str(caught.value)

    missing = [name for name in REQUIRED if name not in env]
    for name in missing:
        assert f"{name} is required but not set" in problems
    for name in (
        "BOOKKEEPER_EMAIL",
        "SENDER_EMAIL",
        "MS_GRAPH_HOSTNAME",
        "SHAREPOINT_SITE_PATH",
        "INVOICE_DELIVERY",
        "LOG_FORMAT",
        "QBO_BASE_URL",
        "HTTP_MAX_RETRIES",
        "SEND_LOOKBACK_DAYS",
    ):
        assert any(problem.startswith(name) for problem in problems), name
    assert len(problems) == len(missing) + 9
    assert not any(problem.startswith("SCHEDULED_TIME") for problem in problems)
    assert all(problem in text for problem in problems)  # one message names them all


def test_blank_required_values_count_as_missing() -> None:
    assert problems_of({**ENV, "LEDGER_TABLE": "   ", "AWS_REGION": ""}) == [
        "AWS_REGION is required but not set",
        "LEDGER_TABLE is required but not set",
    ]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("", ()),
        ("10002", ("10002",)),
        (" 10002 , 10003 - Beta LLC ,,", ("10002", "10003 - Beta LLC")),
        ("Acme CPA,10009", ("Acme CPA", "10009")),
    ],
)
def test_excluded_customers_are_comma_separated(raw: str, expected: tuple[str, ...]) -> None:
    assert load_settings({**ENV, "EXCLUDED_CUSTOMERS": raw}).excluded_customers == expected


def test_exclusion_matches_client_number_or_display_name_ignoring_case() -> None:
    settings = load_settings({**ENV, "EXCLUDED_CUSTOMERS": "10002, 10003 - Beta LLC"})
    assert settings.is_excluded("10002", None)
    assert settings.is_excluded("10002", "10002 - Acme CPA")
    assert settings.is_excluded("10003", "10003 - beta llc ")
    assert not settings.is_excluded("10004", "10004 - Gamma")
    assert not settings.is_excluded("10003", None)  # excluded by name only, and no name known
    assert not settings.is_excluded("100021", "100021 - Other")  # no prefix matching


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2026-11-04T17:00:00Z", datetime(2026, 11, 4, 17, 0, tzinfo=UTC)),
        ("2026-11-04T09:00:00-08:00", datetime(2026, 11, 4, 9, 0, tzinfo=timezone(timedelta(hours=-8)))),
        ("2026-11-04T17:00:00.123+00:00", datetime(2026, 11, 4, 17, 0, 0, 123000, tzinfo=UTC)),
    ],
)
def test_scheduled_time_is_parsed_with_its_zone(raw: str, expected: datetime) -> None:
    scheduled = load_settings({**ENV, "SCHEDULED_TIME": raw}).scheduled_time
    assert scheduled == expected
    assert scheduled is not None and scheduled.utcoffset() is not None


@pytest.mark.parametrize(
    "raw", ["2026-11-04T17:00:00", "yesterday", "2026-13-01T00:00:00Z", "<aws.scheduler.scheduled-time>"]
)
def test_scheduled_time_without_zone_garbled_or_unsubstituted_falls_back_to_now(raw: str) -> None:
    """DESIGN section 7: a Scheduler quirk must not stop billing, so the start never fails on it."""
    assert load_settings({**ENV, "SCHEDULED_TIME": raw}).scheduled_time is None


@pytest.mark.parametrize(
    ("name", "value", "field", "expected"),
    [
        ("INVOICE_DELIVERY", "Graph", "invoice_delivery", "graph"),
        ("LOG_FORMAT", " PRETTY ", "log_format", "pretty"),
        ("LOG_LEVEL", "debug", "log_level", "DEBUG"),
    ],
)
def test_choices_are_case_insensitive(name: str, value: str, field: str, expected: str) -> None:
    assert getattr(load_settings({**ENV, name: value}), field) == expected


@pytest.mark.parametrize(("name", "value"), [("INVOICE_DELIVERY", "smtp"), ("LOG_FORMAT", "xml")])
def test_invalid_choices_are_refused(name: str, value: str) -> None:
    (problem,) = problems_of({**ENV, name: value})
    assert problem.startswith(f"{name} must be one of")
    assert repr(value) in problem


@pytest.mark.parametrize(
    "name", ["QBO_BASE_URL", "QBO_TOKEN_URL", "MSGRAPH_BASE_URL", "MSGRAPH_AUTHORITY_URL", "CLICKUP_BASE_URL"]
)
@pytest.mark.parametrize("value", ["ftp://host", "localhost:8080", "http:// spaced"])
def test_invalid_urls_are_refused(name: str, value: str) -> None:
    (problem,) = problems_of({**ENV, name: value})
    assert problem == f"{name} must be an http(s) URL (got {value!r})"


def test_url_overrides_are_used_without_trailing_slash() -> None:
    settings = load_settings(
        {
            **ENV,
            "QBO_BASE_URL": "http://127.0.0.1:8101/",
            "QBO_TOKEN_URL": "http://127.0.0.1:8101/oauth2/v1/tokens/bearer",
            "MSGRAPH_BASE_URL": "https://127.0.0.1:8102/v1.0/",
            "ROBOCORP_BASE_URL": "http://127.0.0.1:8104/api/v1",
        }
    )
    assert settings.qbo_base_url == "http://127.0.0.1:8101"
    assert settings.qbo_token_url == "http://127.0.0.1:8101/oauth2/v1/tokens/bearer"
    assert settings.msgraph_base_url == "https://127.0.0.1:8102/v1.0"
    assert settings.robocorp_base_url == "http://127.0.0.1:8104/api/v1"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("HTTP_TIMEOUT_SECONDS", "-1"),
        ("HTTP_TIMEOUT_SECONDS", "nan"),
        ("HTTP_MAX_RETRY_AFTER_SECONDS", "inf"),
        ("HTTP_MAX_RETRIES", "2.5"),
        ("SEND_LOOKBACK_DAYS", "a week"),
        ("CREATE_WORKERS", "33"),  # above MAX_WORKERS: the connection pools hold one per worker
        ("SEND_WORKERS", "0"),
    ],
)
def test_invalid_numbers_are_refused(name: str, value: str) -> None:
    (problem,) = problems_of({**ENV, name: value})
    assert problem.startswith(name)


def test_numbers_and_item_names_can_be_overridden() -> None:
    settings = load_settings(
        {
            **ENV,
            "HTTP_TIMEOUT_SECONDS": "5.5",
            "HTTP_MAX_RETRIES": "2",
            "SEND_LOOKBACK_DAYS": "30",
            "QBO_ITEM_ROBOT_RUNTIME": "Bot Hours",
            "SHAREPOINT_FOLDER": "/Billing/Invoices/",
        }
    )
    assert (settings.http_timeout_seconds, settings.http_max_retries, settings.send_lookback_days) == (
        5.5,
        2,
        30,
    )
    assert settings.item_robot_runtime == "Bot Hours"
    assert settings.sharepoint_folder == "Billing/Invoices"


def test_empty_metrics_namespace_turns_the_metric_off() -> None:
    assert load_settings({**ENV, "METRICS_NAMESPACE": ""}).metrics_namespace == ""
    assert load_settings({**ENV, "METRICS_NAMESPACE": "Billing/Prod"}).metrics_namespace == "Billing/Prod"


def test_settings_are_immutable() -> None:
    settings = load_settings(ENV)
    with pytest.raises(AttributeError):
        settings.ledger_table = "other"  # type: ignore[misc]
    assert isinstance(settings, Settings)
