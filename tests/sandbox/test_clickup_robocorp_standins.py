"""ClickUp and Robocorp stand-ins over real HTTPS: auth rules, default-owner-only time, paging."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import requests

from sandbox import Sandbox

# One sandbox per module (module-scoped fixture): keep the module on one xdist worker.
pytestmark = pytest.mark.xdist_group("sandbox-saas")

TOKEN = "pk_81500001_Q7XM2VN9LP4RK8TB1YD6HS3GF0JC5ZWA"
TEAM = "9012345678"
MEMBERS = "81500001,81500002,81500003,81500004"
ACME_WS = "1a2b3c4d-5e6f-4a1b-8c2d-3e4f5a6b7c8d"
ACME_KEY = "rcws_acme_7Tm2Qx9Vb4Nk8Lp3Rs6Wd1Yh5Gf0Jc2Ze"
DELTA_KEY = "rcws_delta_6Wn3Qx8Vm1Lp4Rk7Tb2Yd9Hs5Gf0Jc"


def _ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


OCTOBER = {"start_date": _ms("2026-10-01T00:00:00"), "end_date": _ms("2026-11-01T00:00:00") - 1}
NOVEMBER = {"start_date": _ms("2026-11-01T00:00:00"), "end_date": _ms("2026-12-01T00:00:00") - 1}


def _entries(sandbox: Sandbox, http: requests.Session, **params: object) -> requests.Response:
    return http.get(
        f"{sandbox.env['CLICKUP_BASE_URL']}/team/{TEAM}/time_entries",
        params=params,
        headers={"Authorization": TOKEN},
    )


def test_clickup_wants_the_bare_personal_token(sandbox: Sandbox, http: requests.Session) -> None:
    base = sandbox.env["CLICKUP_BASE_URL"]
    bearer = http.get(f"{base}/team", headers={"Authorization": f"Bearer {TOKEN}"})
    missing = http.get(f"{base}/team")
    teams = http.get(f"{base}/team", headers={"Authorization": TOKEN}).json()["teams"]

    assert bearer.status_code == 401 and bearer.json()["ECODE"] == "OAUTH_025"
    assert missing.status_code == 401
    assert teams[0]["id"] == TEAM
    assert [m["user"]["id"] for m in teams[0]["members"]] == [81500001, 81500002, 81500003, 81500004]


def test_without_assignee_only_the_token_owner_entries_come_back(
    sandbox: Sandbox, http: requests.Session
) -> None:
    own = _entries(sandbox, http, **OCTOBER).json()["data"]
    everyone = _entries(sandbox, http, assignee=MEMBERS, **OCTOBER).json()["data"]

    assert {e["user"]["id"] for e in own} == {81500001}
    assert len(own) == 3
    assert {e["user"]["id"] for e in everyone} == {81500001, 81500002, 81500003}
    assert len(everyone) == 16  # 15 + the planted 13 h entry (a hold)


def test_time_entries_have_string_durations_running_timers_and_location_names(
    sandbox: Sandbox, http: requests.Session
) -> None:
    entries = {
        e["id"]: e
        for e in _entries(sandbox, http, assignee=MEMBERS, include_location_names="true", **OCTOBER).json()[
            "data"
        ]
    }
    plain = {e["id"]: e for e in _entries(sandbox, http, assignee=MEMBERS, **OCTOBER).json()["data"]}

    first = entries["4120000000000000101"]
    assert (
        first["duration"] == "5400000"
        and first["start"] == str(_ms("2026-10-05T15:00:00"))
        and first["billable"] is True
    )
    assert first["task"]["name"] == "Month-end close support"
    assert first["task_location"] == {
        "list_id": 901204402,
        "folder_id": 90130002,
        "space_id": 90120001,
        "list_name": "Automation support",
        "folder_name": "10002 - Acme CPA",
        "space_name": "Clients",
    }
    assert set(plain["4120000000000000101"]["task_location"]) == {"list_id", "folder_id", "space_id"}
    running = entries["4120000000000000106"]
    assert int(running["duration"]) < 0 and running["end"] is None


def test_entries_overlapping_the_window_come_back_in_both_months(
    sandbox: Sandbox, http: requests.Session
) -> None:
    november = {e["id"] for e in _entries(sandbox, http, assignee=MEMBERS, **NOVEMBER).json()["data"]}
    assert (
        "4120000000000000112" in november
    )  # started Oct 31 22:30, ended Nov 1 00:30: the client assigns by start


def test_clickup_rejects_bad_windows_and_two_location_filters(
    sandbox: Sandbox, http: requests.Session
) -> None:
    backwards = _entries(sandbox, http, start_date=10, end_date=5)
    two = _entries(sandbox, http, space_id="1", list_id="2")
    assert backwards.status_code == 400 and two.status_code == 400


def _runs(
    sandbox: Sandbox, http: requests.Session, key: str, workspace: str = ACME_WS, **params: object
) -> requests.Response:
    url = f"{sandbox.env['ROBOCORP_BASE_URL']}/workspaces/{workspace}/process-runs"
    return http.get(url, params=params, headers={"Authorization": f"RC-WSKEY {key}"})


def test_robocorp_key_must_belong_to_the_workspace(sandbox: Sandbox, http: requests.Session) -> None:
    other = _runs(sandbox, http, DELTA_KEY)
    unknown = _runs(sandbox, http, "nope")
    bare = http.get(
        f"{sandbox.env['ROBOCORP_BASE_URL']}/workspaces/{ACME_WS}/process-runs",
        headers={"Authorization": ACME_KEY},
    )

    assert other.status_code == 403 and other.json()["error"]["code"] == "forbidden"
    assert unknown.status_code == 401 and bare.status_code == 401


def test_robocorp_pages_newest_first_following_next(sandbox: Sandbox, http: requests.Session) -> None:
    page = _runs(sandbox, http, ACME_KEY, limit=20).json()
    runs, pages = list(page["data"]), 1
    while page["has_more"]:
        assert page["next"].startswith(sandbox.env["ROBOCORP_BASE_URL"])
        page = http.get(page["next"], headers={"Authorization": f"RC-WSKEY {ACME_KEY}"}).json()
        runs += page["data"]
        pages += 1

    assert pages == 4 and page["next"] is None
    assert len(runs) == len({r["id"] for r in runs}) == 75
    assert [r["created_at"] for r in runs] == sorted((r["created_at"] for r in runs), reverse=True)
    crossing = next(r for r in runs if r["started_at"] == "2026-10-31T23:50:00.000Z")
    assert crossing["ended_at"] == "2026-11-01T00:20:00.000Z" and crossing["duration"] == 1800.0
    assert set(crossing) == {
        "id",
        "state",
        "created_at",
        "started_at",
        "ended_at",
        "process",
        "started_by",
        "duration",
    }


def test_robocorp_limit_is_capped_and_in_progress_runs_have_no_end(
    sandbox: Sandbox, http: requests.Session
) -> None:
    capped = _runs(sandbox, http, ACME_KEY, limit=1000).json()
    eu = _runs(
        sandbox,
        http,
        "rcws_bircheu_9Lx4Qm7Vn2Wp5Rk8Tb1Yd6Hs3Gf0Jc",
        workspace="3c4d5e6f-7a8b-4c3d-8e4f-5a6b7c8d9e0f",
        state="in_progress",
    ).json()

    assert len(capped["data"]) == 100 or not capped["has_more"]
    assert [(r["state"], r["ended_at"], r["duration"]) for r in eu["data"]] == [("in_progress", None, None)]
