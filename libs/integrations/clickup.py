"""ClickUp v2 client: workspace members and the time entries of a period.

The time-entries endpoint returns only the token owner's entries unless ``assignee`` lists every
member, so callers pass all member ids. It is not paged (a "fetch page+1" loop never ends), so a
period is fetched in windows of at most 7 days to keep each answer small.

Rate limits: ClickUp answers 429 with only ``X-RateLimit-Limit/Remaining/Reset`` (the reset a Unix
time in seconds), no ``Retry-After``. The shared session sleeps until that reset (capped by
HTTP_MAX_RETRY_AFTER_SECONDS) and counts the wait; a 429 that outlasts the budget becomes
``RateLimited``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import requests
from loguru import logger

from integrations import errors, http
from integrations.logging import register_secret
from integrations.models import Member, TimeEntry

SERVICE = "clickup"
WINDOW = timedelta(days=7)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _parse_error(response: requests.Response) -> tuple[str, str | None]:
    """ClickUp errors look like ``{"err": "Token invalid", "ECODE": "OAUTH_025"}``."""
    body = response.json()
    if isinstance(body, dict) and body.get("err"):
        return str(body["err"]), (str(body["ECODE"]) if body.get("ECODE") else None)
    raise ValueError("not a ClickUp error body")


def to_ms(moment: datetime) -> int:
    """Unix milliseconds of an aware datetime (exact: no float rounding)."""
    return (moment - _EPOCH) // timedelta(milliseconds=1)


def from_ms(ms: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=ms)


class ClickUpClient:
    """Reads members and time entries of one ClickUp workspace (``team_id``)."""

    def __init__(self, session: requests.Session, api_token: str, team_id: str, base_url: str):
        register_secret(api_token)
        self._session = session
        self._headers = {"Authorization": api_token}  # personal tokens: no "Bearer" prefix
        self.team_id = str(team_id)
        self.base_url = base_url.rstrip("/")

    def throttling(self) -> dict[str, float]:
        """The 429s this client slept out (until X-RateLimit-Reset) and how long (run summary)."""
        return http.throttling(self._session)

    def _get(self, path: str, operation: str, params: Mapping[str, str] | None = None) -> Any:
        response = http.call(
            self._session,
            SERVICE,
            operation,
            "GET",
            f"{self.base_url}{path}",
            params=params,
            headers=self._headers,
            parse_error=_parse_error,
        )
        return http.json_body(response, SERVICE, operation)

    def members(self) -> list[Member]:
        """Members of our workspace, from ``GET /team`` (the workspaces this token can see)."""
        operation = "GET /team"
        body = self._get("/team", operation)
        teams = body.get("teams") if isinstance(body, dict) else None
        if not isinstance(teams, list):
            raise errors.GarbledResponse(SERVICE, operation, "reply has no 'teams' list")
        team = next((t for t in teams if isinstance(t, dict) and str(t.get("id")) == self.team_id), None)
        if team is None:
            visible = ", ".join(str(t.get("id")) for t in teams if isinstance(t, dict)) or "none"
            raise errors.NotFound(
                SERVICE,
                operation,
                f"workspace {self.team_id} is not visible to this token (visible: {visible}); "
                "check team_id in the ClickUp secret",
            )
        members: list[Member] = []
        for index, raw in enumerate(team.get("members") or []):
            user = raw.get("user") if isinstance(raw, dict) else None
            if not isinstance(user, dict) or user.get("id") in (None, ""):
                raise errors.GarbledResponse(SERVICE, operation, f"member #{index} has no user.id")
            members.append(
                Member(id=str(user["id"]), username=str(user.get("username") or ""), email=user.get("email"))
            )
        if not members:
            raise errors.GarbledResponse(SERVICE, operation, f"workspace {self.team_id} lists no members")
        return members

    def time_entries(self, start: datetime, end: datetime, assignee_ids: Sequence[str]) -> list[TimeEntry]:
        """Time entries of every given member that START in ``[start, end)``, sorted by start.

        Fetched in windows of at most 7 days; each request asks for ``[window start, window end
        - 1 ms]`` (ClickUp does not document whether ``end_date`` is inclusive). Entries are
        de-duplicated by id and those starting outside ``[start, end)`` dropped, so every entry
        belongs to exactly one period. Running timers (negative duration) are kept.
        """
        if start.tzinfo is None or end.tzinfo is None:
            raise ValueError("start and end must be timezone-aware")
        ids = [assignee_ids] if isinstance(assignee_ids, str) else list(assignee_ids)
        ids = list(dict.fromkeys(str(i) for i in ids if str(i).strip()))
        if not ids:
            raise ValueError("assignee_ids must list every member (ClickUp defaults to the token owner only)")
        start_ms, end_ms = to_ms(start), to_ms(end)
        path = f"/team/{self.team_id}/time_entries"
        operation = f"GET {path}"
        found: dict[str, TimeEntry] = {}
        window_start = start
        while window_start < end:
            window_end = min(window_start + WINDOW, end)
            params = {
                "start_date": str(to_ms(window_start)),
                "end_date": str(to_ms(window_end) - 1),
                "assignee": ",".join(ids),
                "include_location_names": "true",
            }
            body = self._get(path, operation, params)
            data = body.get("data") if isinstance(body, dict) else None
            if not isinstance(data, list):
                raise errors.GarbledResponse(SERVICE, operation, "reply has no 'data' list")
            for index, raw in enumerate(data):
                entry = _time_entry(raw, index, operation)
                if start_ms <= to_ms(entry.start) < end_ms:
                    found.setdefault(entry.id, entry)
            window_start = window_end
        entries = sorted(found.values(), key=lambda e: (e.start, e.id))
        logger.debug("clickup time entries", count=len(entries), members=len(ids))
        return entries


def _int_field(raw: Mapping[str, Any], name: str, entry_id: str, operation: str) -> int | None:
    """ClickUp sends these as strings or numbers: accept both, reject anything else."""
    value = raw.get(name)
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        value = "bool"
    try:
        return int(value)
    except (TypeError, ValueError):
        raise errors.GarbledResponse(
            SERVICE, operation, f"time entry {entry_id}: field {name!r} is not a whole number"
        ) from None


def _str_or_none(value: Any) -> str | None:
    return None if value in (None, "") else str(value)


def _time_entry(raw: Any, index: int, operation: str) -> TimeEntry:
    if not isinstance(raw, dict):
        raise errors.GarbledResponse(SERVICE, operation, f"time entry #{index} is not an object")
    entry_id = _str_or_none(raw.get("id"))
    if entry_id is None:
        raise errors.GarbledResponse(SERVICE, operation, f"time entry #{index}: field 'id' is missing")
    start = _int_field(raw, "start", entry_id, operation)
    if start is None:
        raise errors.GarbledResponse(SERVICE, operation, f"time entry {entry_id}: field 'start' is missing")
    duration = _int_field(raw, "duration", entry_id, operation)
    if duration is None:
        raise errors.GarbledResponse(
            SERVICE, operation, f"time entry {entry_id}: field 'duration' is missing"
        )
    end = _int_field(raw, "end", entry_id, operation)  # running timers: missing or 0
    user = raw.get("user") if isinstance(raw.get("user"), dict) else {}
    task = raw.get("task") if isinstance(raw.get("task"), dict) else {}
    location = raw.get("task_location") if isinstance(raw.get("task_location"), dict) else {}
    billable = raw.get("billable")
    if isinstance(billable, str):
        billable = billable.strip().lower() == "true"
    return TimeEntry(
        id=entry_id,
        user_id=_str_or_none(user.get("id")) or "",
        user_name=str(user.get("username") or user.get("email") or ""),
        billable=bool(billable),
        start=from_ms(start),
        end=from_ms(end) if end else None,
        duration_ms=duration,
        task_id=_str_or_none(task.get("id")),
        task_name=_str_or_none(task.get("name")),
        description=str(raw.get("description") or ""),
        space_id=_str_or_none(location.get("space_id")),
        folder_id=_str_or_none(location.get("folder_id")),
        list_id=_str_or_none(location.get("list_id")),
        space_name=_str_or_none(location.get("space_name")),
        folder_name=_str_or_none(location.get("folder_name")),
        list_name=_str_or_none(location.get("list_name")),
    )


def build_clickup(settings: Any, secret: Mapping[str, Any]) -> ClickUpClient:
    """Client from Settings and the ClickUp secret (``api_token``, ``team_id``)."""
    if isinstance(secret, Mapping):
        register_secret(secret.get("api_token"))
    values = _required_fields(secret, ("api_token", "team_id"), settings.clickup_secret_name)
    session = http.build_session(
        SERVICE,
        timeout=settings.timeout_for(SERVICE),
        max_retries=settings.http_max_retries,
        max_retry_after=settings.http_max_retry_after_seconds,
        per_minute=100,  # ClickUp's limit per token
    )
    return ClickUpClient(session, values["api_token"], values["team_id"], settings.clickup_base_url)


def _required_fields(secret: Any, fields: Sequence[str], secret_name: str) -> dict[str, str]:
    """The named fields as non-empty strings; ConfigError names what is missing, never a value."""
    if not isinstance(secret, Mapping):
        raise errors.ConfigError([f"secret {secret_name} must be a JSON object"])
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
        raise errors.ConfigError(
            [f"secret {secret_name} is missing or has empty field(s): {', '.join(missing)}"]
        )
    return values
