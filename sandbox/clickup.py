"""ClickUp API v2 stand-in: the workspace (team) with its members, and time entries.

Like the real API: the personal token goes in ``Authorization`` without ``Bearer``; without
``assignee`` only the token owner's entries come back (owners/admins may pass every member id);
durations are strings (milliseconds) and a running timer has a negative duration; there is no
paging. Entries are returned when they overlap [start_date, end_date] (boundary semantics are not
documented; overlap is the harder case for clients, which must de-duplicate and assign by start).
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from typing import Any

from flask import Flask, Response, request

from sandbox.store import JsonStore, dumps

THIRTY_DAYS_MS = 30 * 24 * 3600 * 1000
COLORS = ("#7b68ee", "#ff7fab", "#0ab4ff", "#2ecd6f", "#e16b16", "#f9d900")


def to_ms(value: str) -> int:
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def _json(status: int, payload: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(dumps(payload), status=status, content_type="application/json", headers=headers or {})


def _error(status: int, message: str, code: str) -> Response:
    return _json(status, {"err": message, "ECODE": code})


class ClickUpStandIn:
    def __init__(self, store: JsonStore) -> None:
        self.store = store

    def seed(self, config: dict[str, Any]) -> None:
        members = []
        for index, raw in enumerate(config.get("members", [])):
            name = raw["username"]
            members.append(
                {
                    "id": int(raw["id"]),
                    "username": name,
                    "email": raw.get("email"),
                    "color": raw.get("color", COLORS[index % len(COLORS)]),
                    "initials": "".join(part[0] for part in name.split()[:2]).upper(),
                    "profilePicture": None,
                    "role": int(raw.get("role", 3)),
                }
            )
        tasks: dict[str, dict[str, Any]] = {}
        for space in config.get("spaces", []):
            containers = [(folder, folder.get("lists", [])) for folder in space.get("folders", [])]
            containers.append(({"id": None, "name": None}, space.get("lists", [])))
            for folder, lists in containers:
                for list_ in lists:
                    for task in list_.get("tasks", []):
                        tasks[str(task["id"])] = {
                            "id": str(task["id"]),
                            "name": task["name"],
                            "custom_id": task.get("custom_id"),
                            "status": task.get("status", "in progress"),
                            "location": {
                                "list_id": int(list_["id"]),
                                "folder_id": int(folder["id"]) if folder.get("id") is not None else None,
                                "space_id": int(space["id"]),
                                "list_name": list_["name"],
                                "folder_name": folder.get("name")
                                if folder.get("id") is not None
                                else "hidden",
                                "space_name": space["name"],
                            },
                        }
        entries = []
        for index, raw in enumerate(config.get("time_entries", [])):
            start = to_ms(raw["start"])
            if raw.get("running"):
                end, duration = None, -start
            elif "end" in raw:
                end = to_ms(raw["end"])
                duration = end - start
            else:
                duration = int(round(float(raw["duration_minutes"]) * 60_000))
                end = start + duration
            task_id = raw.get("task")
            if task_id is not None and str(task_id) not in tasks:
                raise ValueError(f"clickup time entry {index}: unknown task {task_id!r}")
            entries.append(
                {
                    "id": str(raw.get("id") or 4_120_000_000_000_000_001 + index),
                    "user": int(raw["user"]),
                    "task": str(task_id) if task_id is not None else None,
                    "billable": bool(raw.get("billable", True)),
                    "start": start,
                    "end": end,
                    "duration": duration,
                    "description": raw.get("description", ""),
                    "tags": raw.get("tags", []),
                }
            )
        owner = int(config.get("token_owner", members[0]["id"] if members else 0))
        self.store.put(
            "clickup/workspace",
            {
                "team_id": str(config["team_id"]),
                "team_name": config.get("team_name", "Workspace"),
                "api_token": config["api_token"],
                "token_owner": owner,
                "members": members,
                "tasks": tasks,
            },
        )
        self.store.put("clickup/time_entries", entries)

    @property
    def workspace(self) -> dict[str, Any]:
        return self.store.get("clickup/workspace")

    def _render(self, entry: dict[str, Any], names: bool) -> dict[str, Any]:
        workspace = self.workspace
        user = next(
            (m for m in workspace["members"] if m["id"] == entry["user"]),
            {"id": entry["user"], "username": "?"},
        )
        out: dict[str, Any] = {"id": entry["id"]}
        task = workspace["tasks"].get(entry["task"]) if entry["task"] else None
        if task is not None:
            out["task"] = {
                "id": task["id"],
                "custom_id": task["custom_id"],
                "name": task["name"],
                "status": {"status": task["status"], "color": "#4194f6", "type": "custom", "orderindex": 1},
                "custom_type": None,
            }
        last_change = entry["end"] if entry["end"] is not None else entry["start"]
        out.update(
            {
                "wid": workspace["team_id"],
                "user": {
                    k: user.get(k) for k in ("id", "username", "email", "color", "initials", "profilePicture")
                },
                "billable": entry["billable"],
                "start": str(entry["start"]),
                "end": str(entry["end"]) if entry["end"] is not None else None,
                "duration": str(entry["duration"]),
                "description": entry["description"],
                "tags": entry["tags"],
                "source": "clickup",
                "at": str(last_change),
            }
        )
        if task is not None:
            location = task["location"]
            keys = ("list_id", "folder_id", "space_id") + (
                ("list_name", "folder_name", "space_name") if names else ()
            )
            out["task_location"] = {k: location[k] for k in keys}
            out["task_tags"] = []
            out["task_url"] = f"https://app.clickup.com/t/{task['id']}"
        return out

    def app(self) -> Flask:
        app = Flask("sandbox-clickup")

        @app.before_request
        def authenticate() -> Response | None:
            header = request.headers.get("Authorization")
            if not header:
                return _error(401, "Authorization header required", "OAUTH_017")
            if header != self.workspace["api_token"]:
                return _error(401, "Token invalid", "OAUTH_025")
            return None

        @app.get("/api/v2/team")
        def teams() -> Response:
            workspace = self.workspace
            members = [{"user": {k: v for k, v in m.items()}} for m in workspace["members"]]
            team = {
                "id": workspace["team_id"],
                "name": workspace["team_name"],
                "color": "#7b68ee",
                "avatar": None,
                "members": members,
            }
            return _json(200, {"teams": [team]})

        @app.get("/api/v2/user")
        def user() -> Response:
            workspace = self.workspace
            owner = next(m for m in workspace["members"] if m["id"] == workspace["token_owner"])
            return _json(
                200,
                {
                    "user": {
                        k: owner.get(k)
                        for k in ("id", "username", "email", "color", "initials", "profilePicture")
                    }
                },
            )

        @app.get("/api/v2/team/<team_id>/time_entries")
        def time_entries(team_id: str) -> Response:
            workspace = self.workspace
            if team_id != workspace["team_id"]:
                return _error(401, "Team not authorized", "OAUTH_027")
            args = request.args
            now = int(time.time() * 1000)
            try:
                end = int(args["end_date"]) if args.get("end_date") else now
                start = int(args["start_date"]) if args.get("start_date") else end - THIRTY_DAYS_MS
            except ValueError:
                return _error(
                    400, "start_date and end_date must be Unix times in milliseconds", "TIMEENTRY_001"
                )
            if end < start:
                return _error(400, "end_date must not be before start_date", "TIMEENTRY_002")
            locations = [k for k in ("space_id", "folder_id", "list_id", "task_id") if args.get(k)]
            if len(locations) > 1:
                return _error(
                    400,
                    "Only one location filter (space_id, folder_id, list_id, task_id) may be used",
                    "TIMEENTRY_050",
                )
            owner = workspace["token_owner"]
            member_ids = {m["id"] for m in workspace["members"]}
            if args.get("assignee"):
                raw_ids = [part.strip() for part in args["assignee"].split(",") if part.strip()]
                if not all(re.fullmatch(r"\d+", part) for part in raw_ids):
                    return _error(400, "assignee must be a comma-separated list of user ids", "TIMEENTRY_004")
                wanted = {int(part) for part in raw_ids}
                owner_role = next((m["role"] for m in workspace["members"] if m["id"] == owner), 3)
                if wanted - {owner} and owner_role not in (1, 2):
                    return _error(
                        401,
                        "Only Workspace owners and admins can view other users' time entries",
                        "TIMEENTRY_030",
                    )
                if wanted - member_ids:
                    return _error(400, "Assignee not found in the workspace", "TIMEENTRY_005")
            else:
                wanted = {owner}
            names = args.get("include_location_names", "").lower() == "true"
            billable = args.get("is_billable")
            out = []
            for entry in self.store.get("clickup/time_entries", []):
                entry_end = entry["end"] if entry["end"] is not None else now
                if entry["user"] not in wanted or entry["start"] > end or entry_end < start:
                    continue
                if billable in ("true", "false") and entry["billable"] != (billable == "true"):
                    continue
                if locations:
                    task = workspace["tasks"].get(entry["task"] or "")
                    key = locations[0]
                    value = (
                        task["id"]
                        if task and key == "task_id"
                        else (task["location"].get(key) if task else None)
                    )
                    if str(value) != args[key]:
                        continue
                out.append(self._render(entry, names))
            out.sort(key=lambda e: int(e["start"]), reverse=True)
            return _json(200, {"data": out})

        @app.errorhandler(404)
        @app.errorhandler(405)
        def unknown(error: Any) -> Response:
            return _error(error.code, f"Route not found: {request.method} {request.path}", "APP_404")

        return app
