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
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import requests
from loguru import logger

from integrations import errors, http
from integrations.config import required_fields
from integrations.logging import register_secret
from integrations.models import Member, TimeEntry

SERVICE = "clickup"
# The numeric ``role`` of a workspace member in ``GET /team``. NOT FOUND in our reference notes: the
# codes come from ClickUp's API model as third-party clients use it (1 owner, 2 admin, 3 member,
# 4 guest). Anything else, or no role at all, counts as "may not bill".
ROLE_NAMES = {1: "owner", 2: "admin", 3: "member", 4: "guest"}
BILLING_ROLES = frozenset({1, 2})
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


@dataclass(frozen=True)
class TokenRole:
    """Who the API token belongs to and what that user may do in our workspace."""

    team_id: str
    team_name: str
    user_id: str
    username: str
    role: int | None

    @property
    def role_name(self) -> str:
        return ROLE_NAMES.get(self.role, "unknown") if self.role is not None else "unknown"

    @property
    def may_bill(self) -> bool:
        """Only owners and admins may read every member's time (``assignee``); anyone else may
        silently get only their own time, which would under-bill (issue 11.13)."""
        return self.role in BILLING_ROLES

    def refusal(self) -> str:
        return (
            f"the ClickUp token belongs to {self.username or self.user_id}, a {self.role_name} of workspace "
            f"{self.team_name or self.team_id}; only an owner or admin sees everyone's time. Make that user "
            "an admin, or store an owner's or admin's personal token (api_token) in the ClickUp secret"
        )


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

    def token_role(self) -> TokenRole:
        """The token user's role in our workspace: ``GET /user`` names the user, ``GET /team`` their role."""
        body = self._get("/user", "GET /user")
        user = body.get("user") if isinstance(body, dict) else None
        if not isinstance(user, dict) or user.get("id") in (None, ""):
            raise errors.GarbledResponse(SERVICE, "GET /user", "reply has no user.id")
        user_id = str(user["id"])
        team = self._team("GET /team")
        member = next(
            (
                m["user"]
                for m in team.get("members") or []
                if isinstance(m, dict)
                and isinstance(m.get("user"), dict)
                and str(m["user"].get("id")) == user_id
            ),
            {},
        )
        role = member.get("role")
        return TokenRole(
            team_id=self.team_id,
            team_name=str(team.get("name") or ""),
            user_id=user_id,
            username=str(user.get("username") or ""),
            role=role if isinstance(role, int) and not isinstance(role, bool) else None,
        )

    def _team(self, operation: str) -> dict[str, Any]:
        """Our workspace from ``GET /team`` (the workspaces this token can see)."""
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
        return team

    def members(self) -> list[Member]:
        """Members of our workspace, from ``GET /team`` (the workspaces this token can see)."""
        operation = "GET /team"
        team = self._team(operation)
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
                entry = _time_entry(raw, index, operation, window_start)
                if entry.problem is not None or start_ms <= to_ms(entry.start) < end_ms:
                    found.setdefault(entry.id, entry)
            window_start = window_end
        entries = sorted(found.values(), key=lambda e: (e.start, e.id))
        logger.debug("clickup time entries", count=len(entries), members=len(ids))
        return entries


class _BadField(ValueError):
    """A field of one time entry that cannot be read: that entry is unusable, the others are fine."""


def _int_field(raw: Mapping[str, Any], name: str) -> int | None:
    """ClickUp sends these as strings or numbers: accept both, reject anything else."""
    value = raw.get(name)
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        value = "bool"
    try:
        return int(value)
    except (TypeError, ValueError):
        raise _BadField(f"field {name!r} is not a whole number ({str(value)[:40]!r})") from None


def _str_or_none(value: Any) -> str | None:
    return None if value in (None, "") else str(value)


def _time_entry(raw: Any, index: int, operation: str, window_start: datetime) -> TimeEntry:
    """One entry as sent. A malformed one comes back with ``problem`` set (and its location, so it
    fails only its own client) instead of failing the whole request."""
    if not isinstance(raw, dict):
        raise errors.GarbledResponse(SERVICE, operation, f"time entry #{index} is not an object")
    entry_id = _str_or_none(raw.get("id")) or f"(no id, #{index} of the page)"
    problems: list[str] = []

    def number(name: str, required: bool) -> int | None:
        try:
            value = _int_field(raw, name)
        except _BadField as exc:
            problems.append(str(exc))
            return None
        if value is None and required:
            problems.append(f"field {name!r} is missing")
        return value

    start, duration = number("start", True), number("duration", True)
    end = number("end", False)  # running timers: missing or 0
    for name, value in (("start", start), ("end", end)):
        if value and not 0 <= value < 253_402_300_800_000:  # before year 10000
            problems.append(f"field {name!r} is not a plausible time ({value})")
            start, end = (None, end) if name == "start" else (start, None)
    if raw.get("id") in (None, ""):
        problems.append("field 'id' is missing")
    if end and duration is not None and duration < 0:
        problems.append(f"a finished entry (it has an end) with a negative duration ({duration} ms)")
    if end and start is not None and end < start:
        problems.append("its end is before its start")
    user = raw.get("user") if isinstance(raw.get("user"), dict) else {}
    task = raw.get("task") if isinstance(raw.get("task"), dict) else {}
    location = raw.get("task_location") if isinstance(raw.get("task_location"), dict) else {}
    billable = raw.get("billable")
    if isinstance(billable, str) and billable.strip().lower() in ("true", "false"):
        billable = billable.strip().lower() == "true"
    if not isinstance(billable, bool):  # "yes", 1, null: never guess whether time is billable
        problems.append(f"field 'billable' is not true or false ({str(billable)[:20]!r})")
        billable = True  # so it is attributed and fails its client by name instead of vanishing
    return TimeEntry(
        id=entry_id,
        user_id=_str_or_none(user.get("id")) or "",
        user_name=str(user.get("username") or user.get("email") or ""),
        billable=bool(billable),
        start=from_ms(start) if start is not None else window_start,
        end=from_ms(end) if end else None,
        duration_ms=duration if duration is not None and not problems else 0,
        task_id=_str_or_none(task.get("id")),
        task_name=_str_or_none(task.get("name")),
        description=str(raw.get("description") or ""),
        space_id=_str_or_none(location.get("space_id")),
        folder_id=_str_or_none(location.get("folder_id")),
        list_id=_str_or_none(location.get("list_id")),
        space_name=_str_or_none(location.get("space_name")),
        folder_name=_str_or_none(location.get("folder_name")),
        list_name=_str_or_none(location.get("list_name")),
        problem="; ".join(problems) or None,
    )


def build_clickup(settings: Any, secret: Mapping[str, Any]) -> ClickUpClient:
    """Client from Settings and the ClickUp secret (``api_token``, ``team_id``)."""
    if isinstance(secret, Mapping):
        register_secret(secret.get("api_token"))
    values = required_fields(secret, ("api_token", "team_id"), settings.clickup_secret_name)
    session = http.session_for(SERVICE, settings, per_minute=100)  # ClickUp's limit per token
    return ClickUpClient(session, values["api_token"], values["team_id"], settings.clickup_base_url)
