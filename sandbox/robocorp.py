"""Robocorp Control Room API v1 stand-in: process runs of a workspace.

Like the real API: ``Authorization: RC-WSKEY <key>`` with a workspace-scoped key (another
workspace's key gets 403, an unknown key 401); lists are pages of ``limit`` (capped at 100 here;
the real maximum is not documented) as ``{next (full URL), has_more, data}``, newest first, with no
date filter.
"""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from flask import Flask, Response, request

from sandbox.store import JsonStore, dumps

MAX_LIMIT = 100
DEFAULT_LIMIT = 20


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _parse(value: str) -> datetime:
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _json(status: int, payload: Any) -> Response:
    return Response(dumps(payload), status=status, content_type="application/json")


def _error(status: int, code: str, message: str) -> Response:
    return _json(status, {"error": {"code": code, "message": message}})


def expand_runs(workspace: dict[str, Any]) -> list[dict[str, Any]]:
    """The runs of a scenario workspace: explicit ``runs`` plus generated ``series``."""
    specs = list(workspace.get("runs", []))
    for series in workspace.get("series", []):
        first = _parse(series["first_started_at"])
        every = timedelta(hours=float(series["every_hours"]))
        for n in range(int(series["count"])):
            specs.append(
                {k: v for k, v in series.items() if k not in ("first_started_at", "every_hours", "count")}
                | {"started_at": (first + n * every).isoformat()}
            )
    processes = {p["name"]: p for p in workspace.get("processes", [])}
    runs = []
    for spec in specs:
        name = spec["process"]
        process = processes.setdefault(
            name, {"name": name, "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{workspace['id']}/{name}"))}
        )
        started = _parse(spec["started_at"])
        state = spec.get("state", "completed")
        ended: datetime | None = None
        duration: float | None = None
        if spec.get("ended_at"):
            ended = _parse(spec["ended_at"])
            duration = float(spec.get("duration", (ended - started).total_seconds()))
        elif spec.get("duration") is not None and state not in ("in_progress", "new", "stopping"):
            duration = float(spec["duration"])
            ended = started + timedelta(seconds=duration)
        run_id = spec.get("id") or str(
            uuid.uuid5(uuid.NAMESPACE_URL, f"{workspace['id']}/{name}/{started.isoformat()}")
        )
        created = started - timedelta(seconds=float(spec.get("queued_seconds", 3)))
        runs.append(
            {
                "id": run_id,
                "state": state,
                "created_at": _iso(created),
                "started_at": _iso(started),
                "ended_at": _iso(ended) if ended else None,
                "process": {"id": process["id"], "name": name},
                "started_by": spec.get("started_by", {"type": "schedule", "details": None}),
                "duration": duration,
            }
        )
    runs.sort(key=lambda run: (run["created_at"], run["id"]), reverse=True)
    return runs


class RobocorpStandIn:
    def __init__(self, store: JsonStore) -> None:
        self.store = store

    def seed(self, config: dict[str, Any]) -> None:
        workspaces = {}
        for raw in config.get("workspaces", []):
            runs = expand_runs(raw)
            processes = {run["process"]["id"]: run["process"]["name"] for run in runs}
            for process in raw.get("processes", []):
                processes.setdefault(
                    process.get("id")
                    or str(uuid.uuid5(uuid.NAMESPACE_URL, f"{raw['id']}/{process['name']}")),
                    process["name"],
                )
            workspaces[raw["id"]] = {
                "id": raw["id"],
                "name": raw.get("name", raw["id"]),
                "organization_id": config.get("organization_id"),
                "api_key": raw["api_key"],
                "processes": [{"id": pid, "name": name} for pid, name in processes.items()],
                "runs": runs,
            }
        self.store.put("robocorp/workspaces", workspaces)

    @property
    def workspaces(self) -> dict[str, Any]:
        return self.store.get("robocorp/workspaces", {})

    def app(self) -> Flask:
        app = Flask("sandbox-robocorp")

        @app.before_request
        def authenticate() -> Response | None:
            header = request.headers.get("Authorization", "")
            if not header.startswith("RC-WSKEY "):
                return _error(
                    401,
                    "unauthorized",
                    "Missing or malformed Authorization header; expected 'RC-WSKEY <key>'.",
                )
            key = header[len("RC-WSKEY ") :]
            workspace_id = (request.view_args or {}).get("workspace_id")
            owner = next((ws for ws in self.workspaces.values() if ws["api_key"] == key), None)
            if owner is None:
                return _error(401, "unauthorized", "Invalid API key.")
            if workspace_id is not None and owner["id"] != workspace_id:
                return _error(403, "forbidden", "The API key does not grant access to this workspace.")
            return None

        def page(items: list[dict[str, Any]], path: str, extra: dict[str, str]) -> Response:
            try:
                limit = int(request.args.get("limit", DEFAULT_LIMIT))
                offset = (
                    json.loads(base64.urlsafe_b64decode(request.args["cursor"]))["o"]
                    if request.args.get("cursor")
                    else 0
                )
            except (ValueError, KeyError, TypeError):
                return _error(
                    400,
                    "invalid_request",
                    "limit must be a number and cursor must come from a previous 'next'.",
                )
            limit = max(1, min(limit, MAX_LIMIT))
            chunk = items[offset : offset + limit]
            has_more = offset + limit < len(items)
            following = None
            if has_more:
                cursor = base64.urlsafe_b64encode(json.dumps({"o": offset + limit}).encode()).decode()
                following = f"{request.host_url.rstrip('/')}{path}?" + urlencode(
                    {**extra, "limit": limit, "cursor": cursor}
                )
            return _json(200, {"next": following, "has_more": has_more, "data": chunk})

        @app.get("/api/v1/workspaces/<workspace_id>")
        def workspace(workspace_id: str) -> Response:
            ws = self.workspaces[workspace_id]
            return _json(
                200, {"id": ws["id"], "name": ws["name"], "organization": {"id": ws["organization_id"]}}
            )

        @app.get("/api/v1/workspaces/<workspace_id>/processes")
        def processes(workspace_id: str) -> Response:
            ws = self.workspaces[workspace_id]
            return page(
                [{**p, "created_at": "2024-01-02T09:00:00.000Z"} for p in ws["processes"]], request.path, {}
            )

        @app.get("/api/v1/workspaces/<workspace_id>/process-runs")
        def process_runs(workspace_id: str) -> Response:
            runs = self.workspaces[workspace_id]["runs"]
            filters = {k: request.args[k] for k in ("process_id", "state") if request.args.get(k)}
            if "process_id" in filters:
                runs = [r for r in runs if r["process"]["id"] == filters["process_id"]]
            if "state" in filters:
                runs = [r for r in runs if r["state"] == filters["state"]]
            return page(runs, request.path, filters)

        @app.get("/api/v1/workspaces/<workspace_id>/process-runs/<run_id>")
        def process_run(workspace_id: str, run_id: str) -> Response:
            run = next((r for r in self.workspaces[workspace_id]["runs"] if r["id"] == run_id), None)
            if run is None:
                return _error(404, "not_found", f"Process run {run_id} was not found.")
            return _json(200, run)

        @app.errorhandler(404)
        @app.errorhandler(405)
        def unknown(error: Any) -> Response:
            return _error(error.code, "not_found", f"{request.method} {request.path} was not found.")

        return app
