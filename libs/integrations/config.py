"""The one configuration loader: reads the environment (DESIGN §3), validates it and reports
every problem at once, so a bad deployment fails at start with one readable message."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from loguru import logger

from integrations.errors import ConfigError

_EMAIL = re.compile(r"^[^@\s,;]+@[^@\s,;]+\.[^@\s,;]+$")
_HOSTNAME = re.compile(r"^[A-Za-z0-9.-]+\.[A-Za-z]{2,}$")

DEFAULT_URLS = {
    "QBO_TOKEN_URL": "https://oauth.platform.intuit.com/oauth2/v1/tokens/bearer",
    "QBO_AUTHORIZE_URL": "https://appcenter.intuit.com/connect/oauth2",
    "MSGRAPH_BASE_URL": "https://graph.microsoft.com/v1.0",
    "MSGRAPH_AUTHORITY_URL": "https://login.microsoftonline.com",
    "CLICKUP_BASE_URL": "https://api.clickup.com/api/v2",
    "ROBOCORP_BASE_URL": "https://cloud.robocorp.com/api/v1",
}
# The practice's time zone: the schedules run in it, and "today" and "last month" are read in it.
# Terraform sets BUSINESS_TIME_ZONE from the same variable as the schedules' time zone.
DEFAULT_BUSINESS_TIME_ZONE = "America/Los_Angeles"
# CREATE_WORKERS / SEND_WORKERS at the most: QBO takes 10 calls in flight per company anyway, and
# the connection pools (http.POOL_SIZE, aws.BOTO_CONFIG) hold one connection per worker plus spares.
MAX_WORKERS = 32
# Read timeouts that match each service. QBO: "Any requests that take longer than 120 seconds to
# execute will time out" [qbo-api.md LIMITS], so we wait a little longer than that: a slow create
# is answered, not replayed. The others document no server-side limit; 60 s is ours.
SERVICE_TIMEOUTS = {"qbo": 130.0, "qbo-oauth": 30.0, "msgraph": 60.0, "clickup": 60.0, "robocorp": 60.0}

# Production and sandbox QBO hosts; chosen by the secret's ``environment`` unless QBO_BASE_URL is set.
QBO_API_URLS = {
    "production": "https://quickbooks.api.intuit.com",
    "sandbox": "https://sandbox-quickbooks.api.intuit.com",
}

REQUIRED = (
    "AWS_REGION",
    "QBO_SECRET_NAME",
    "MSGRAPH_SECRET_NAME",
    "CLICKUP_SECRET_NAME",
    "ROBOCORP_API_SECRET_NAME",
    "DYNAMODB_TABLE_ROBOCORP_CLIENTS",
    "LEDGER_TABLE",
    "BOOKKEEPER_EMAIL",
    "SENDER_EMAIL",
    "MS_GRAPH_HOSTNAME",
    "SHAREPOINT_SITE_PATH",
)


@dataclass(frozen=True)
class Settings:
    aws_region: str
    qbo_secret_name: str
    msgraph_secret_name: str
    clickup_secret_name: str
    robocorp_secret_name: str
    registry_table: str
    ledger_table: str
    bookkeeper_email: str
    sender_email: str
    ms_graph_hostname: str
    sharepoint_site_path: str
    sharepoint_folder: str = "Invoices"
    excluded_customers: tuple[str, ...] = ()
    invoice_delivery: str = "qbo"  # qbo | graph
    log_format: str = "json"  # json | pretty
    log_level: str = "INFO"
    qbo_base_url: str | None = None  # None: chosen by the QBO secret's environment
    qbo_token_url: str = DEFAULT_URLS["QBO_TOKEN_URL"]
    qbo_authorize_url: str = DEFAULT_URLS["QBO_AUTHORIZE_URL"]
    msgraph_base_url: str = DEFAULT_URLS["MSGRAPH_BASE_URL"]
    msgraph_authority_url: str = DEFAULT_URLS["MSGRAPH_AUTHORITY_URL"]
    clickup_base_url: str = DEFAULT_URLS["CLICKUP_BASE_URL"]
    robocorp_base_url: str = DEFAULT_URLS["ROBOCORP_BASE_URL"]
    item_robot_runtime: str = "Robot Runtime"
    item_professional_services: str = "Professional Services"
    item_subscription: str = "Automation Subscription"
    send_lookback_days: int = 120
    metrics_namespace: str = "QboInvoiceProcessor"  # empty: do not publish the success metric
    http_timeout_seconds: float | None = None  # None: each service's own (SERVICE_TIMEOUTS)
    http_max_retries: int = 5
    http_max_retry_after_seconds: float = 120.0
    qbo_throttle_window_seconds: float = 60.0  # Intuit: after a 429 "wait 60 seconds before retrying"
    qbo_throttle_max_wait_seconds: float = 300.0  # per call; then the call fails as RateLimited
    scheduled_time: datetime | None = None  # when the scheduler meant to run us (SCHEDULED_TIME)
    business_time_zone: str = DEFAULT_BUSINESS_TIME_ZONE  # IANA name, e.g. America/Los_Angeles
    claim_ttl_seconds: float = 60.0  # a claim not renewed for this long belongs to a dead run
    stop_grace_seconds: float = 10.0  # after SIGTERM, how long work in flight may still finish
    token_lock_seconds: float = 60.0  # lease of the QBO refresh lock (a dead holder blocks this long)
    pinned_today: date | None = None  # PINNED_TODAY: sandbox and tests only; production reads the wall clock
    late_lookback_months: int = 3  # LATE_LOOKBACK_MONTHS: closed months whose late usage is carried forward
    hold_max_hours: int = 12  # HOLD_MAX_HOURS: an entry or run longer than this holds the invoice
    hold_median_multiple: int = 3  # HOLD_MEDIAN_MULTIPLE: a total above this x the median holds it
    # Clients billed at once: enough that QBO's limiter (10/s, 500/min), not the latency of the
    # usage reads, ledger and archive, sets the pace (a client takes ~1-2 s, its QBO create ~0.2 s);
    # QBO calls in flight stay capped at 10 whatever this is (qbo.QBO_MAX_IN_FLIGHT). See docs/scale.md.
    create_workers: int = 16
    # Invoices delivered at once: an invoice is ~1 s of ledger, QBO (2 calls) and archive, so 8 keep
    # QBO's limiter busy; graph mode sends at most 4 mails at once (Outlook: 4 concurrent requests
    # per mailbox; send_invoices.job.MAIL_SLOTS).
    send_workers: int = 8
    extra: dict = field(default_factory=dict, compare=False)

    def timeout_for(self, service: str) -> float:
        """Read timeout of one service: HTTP_TIMEOUT_SECONDS when set (tests), else the service's own."""
        return self.http_timeout_seconds or SERVICE_TIMEOUTS[service]

    def is_excluded(self, client_id: str, display_name: str | None) -> bool:
        """EXCLUDED_CUSTOMERS holds display names or client numbers, compared case-insensitively."""
        wanted = {value.casefold() for value in self.excluded_customers}
        return client_id.casefold() in wanted or (display_name or "").strip().casefold() in wanted


def _choice(
    env: Mapping[str, str], name: str, default: str, choices: tuple[str, ...], problems: list[str]
) -> str:
    value = (env.get(name) or default).strip().lower()
    if value not in choices:
        problems.append(f"{name} must be one of {', '.join(choices)} (got {value!r})")
        return default
    return value


def _number(
    env: Mapping[str, str],
    name: str,
    default: float | None,
    problems: list[str],
    *,
    integer: bool = False,
    maximum: float = float("inf"),
):
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw) if integer else float(raw)
    except ValueError:
        problems.append(f"{name} must be a {'whole ' if integer else ''}number (got {raw!r})")
        return default
    if not 0 < value < float("inf"):  # also refuses "nan" and "inf", which float() accepts
        problems.append(f"{name} must be greater than zero (got {raw!r})")
        return default
    if value > maximum:
        problems.append(f"{name} must be at most {maximum:g} (got {raw!r})")
        return default
    return value


def _url(env: Mapping[str, str], name: str, default: str | None, problems: list[str]) -> str | None:
    value = (env.get(name) or "").strip() or default
    if value is not None and not re.match(r"^https?://[^\s/]+", value):
        problems.append(f"{name} must be an http(s) URL (got {value!r})")
    return value.rstrip("/") if value else value


def _time_zone(env: Mapping[str, str], problems: list[str]) -> str:
    name = (env.get("BUSINESS_TIME_ZONE") or "").strip() or DEFAULT_BUSINESS_TIME_ZONE
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        problems.append(
            f"BUSINESS_TIME_ZONE must be an IANA time zone like America/Los_Angeles (got {name!r})"
        )
        return DEFAULT_BUSINESS_TIME_ZONE
    return name


def required_fields(secret: object, fields: Sequence[str], secret_name: str) -> dict[str, str]:
    """The named fields of a secret as trimmed, non-empty strings (numbers are accepted as text).

    ConfigError names the secret and the missing fields, never a value."""
    if not isinstance(secret, Mapping):
        raise ConfigError([f"secret {secret_name} must be a JSON object"])
    values: dict[str, str] = {}
    missing: list[str] = []
    for name in fields:
        value = secret.get(name)
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str) or not value.strip():
            missing.append(name)
        else:
            values[name] = value.strip()
    if missing:
        raise ConfigError([f"secret {secret_name} is missing or has empty field(s): {', '.join(missing)}"])
    return values


def parse_scheduled_time(raw: str) -> datetime | None:
    """When the scheduler meant to run us, or None (= now) when SCHEDULED_TIME is empty, unparseable
    or left unsubstituted (``<aws.scheduler.scheduled-time>``). The one setting that falls back
    instead of failing the start (DESIGN section 7): a Scheduler quirk must not stop billing."""
    if not raw:
        return None
    try:
        scheduled = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        if scheduled.tzinfo is None:
            raise ValueError("no time zone")
    except ValueError:
        logger.warning(
            "SCHEDULED_TIME {value!r} is not an ISO 8601 time with a zone; using the current time instead",
            value=raw[:80],
        )
        return None
    return scheduled


def load_settings(env: Mapping[str, str]) -> Settings:
    """Build Settings from an environment mapping; raise ConfigError naming every problem."""
    problems: list[str] = []
    for name in REQUIRED:
        if not (env.get(name) or "").strip():
            problems.append(f"{name} is required but not set")

    def get(name: str, default: str = "") -> str:
        return (env.get(name) or default).strip()

    for name in ("BOOKKEEPER_EMAIL", "SENDER_EMAIL"):
        value = get(name)
        if value and not _EMAIL.match(value):
            problems.append(f"{name} must be one email address (got {value!r})")
    host = get("MS_GRAPH_HOSTNAME")
    if host and not _HOSTNAME.match(host):
        problems.append(f"MS_GRAPH_HOSTNAME must be a host name like contoso.sharepoint.com (got {host!r})")
    site_path = get("SHAREPOINT_SITE_PATH")
    if site_path and not site_path.startswith("/"):
        problems.append(f"SHAREPOINT_SITE_PATH must start with / like /sites/Finance (got {site_path!r})")

    scheduled = parse_scheduled_time(get("SCHEDULED_TIME"))

    pinned: date | None = None
    raw_pinned = get("PINNED_TODAY")
    if raw_pinned:
        try:
            pinned = (
                date.fromisoformat(raw_pinned)
                if re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", raw_pinned)
                else None
            )
        except ValueError:
            pinned = None
        if pinned is None:
            problems.append(f"PINNED_TODAY must be a date like 2026-11-28 (got {raw_pinned!r})")
    lookback = _number(env, "LATE_LOOKBACK_MONTHS", 3, problems, integer=True)
    if lookback > 12:
        problems.append(f"LATE_LOOKBACK_MONTHS must be 1..12 (got {lookback})")
        lookback = 3

    settings = Settings(
        aws_region=get("AWS_REGION"),
        qbo_secret_name=get("QBO_SECRET_NAME"),
        msgraph_secret_name=get("MSGRAPH_SECRET_NAME"),
        clickup_secret_name=get("CLICKUP_SECRET_NAME"),
        robocorp_secret_name=get("ROBOCORP_API_SECRET_NAME"),
        registry_table=get("DYNAMODB_TABLE_ROBOCORP_CLIENTS"),
        ledger_table=get("LEDGER_TABLE"),
        bookkeeper_email=get("BOOKKEEPER_EMAIL"),
        sender_email=get("SENDER_EMAIL"),
        ms_graph_hostname=host,
        sharepoint_site_path=site_path,
        sharepoint_folder=get("SHAREPOINT_FOLDER", "Invoices").strip("/") or "Invoices",
        excluded_customers=tuple(v.strip() for v in get("EXCLUDED_CUSTOMERS").split(",") if v.strip()),
        invoice_delivery=_choice(env, "INVOICE_DELIVERY", "qbo", ("qbo", "graph"), problems),
        log_format=_choice(env, "LOG_FORMAT", "json", ("json", "pretty"), problems),
        log_level=_choice(env, "LOG_LEVEL", "info", ("debug", "info", "warning", "error"), problems).upper(),
        qbo_base_url=_url(env, "QBO_BASE_URL", None, problems),
        qbo_token_url=_url(env, "QBO_TOKEN_URL", DEFAULT_URLS["QBO_TOKEN_URL"], problems),
        qbo_authorize_url=_url(env, "QBO_AUTHORIZE_URL", DEFAULT_URLS["QBO_AUTHORIZE_URL"], problems),
        msgraph_base_url=_url(env, "MSGRAPH_BASE_URL", DEFAULT_URLS["MSGRAPH_BASE_URL"], problems),
        msgraph_authority_url=_url(
            env, "MSGRAPH_AUTHORITY_URL", DEFAULT_URLS["MSGRAPH_AUTHORITY_URL"], problems
        ),
        clickup_base_url=_url(env, "CLICKUP_BASE_URL", DEFAULT_URLS["CLICKUP_BASE_URL"], problems),
        robocorp_base_url=_url(env, "ROBOCORP_BASE_URL", DEFAULT_URLS["ROBOCORP_BASE_URL"], problems),
        item_robot_runtime=get("QBO_ITEM_ROBOT_RUNTIME", "Robot Runtime"),
        item_professional_services=get("QBO_ITEM_PROFESSIONAL_SERVICES", "Professional Services"),
        item_subscription=get("QBO_ITEM_SUBSCRIPTION", "Automation Subscription"),
        send_lookback_days=_number(env, "SEND_LOOKBACK_DAYS", 120, problems, integer=True),
        metrics_namespace=get("METRICS_NAMESPACE", "QboInvoiceProcessor")
        if "METRICS_NAMESPACE" not in env
        else get("METRICS_NAMESPACE"),
        http_timeout_seconds=_number(env, "HTTP_TIMEOUT_SECONDS", None, problems),
        http_max_retries=_number(env, "HTTP_MAX_RETRIES", 5, problems, integer=True),
        http_max_retry_after_seconds=_number(env, "HTTP_MAX_RETRY_AFTER_SECONDS", 120.0, problems),
        qbo_throttle_window_seconds=_number(env, "QBO_THROTTLE_WINDOW_SECONDS", 60.0, problems),
        qbo_throttle_max_wait_seconds=_number(env, "QBO_THROTTLE_MAX_WAIT_SECONDS", 300.0, problems),
        scheduled_time=scheduled,
        business_time_zone=_time_zone(env, problems),
        claim_ttl_seconds=_number(env, "CLAIM_TTL_SECONDS", 60.0, problems),
        stop_grace_seconds=_number(env, "STOP_GRACE_SECONDS", 10.0, problems),
        create_workers=_number(env, "CREATE_WORKERS", 16, problems, integer=True, maximum=MAX_WORKERS),
        send_workers=_number(env, "SEND_WORKERS", 8, problems, integer=True, maximum=MAX_WORKERS),
        token_lock_seconds=_number(env, "TOKEN_LOCK_TTL_SECONDS", 60.0, problems),
        pinned_today=pinned,
        late_lookback_months=lookback,
        hold_max_hours=_number(env, "HOLD_MAX_HOURS", 12, problems, integer=True),
        hold_median_multiple=_number(env, "HOLD_MEDIAN_MULTIPLE", 3, problems, integer=True),
    )
    if problems:
        raise ConfigError(problems)
    return settings
