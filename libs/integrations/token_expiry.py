"""The QBO refresh token's two expiry dates: read from Intuit's token reply, kept in the QBO secret,
and turned into warnings from 30 days ahead (DESIGN section 2 "Tokens are never lost").

Intuit (shared/reference/qbo-api.md section 10): a refresh token dies after 100 days without use
(rolling; ``x_refresh_token_expires_in``) and in any case at a 5-year hard cap
(``x_refresh_token_hard_expires_in``, sent only when the request carries
``x-include-refresh-token-hard-expires-in: true``). Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

EXPIRES_AT = "refresh_token_expires_at"
HARD_EXPIRES_AT = "refresh_token_hard_expires_at"
HARD_EXPIRY_HEADER = "x-include-refresh-token-hard-expires-in"
WARN_AHEAD = timedelta(days=30)
# A rolling date that moved less than this is not worth a new secret version on every run.
SAVE_WHEN_MOVED = timedelta(days=1)
_REPLY_FIELDS = {EXPIRES_AT: "x_refresh_token_expires_in", HARD_EXPIRES_AT: "x_refresh_token_hard_expires_in"}
_LABELS = {
    EXPIRES_AT: "expires if unused (100-day rolling limit)",
    HARD_EXPIRES_AT: "reaches Intuit's 5-year hard limit",
}


def iso(moment: datetime) -> str:
    """ISO 8601 in UTC, whole seconds, with a Z: the format of both secret fields."""
    return moment.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def parse(value: Any) -> datetime | None:
    """A stored expiry date, or None when absent or unreadable (never an exception)."""
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def from_reply(reply: Mapping[str, Any], issued: datetime) -> dict[str, str]:
    """The expiry fields a token reply gives, counted from ``issued`` (when the request left)."""
    fields: dict[str, str] = {}
    for field, key in _REPLY_FIELDS.items():
        try:
            seconds = int(float(reply.get(key)))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            continue
        if seconds > 0:
            fields[field] = iso(issued + timedelta(seconds=seconds))
    return fields


def changed(secret: Mapping[str, Any], fields: Mapping[str, str]) -> bool:
    """Whether ``fields`` differ enough from what the secret holds to be worth writing."""
    for field, value in fields.items():
        stored, new = parse(secret.get(field)), parse(value)
        if stored is None or new is None or abs(new - stored) >= SAVE_WHEN_MOVED:
            return True
    return False


def days_left(secret: Mapping[str, Any], now: datetime) -> float | None:
    """Days until the earlier of the two dates (negative once passed), None when neither is known."""
    dates = [d for d in (parse(secret.get(EXPIRES_AT)), parse(secret.get(HARD_EXPIRES_AT))) if d]
    return round((min(dates) - now).total_seconds() / 86400, 1) if dates else None


def warnings(secret: Mapping[str, Any], now: datetime, ahead: timedelta = WARN_AHEAD) -> list[str]:
    """One line per date that is less than ``ahead`` away, saying what to do."""
    lines = []
    hard = parse(secret.get(HARD_EXPIRES_AT))
    for field, label in _LABELS.items():
        moment = parse(secret.get(field))
        if moment is None or moment - now > ahead:
            continue
        if field == EXPIRES_AT and hard is not None and moment >= hard - SAVE_WHEN_MOVED:
            continue  # the rolling date is capped by the hard one: one reason, one line
        when = moment.strftime("%Y-%m-%d")
        state = "has expired" if moment <= now else f"{label} on {when}"
        lines.append(
            f"The QuickBooks connection {state} ({(moment - now).days} days): run `make qbo-auth ENV=aws` "
            "to reconnect before then, or billing stops"
        )
    return lines


def report(secret: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    """The run-summary block: both dates, days left and the warnings."""
    return {
        EXPIRES_AT: secret.get(EXPIRES_AT),
        HARD_EXPIRES_AT: secret.get(HARD_EXPIRES_AT),
        "days_left": days_left(secret, now),
        "warnings": warnings(secret, now),
    }
