"""Robocorp client: paging through process runs, parsing, workspace keys and failures."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
import responses
from responses import matchers

from integrations import errors
from integrations.config import Settings
from integrations.http import build_session
from integrations.logging import mask
from integrations.robocorp import MissingApiKey, RobocorpClient, build_robocorp
from tests.conftest import Scripted
from tests.settings import make_settings

BASE = "https://cloud.robocorp.test/api/v1"
KEY = "wskey-SECRET-abcdef-123456"
RUNS = f"{BASE}/workspaces/ws-1/process-runs"


def client(base: str = BASE, **kw) -> RobocorpClient:
    return RobocorpClient(build_session("robocorp", backoff_factor=0.01), base, {"ws-1": KEY}, **kw)


def run(run_id: str, **kw) -> dict:
    raw = {
        "id": run_id,
        "state": "completed",
        "created_at": "2026-10-03T07:59:58Z",
        "started_at": "2026-10-03T08:00:01Z",
        "ended_at": "2026-10-03T09:12:31Z",
        "process": {"id": "proc-1", "name": "Invoice robot"},
        "started_by": {"type": "schedule", "details": None},
        "duration": 4350.0,
    }
    raw.update(kw)
    return raw


def page(runs: list[dict], next_url: str | None) -> dict:
    return {"next": next_url, "has_more": next_url is not None, "data": runs}


def test_all_pages_are_read_by_following_next_while_has_more():
    second, third = f"{RUNS}?cursor=p2&limit=2", f"{RUNS}?cursor=p3&limit=2"
    with responses.RequestsMock() as rsps:
        rsps.get(
            RUNS,
            match=[matchers.query_param_matcher({"limit": "2"})],
            json=page([run("r1"), run("r2")], second),
        )
        rsps.get(
            RUNS,
            match=[matchers.query_param_matcher({"cursor": "p2", "limit": "2"})],
            json=page([run("r3")], third),
        )
        rsps.get(
            RUNS,
            match=[matchers.query_param_matcher({"cursor": "p3", "limit": "2"})],
            json=page([run("r4")], None),
        )
        runs = list(client().process_runs("ws-1", limit=2))
        urls = [c.request.url for c in rsps.calls]
        auth = {c.request.headers["Authorization"] for c in rsps.calls}
    assert [r.id for r in runs] == ["r1", "r2", "r3", "r4"]
    assert urls == [f"{RUNS}?limit=2", second, third]
    assert auth == {f"RC-WSKEY {KEY}"}


def test_a_run_is_parsed_into_utc_times_and_decimal_seconds():
    finished = run("r1", started_at="2026-10-03T10:00:01+02:00", duration=4350.25)
    running = run("r2", state="in_progress", ended_at=None, duration=None)
    with responses.RequestsMock() as rsps:
        rsps.get(RUNS, json=page([finished, running], None))
        first, second = client().process_runs("ws-1")
    assert first.started_at == datetime(2026, 10, 3, 8, 0, 1, tzinfo=UTC)
    assert first.ended_at == datetime(2026, 10, 3, 9, 12, 31, tzinfo=UTC)
    assert first.duration_seconds == Decimal("4350.25")
    assert (first.workspace_id, first.process_id, first.process_name, first.state) == (
        "ws-1",
        "proc-1",
        "Invoice robot",
        "completed",
    )
    assert second.ended_at is None and second.duration_seconds is None and second.state == "in_progress"


def test_a_workspace_without_a_key_fails_when_asked_naming_the_workspace_only():
    with pytest.raises(MissingApiKey) as caught:
        client().process_runs("ws-2")
    assert isinstance(caught.value, errors.ServiceError)
    assert "ws-2" in str(caught.value) and KEY not in str(caught.value)


def test_a_next_url_seen_before_is_reported_as_a_loop():
    second = f"{RUNS}?cursor=p2"
    with responses.RequestsMock() as rsps:
        rsps.get(RUNS, match=[matchers.query_param_matcher({"limit": "100"})], json=page([run("r1")], second))
        rsps.get(RUNS, match=[matchers.query_param_matcher({"cursor": "p2"})], json=page([run("r2")], second))
        with pytest.raises(errors.GarbledResponse, match="loop"):
            list(client().process_runs("ws-1"))
        assert len(rsps.calls) == 2


def test_paging_stops_at_the_page_cap():
    counter = iter(range(1, 100))

    def reply(request):
        return 200, {}, f'{{"next": "{RUNS}?cursor={next(counter)}", "has_more": true, "data": []}}'

    with responses.RequestsMock() as rsps:
        rsps.add_callback(responses.GET, RUNS, callback=reply)
        with pytest.raises(errors.GarbledResponse, match="more than 3 pages"):
            list(client(max_pages=3).process_runs("ws-1"))
        assert len(rsps.calls) == 3


def test_has_more_without_next_is_garbled():
    with responses.RequestsMock() as rsps:
        rsps.get(RUNS, json={"next": None, "has_more": True, "data": []})
        with pytest.raises(errors.GarbledResponse, match="no 'next'"):
            list(client().process_runs("ws-1"))


def test_a_next_url_on_another_host_is_not_followed_with_the_key():
    with responses.RequestsMock() as rsps:
        rsps.get(RUNS, json=page([], "https://elsewhere.test/api/v1/workspaces/ws-1/process-runs?c=2"))
        with pytest.raises(errors.GarbledResponse, match="leaves"):
            list(client().process_runs("ws-1"))
        assert len(rsps.calls) == 1


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        (run("r7", started_at="yesterday"), "process run r7: started_at"),
        (run("r7", duration="long"), "process run r7: duration"),
        (run("r7", process=None), "process run r7 has no process.id"),
        ({"state": "completed"}, "process run #0 has no id"),
    ],
)
def test_a_garbled_run_is_reported_by_its_id(raw, needle):
    with responses.RequestsMock() as rsps:
        rsps.get(RUNS, json=page([raw], None))
        with pytest.raises(errors.GarbledResponse) as caught:
            list(client().process_runs("ws-1"))
    assert needle in caught.value.reason


def test_a_non_json_page_is_garbled():
    with responses.RequestsMock() as rsps:
        rsps.get(RUNS, body="<html>login</html>", content_type="text/html")
        with pytest.raises(errors.GarbledResponse, match="expected JSON"):
            list(client().process_runs("ws-1"))


def test_a_rejected_key_is_permission_denied_without_the_key_in_the_error():
    with responses.RequestsMock() as rsps:
        rsps.get(RUNS, status=403, json={"message": "Forbidden: missing permission", "code": "forbidden"})
        with pytest.raises(errors.PermissionDenied) as caught:
            list(client().process_runs("ws-1"))
    assert caught.value.reason == "Forbidden: missing permission" and KEY not in str(caught.value)


def test_server_errors_on_get_are_retried(local_http_server):
    path = "/api/v1/workspaces/ws-1/process-runs"
    local_http_server.script(
        "GET", path, Scripted(503, "unavailable"), Scripted(200, page([run("r1")], None))
    )
    runs = list(client(f"{local_http_server.url}/api/v1").process_runs("ws-1"))
    assert [r.id for r in runs] == ["r1"]
    assert len(local_http_server.calls("GET", path)) == 2


def settings() -> Settings:
    return make_settings(robocorp_base_url=BASE)


def test_build_robocorp_names_workspaces_with_bad_keys_but_never_keys():
    with pytest.raises(errors.ConfigError) as caught:
        build_robocorp(settings(), {"ws-1": KEY, "ws-2": "  ", "ws-3": 42})
    assert "ws-2, ws-3" in str(caught.value) and KEY not in str(caught.value)
    assert mask(KEY) == "***"


def test_build_robocorp_uses_the_configured_base_url_and_keys():
    built = build_robocorp(settings(), {"ws-1": KEY})
    with responses.RequestsMock() as rsps:
        rsps.get(RUNS, json=page([run("r1")], None))
        assert [r.id for r in built.process_runs("ws-1")] == ["r1"]
