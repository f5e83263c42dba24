"""Robocorp Control Room (API v1) client: the process runs of a workspace.

Keys are workspace-scoped (``Authorization: RC-WSKEY <key>``), one per workspace, from the
Robocorp secret. The run list has no date filter and an undocumented sort order, so every page is
read: ``next`` (a full URL) is followed verbatim while ``has_more`` is true. A repeated ``next``
URL or an absurd number of pages means the server is looping and is reported, never spun on.
``next`` must stay on the base URL's origin: the workspace key is sent with it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import quote, urlsplit

import requests

from integrations import errors, http
from integrations.logging import register_secret
from integrations.models import ProcessRun

SERVICE = "robocorp"
MAX_PAGES = 10_000


class MissingApiKey(errors.ServiceError):
    """The Robocorp secret holds no key for a workspace named in the client registry."""


def _parse_error(response: requests.Response) -> tuple[str, str | None]:
    body = response.json()
    if isinstance(body, dict):
        for key in ("message", "error_description", "detail", "error"):
            value = body.get(key)
            if isinstance(value, str) and value:
                code = body.get("code") or (body.get("error") if key != "error" else None)
                return value, (str(code) if code else None)
            if isinstance(value, dict) and value.get("message"):
                return str(value["message"]), (str(value["code"]) if value.get("code") else None)
    raise ValueError("not a recognised error body")


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme.lower(), parts.netloc.lower()


class RobocorpClient:
    """Lists process runs of the workspaces whose keys it holds."""

    def __init__(
        self,
        session: requests.Session,
        base_url: str,
        api_keys: Mapping[str, str],
        *,
        max_pages: int = MAX_PAGES,
    ):
        register_secret(dict(api_keys))
        self._session = session
        self.base_url = base_url.rstrip("/")
        self._keys = {str(k): v for k, v in api_keys.items()}
        self.max_pages = max_pages

    def process_runs(self, workspace_id: str, limit: int = 100) -> Iterator[ProcessRun]:
        """Every process run of the workspace, page by page (filter by date in the caller).

        The key is checked now, not on first iteration, so a missing key fails where it is asked for.
        """
        workspace_id = str(workspace_id)
        operation = f"GET /workspaces/{workspace_id}/process-runs"
        key = self._keys.get(workspace_id)
        if not key:
            raise MissingApiKey(
                SERVICE, operation, f"the Robocorp secret has no API key for workspace {workspace_id}"
            )
        if not isinstance(limit, int) or limit < 1:
            raise ValueError(f"limit must be a positive whole number (got {limit!r})")
        first = f"{self.base_url}/workspaces/{quote(workspace_id, safe='')}/process-runs"
        return self._pages(workspace_id, operation, first, {"limit": str(limit)}, key)

    def _pages(
        self, workspace_id: str, operation: str, url: str, params: dict[str, str] | None, key: str
    ) -> Iterator[ProcessRun]:
        headers = {"Authorization": f"RC-WSKEY {key}"}
        seen: set[str] = set()
        origin = _origin(self.base_url)
        for page in range(1, self.max_pages + 1):
            response = http.call(
                self._session,
                SERVICE,
                operation,
                "GET",
                url,
                params=params,
                headers=headers,
                parse_error=_parse_error,
            )
            seen.update((url, response.url))  # as given and as requests normalised it
            body = http.json_body(response, SERVICE, operation)
            data = body.get("data") if isinstance(body, dict) else None
            if not isinstance(data, list):
                raise errors.GarbledResponse(SERVICE, operation, f"page {page} has no 'data' list")
            for index, raw in enumerate(data):
                yield _process_run(raw, workspace_id, index, operation)
            if body.get("has_more") is not True:
                return
            next_url = body.get("next")
            if not isinstance(next_url, str) or not next_url:
                raise errors.GarbledResponse(
                    SERVICE, operation, f"page {page} has has_more=true but no 'next'"
                )
            if next_url in seen:
                raise errors.GarbledResponse(
                    SERVICE, operation, f"pagination loop: page {page} points back to a page already read"
                )
            if _origin(next_url) != origin:
                raise errors.GarbledResponse(
                    SERVICE,
                    operation,
                    f"page {page}: 'next' leaves {origin[1]}; not following it with the key",
                )
            url, params = next_url, None  # 'next' already carries the query
        raise errors.GarbledResponse(
            SERVICE, operation, f"more than {self.max_pages} pages; stopping (is the server looping?)"
        )


def _timestamp(value: Any, field: str, run_id: str, operation: str) -> datetime | None:
    if value is None or value == "":
        return None
    try:
        if not isinstance(value, str):
            raise TypeError
        moment = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except (TypeError, ValueError):
        raise errors.GarbledResponse(
            SERVICE, operation, f"process run {run_id}: {field} is not an ISO 8601 time"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)  # the API documents UTC
    return moment.astimezone(UTC)


def _duration(value: Any, run_id: str, operation: str) -> Decimal | None:
    if value is None:
        return None
    try:
        if isinstance(value, bool):
            raise TypeError
        seconds = Decimal(str(value))
        if not seconds.is_finite() or seconds < 0:
            raise ValueError
    except (TypeError, ValueError, InvalidOperation):
        raise errors.GarbledResponse(
            SERVICE, operation, f"process run {run_id}: duration is not a non-negative number of seconds"
        ) from None
    return seconds


def _process_run(raw: Any, workspace_id: str, index: int, operation: str) -> ProcessRun:
    if not isinstance(raw, dict) or raw.get("id") in (None, ""):
        raise errors.GarbledResponse(SERVICE, operation, f"process run #{index} has no id")
    run_id = str(raw["id"])
    process = raw.get("process")
    if not isinstance(process, dict) or process.get("id") in (None, ""):
        raise errors.GarbledResponse(SERVICE, operation, f"process run {run_id} has no process.id")
    return ProcessRun(
        id=run_id,
        workspace_id=workspace_id,
        process_id=str(process["id"]),
        process_name=str(process.get("name") or process["id"]),
        state=str(raw.get("state") or ""),
        started_at=_timestamp(raw.get("started_at"), "started_at", run_id, operation),
        ended_at=_timestamp(raw.get("ended_at"), "ended_at", run_id, operation),
        duration_seconds=_duration(raw.get("duration"), run_id, operation),
    )


def build_robocorp(settings: Any, api_keys: Mapping[str, Any]) -> RobocorpClient:
    """Client from Settings and the Robocorp secret ``{"<workspace_id>": "<key>"}``.

    An empty mapping is allowed (clients without robots); a workspace without a key fails that
    client only, with MissingApiKey.
    """
    if not isinstance(api_keys, Mapping):
        raise errors.ConfigError(
            [f"secret {settings.robocorp_secret_name} must be a JSON object of workspace id -> API key"]
        )
    register_secret([v for v in api_keys.values() if isinstance(v, str)])
    bad = [str(ws) for ws, key in api_keys.items() if not isinstance(key, str) or not key.strip()]
    if bad:
        raise errors.ConfigError(
            [
                f"secret {settings.robocorp_secret_name} has an empty or non-text API key for workspace(s): "
                + ", ".join(sorted(bad))
            ]
        )
    session = http.session_for(SERVICE, settings)
    keys = {str(ws).strip(): key.strip() for ws, key in api_keys.items()}
    return RobocorpClient(session, settings.robocorp_base_url, keys)
