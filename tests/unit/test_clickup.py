"""ClickUp client: members, time entries in week windows for all members, parsing and failures."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

import pytest
import responses

from integrations import errors
from integrations.clickup import ClickUpClient, build_clickup
from integrations.config import Settings
from integrations.http import build_session
from integrations.logging import mask
from tests.conftest import Scripted
from tests.settings import make_settings

BASE = "https://clickup.test/api/v2"
TOKEN = "pk_123456_SECRETTOKENVALUE"
ENTRIES_URL = f"{BASE}/team/1234/time_entries"
OCT = datetime(2026, 10, 1, tzinfo=UTC)
NOV = datetime(2026, 11, 1, tzinfo=UTC)


def ms(*args: int) -> int:
    return int(datetime(*args, tzinfo=UTC).timestamp()) * 1000


def client(base: str = BASE, **session_kw) -> ClickUpClient:
    session_kw.setdefault("backoff_factor", 0.01)
    return ClickUpClient(build_session("clickup", **session_kw), TOKEN, "1234", base)


def entry(entry_id: str = "e1", start: int | str = ms(2026, 10, 2, 9), duration: int | str = "3600000", **kw):
    raw = {
        "id": entry_id,
        "task": {"id": "t1", "name": "Month-end close"},
        "user": {"id": 7, "username": "Ana"},
        "billable": True,
        "start": start,
        "end": int(start) + int(duration) if int(duration) > 0 else None,
        "duration": duration,
        "description": "",
        "at": str(start),
        "task_location": {
            "list_id": 1560300071,
            "folder_id": 468300080,
            "space_id": 22800253,
            "list_name": "10002 Acme",
            "folder_name": "Clients",
            "space_name": "Consulting",
        },
    }
    raw.update(kw)
    return raw


def serve_entries(rsps: responses.RequestsMock, by_window: dict[int, list[dict]] | None = None) -> None:
    """Answer each window request with the entries registered for its start_date (default none)."""

    def reply(request):
        start = int(parse_qs(urlsplit(request.url).query)["start_date"][0])
        return 200, {}, json.dumps({"data": (by_window or {}).get(start, [])})

    rsps.add_callback(responses.GET, ENTRIES_URL, callback=reply)


def window_params(rsps: responses.RequestsMock) -> list[dict[str, str]]:
    return [
        {k: v[0] for k, v in parse_qs(urlsplit(c.request.url).query).items()}
        for c in rsps.calls
        if c.request.url.startswith(ENTRIES_URL)
    ]


def test_members_are_the_configured_workspaces_members_sent_with_the_raw_token():
    body = {
        "teams": [
            {"id": "999", "members": [{"user": {"id": 1, "username": "Other"}}]},
            {
                "id": "1234",
                "members": [
                    {"user": {"id": 123, "username": "John Doe", "email": "john@example.com"}},
                    {"user": {"id": 456, "username": "Ana"}},
                ],
            },
        ]
    }
    with responses.RequestsMock() as rsps:
        rsps.get(f"{BASE}/team", json=body)
        members = client().members()
        assert rsps.calls[0].request.headers["Authorization"] == TOKEN  # no "Bearer"
    assert [(m.id, m.username, m.email) for m in members] == [
        ("123", "John Doe", "john@example.com"),
        ("456", "Ana", None),
    ]


def test_members_of_a_workspace_the_token_cannot_see_is_not_found():
    with responses.RequestsMock() as rsps:
        rsps.get(f"{BASE}/team", json={"teams": [{"id": "999", "members": []}]})
        with pytest.raises(errors.NotFound) as caught:
            client().members()
    assert "1234" in caught.value.reason and "999" in caught.value.reason
    assert TOKEN not in str(caught.value)


def test_time_entries_ask_for_every_member_in_week_windows_across_a_month():
    with responses.RequestsMock() as rsps:
        serve_entries(rsps)
        assert client().time_entries(OCT, NOV, ["123", "456", "789"]) == []
        params = window_params(rsps)
    expected = [
        (ms(2026, 10, 1), ms(2026, 10, 8)),
        (ms(2026, 10, 8), ms(2026, 10, 15)),
        (ms(2026, 10, 15), ms(2026, 10, 22)),
        (ms(2026, 10, 22), ms(2026, 10, 29)),
        (ms(2026, 10, 29), ms(2026, 11, 1)),
    ]
    assert [(int(p["start_date"]), int(p["end_date"]) + 1) for p in params] == expected
    assert all(p["assignee"] == "123,456,789" for p in params)
    assert all(p["include_location_names"] == "true" for p in params)
    assert all("page" not in p for p in params)


def test_entries_parse_string_and_number_fields_and_map_the_task_location():
    raw = entry("e1", start=str(ms(2026, 10, 2, 9)), duration="5400000")
    raw["end"] = str(ms(2026, 10, 2, 10, 30))
    without_task = entry("e2", start=ms(2026, 10, 3, 9), duration=600000)
    del without_task["task"]
    with responses.RequestsMock() as rsps:
        serve_entries(rsps, {ms(2026, 10, 1): [raw, without_task]})
        first, second = client().time_entries(OCT, NOV, ["7"])
    assert first.id == "e1" and first.duration_ms == 5_400_000 and first.billable
    assert first.start == datetime(2026, 10, 2, 9, tzinfo=UTC)
    assert first.end == datetime(2026, 10, 2, 10, 30, tzinfo=UTC)
    assert (first.user_id, first.user_name, first.task_id, first.task_name) == (
        "7",
        "Ana",
        "t1",
        "Month-end close",
    )
    assert (first.space_id, first.folder_id, first.list_id) == ("22800253", "468300080", "1560300071")
    assert (first.space_name, first.folder_name, first.list_name) == ("Consulting", "Clients", "10002 Acme")
    assert second.duration_ms == 600_000 and second.task_id is None and second.task_name is None


def test_running_timer_is_kept_with_its_negative_duration():
    running = entry("run", start=ms(2026, 10, 30, 8), duration=str(-ms(2026, 10, 30, 8)))
    running["end"] = "0"
    with responses.RequestsMock() as rsps:
        serve_entries(rsps, {ms(2026, 10, 29): [running]})
        (timer,) = client().time_entries(OCT, NOV, ["7"])
    assert timer.running and timer.duration_ms < 0 and timer.end is None


def test_an_entry_returned_by_two_windows_is_returned_once():
    spanning = entry("span", start=ms(2026, 10, 7, 23))
    with responses.RequestsMock() as rsps:
        serve_entries(
            rsps, {ms(2026, 10, 1): [spanning], ms(2026, 10, 8): [spanning, entry("e9", ms(2026, 10, 9))]}
        )
        found = client().time_entries(OCT, NOV, ["7"])
    assert [e.id for e in found] == ["span", "e9"]


def test_entries_that_start_outside_the_period_are_left_to_their_own_month():
    before = entry("sept", start=ms(2026, 9, 30, 23))
    after = entry("nov", start=ms(2026, 11, 1, 0))
    with responses.RequestsMock() as rsps:
        serve_entries(rsps, {ms(2026, 10, 1): [before, entry("oct")], ms(2026, 10, 29): [after]})
        found = client().time_entries(OCT, NOV, ["7"])
    assert [e.id for e in found] == ["oct"]


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"duration": "about an hour"}, "field 'duration' is not a whole number ('about an hour')"),
        ({"duration": "1h30m"}, "field 'duration' is not a whole number ('1h30m')"),
        ({"duration": ""}, "field 'duration' is missing"),
        ({"duration": None}, "field 'duration' is missing"),
        ({"start": None}, "field 'start' is missing"),
        ({"id": None}, "field 'id' is missing"),
        ({"duration": "-3600000"}, "a finished entry (it has an end) with a negative duration"),
        ({"end": "1"}, "its end is before its start"),
    ],
)
def test_a_garbled_entry_comes_back_named_with_its_problem_and_location(change, needle):
    """One bad entry must not fail the request: it fails only the client it belongs to."""
    raw = entry("e1")
    raw.update(change)
    with responses.RequestsMock() as rsps:
        serve_entries(rsps, {ms(2026, 10, 1): [raw, entry("e2")]})
        found = client().time_entries(OCT, NOV, ["7"])
    bad = [e for e in found if e.problem]
    assert len(bad) == 1 and needle in bad[0].problem
    assert not bad[0].running and bad[0].duration_ms == 0
    assert bad[0].list_id == str(raw["task_location"]["list_id"])
    assert [e.id for e in found if not e.problem] == ["e2"]


@pytest.mark.parametrize("body", ["<html>maintenance</html>", json.dumps({"entries": []})])
def test_a_reply_without_a_data_list_is_garbled(body):
    with responses.RequestsMock() as rsps:
        rsps.get(ENTRIES_URL, body=body)
        with pytest.raises(errors.GarbledResponse):
            client().time_entries(OCT, NOV, ["7"])


def test_an_empty_assignee_list_is_refused_rather_than_fetching_only_the_token_owner():
    with pytest.raises(ValueError, match="every member"):
        client().time_entries(OCT, NOV, [])


def test_a_rejected_token_is_auth_expired_with_clickups_error_code():
    with responses.RequestsMock() as rsps:
        rsps.get(f"{BASE}/team", status=401, json={"err": "Token invalid", "ECODE": "OAUTH_025"})
        with pytest.raises(errors.AuthExpired) as caught:
            client().members()
    assert caught.value.code == "OAUTH_025" and caught.value.reason == "Token invalid"


def test_server_errors_on_get_are_retried(local_http_server):
    local_http_server.script(
        "GET",
        "/team",
        Scripted(503, {"err": "down"}),
        Scripted(502, "bad gateway"),
        Scripted(200, {"teams": [{"id": "1234", "members": [{"user": {"id": 1, "username": "A"}}]}]}),
    )
    members = client(local_http_server.url).members()
    assert [m.id for m in members] == ["1"]
    assert len(local_http_server.calls("GET", "/team")) == 3


def test_rate_limit_without_retry_after_backs_off_and_succeeds(local_http_server):
    local_http_server.script(
        "GET",
        "/team/1234/time_entries",
        Scripted(429, {"err": "Rate limit reached", "ECODE": "APP_002"}, {"X-RateLimit-Reset": "1790000000"}),
        Scripted(200, {"data": []}),
    )
    assert client(local_http_server.url).time_entries(OCT, datetime(2026, 10, 2, tzinfo=UTC), ["7"]) == []
    assert len(local_http_server.calls("GET", "/team/1234/time_entries")) == 2


def test_a_server_that_never_answers_is_a_transport_error(local_http_server):
    local_http_server.script("GET", "/team", Scripted(200, {"teams": []}, delay=0.5))
    with pytest.raises(errors.TransportError):
        client(local_http_server.url, timeout=0.1, max_retries=1).members()


def settings() -> Settings:
    return make_settings(clickup_base_url=BASE, http_timeout_seconds=5.0, http_max_retries=2)


def test_build_clickup_names_missing_fields_but_never_values():
    with pytest.raises(errors.ConfigError) as caught:
        build_clickup(settings(), {"api_token": TOKEN, "team_id": ""})
    assert "team_id" in str(caught.value) and "ClickUp/10000" in str(caught.value)
    assert TOKEN not in str(caught.value)
    assert mask(f"token={TOKEN}") == "token=***"


def test_build_clickup_wires_base_url_team_and_timeouts():
    built = build_clickup(settings(), {"api_token": TOKEN, "team_id": 1234})
    assert (built.base_url, built.team_id) == (BASE, "1234")
    assert built._session.timeout[1] == 5.0
    assert mask(TOKEN) == "***"
