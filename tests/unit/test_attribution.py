"""Attribution of ClickUp time to clients: location ids, then names; nothing billable is lost."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from create_invoices.attribution import attribute_time
from create_invoices.period import Period
from integrations.models import ClientRecord, TimeEntry

OCTOBER = Period(2026, 10)
HOUR_MS = 3_600_000

CLIENTS = [
    ClientRecord("10002", "10002 - Acme CPA", clickup_location_ids=("L-acme",)),
    ClientRecord("10003", "10003 - Beta", clickup_location_ids=("F-beta",)),
    ClientRecord("10004", "10004 - Gamma", clickup_location_ids=("S-gamma",)),
    ClientRecord("10005", "10005 - O'Brien & Søn Ltd"),  # no ids: matched by location names
]


def entry(
    entry_id: str,
    start: str = "2026-10-15T10:00:00",
    duration_ms: int = HOUR_MS,
    billable: bool = True,
    **location,
) -> TimeEntry:
    begin = datetime.fromisoformat(start).replace(tzinfo=UTC)
    return TimeEntry(
        id=entry_id,
        user_id="u1",
        user_name="Zoë",
        billable=billable,
        start=begin,
        end=None if duration_ms < 0 else begin,
        duration_ms=duration_ms,
        task_id="t1",
        task_name="Month-end close",
        **location,
    )


def ids(entries) -> list[str]:
    return [e.id for e in entries]


def test_list_id_wins_over_a_folder_id_claimed_by_another_client():
    result = attribute_time([entry("e1", list_id="L-acme", folder_id="F-beta")], CLIENTS, OCTOBER)
    assert ids(result.by_client["10002"]) == ["e1"]
    assert result.by_client["10003"] == []


def test_folder_id_wins_over_a_space_id_and_space_id_is_used_last():
    result = attribute_time(
        [
            entry("e1", list_id="L-other", folder_id="F-beta", space_id="S-gamma"),
            entry("e2", list_id="L-other", folder_id="F-other", space_id="S-gamma"),
        ],
        CLIENTS,
        OCTOBER,
    )
    assert ids(result.by_client["10003"]) == ["e1"]
    assert ids(result.by_client["10004"]) == ["e2"]


@pytest.mark.parametrize(
    "name", ["10005 - O'Brien & Søn Ltd", "10005 O'Brien", "10005-x", "10005", " 10005 Søn"]
)
def test_a_location_name_starting_with_the_client_number_attributes_the_entry(name):
    result = attribute_time([entry("e1", list_name=name)], CLIENTS, OCTOBER)
    assert ids(result.by_client["10005"]) == ["e1"]
    assert result.unattributed == []


@pytest.mark.parametrize("name", ["100051 Other", "110005 - X", "Acme 10005", "", "1000 - five"])
def test_a_longer_number_or_a_number_later_in_the_name_does_not_match(name):
    result = attribute_time(
        [entry("e1", list_name=name, folder_name=name, space_name=name)], CLIENTS, OCTOBER
    )
    assert ids(result.unattributed) == ["e1"]
    assert all(found == [] for found in result.by_client.values())


def test_the_most_specific_matching_name_wins():
    result = attribute_time(
        [
            entry(
                "e1", list_name="10003 - Beta work", folder_name="10005 - O'Brien", space_name="10002 Acme"
            ),
            entry("e2", list_name="Sprint 4", folder_name="10005 - O'Brien", space_name="10002 Acme"),
            entry("e3", list_name="Sprint 4", folder_name="Backlog", space_name="10002 Acme"),
            # "2026 Roadmap" starts with a number that is no client: the folder name decides
            entry("e4", list_name="2026 Roadmap", folder_name="10005 - O'Brien"),
        ],
        CLIENTS,
        OCTOBER,
    )
    assert ids(result.by_client["10003"]) == ["e1"]
    assert ids(result.by_client["10005"]) == ["e2", "e4"]
    assert ids(result.by_client["10002"]) == ["e3"]


def test_registry_ids_win_over_names():
    result = attribute_time([entry("e1", space_id="S-gamma", list_name="10005 - O'Brien")], CLIENTS, OCTOBER)
    assert ids(result.by_client["10004"]) == ["e1"]


def test_an_id_claimed_by_two_clients_is_not_guessed_but_listed_and_reported():
    clients = [*CLIENTS, ClientRecord("10006", clickup_location_ids=("L-acme", "L-six"))]
    result = attribute_time(
        [entry("e1", list_id="L-acme", list_name="10002 - Acme"), entry("e2", list_id="L-six")],
        clients,
        OCTOBER,
    )
    assert ids(result.unattributed) == ["e1"]
    assert result.conflicts == {"L-acme": ("10002", "10006")}
    assert "10002" in result.reasons["e1"] and "10006" in result.reasons["e1"]
    assert result.by_client["10002"] == []
    assert ids(result.by_client["10006"]) == ["e2"]


def test_registry_conflicts_are_reported_even_without_time_on_them():
    clients = [
        ClientRecord("10002", clickup_location_ids=("X",)),
        ClientRecord("10009", clickup_location_ids=("X",)),
    ]
    assert attribute_time([], clients, OCTOBER).conflicts == {"X": ("10002", "10009")}


def test_unattributed_billable_time_is_listed_never_dropped():
    entries = [
        entry("a", list_id="L-acme"),
        entry("b", list_name="Internal"),
        entry("c"),
        entry("d", billable=False),
        entry("e", duration_ms=-1_700_000_000_000),
    ]
    result = attribute_time(entries, CLIENTS, OCTOBER)
    assert ids(result.unattributed) == ["b", "c"]
    accounted = (
        sum(len(v) for v in result.by_client.values()) + len(result.unattributed) + len(result.running)
    )
    assert accounted + result.non_billable_count == len(entries)


def test_running_timers_are_listed_and_never_billed():
    result = attribute_time(
        [entry("run", duration_ms=-1_793_000_000_000, list_id="L-acme"), entry("done", list_id="L-acme")],
        CLIENTS,
        OCTOBER,
    )
    assert ids(result.running) == ["run"]
    assert ids(result.by_client["10002"]) == ["done"]


def test_non_billable_entries_are_only_counted():
    result = attribute_time(
        [
            entry("n1", billable=False, list_id="L-acme"),
            entry("n2", billable=False, duration_ms=-5),  # a non-billable running timer
            entry("b1", list_id="L-acme"),
        ],
        CLIENTS,
        OCTOBER,
    )
    assert result.non_billable_count == 2
    assert ids(result.by_client["10002"]) == ["b1"]
    assert result.running == [] and result.unattributed == []


def test_duplicate_ids_are_counted_once():
    twice = entry("e1", list_id="L-acme")
    result = attribute_time([twice, twice, entry("e1", list_id="L-acme")], CLIENTS, OCTOBER)
    assert ids(result.by_client["10002"]) == ["e1"]
    assert result.duplicate_count == 2


def test_only_entries_starting_in_the_period_utc_count():
    result = attribute_time(
        [
            entry("last-second", start="2026-10-31T23:59:59", list_id="L-acme"),
            entry("spans-midnight", start="2026-10-31T23:00:00", duration_ms=2 * HOUR_MS, list_id="L-acme"),
            entry("first-second", start="2026-10-01T00:00:00", list_id="L-acme"),
            entry("november", start="2026-11-01T00:00:00", list_id="L-acme"),
            entry("september", start="2026-09-30T23:59:59", list_id="L-acme"),
        ],
        CLIENTS,
        OCTOBER,
    )
    assert ids(result.by_client["10002"]) == ["first-second", "spans-midnight", "last-second"]
    assert (
        result.by_client["10002"][1].duration_ms == 2 * HOUR_MS
    )  # a span is billed whole to its start month
    assert result.outside_period_count == 2


def test_every_registry_client_has_a_list_sorted_by_start():
    result = attribute_time(
        [entry("late", start="2026-10-20T00:00:00", list_id="L-acme"), entry("early", list_id="L-acme")],
        CLIENTS,
        OCTOBER,
    )
    assert set(result.by_client) == {"10002", "10003", "10004", "10005"}
    assert ids(result.by_client["10002"]) == ["early", "late"]


def test_naive_start_times_are_refused():
    bad = TimeEntry("e1", "u", "U", True, datetime(2026, 10, 5), None, HOUR_MS)
    with pytest.raises(ValueError, match="timezone-aware"):
        attribute_time([bad], CLIENTS, OCTOBER)


def test_a_malformed_entry_fails_only_its_own_client_or_is_listed_with_its_problem():
    from dataclasses import replace

    bad_acme = replace(entry("bad-1", list_id="L-acme", duration_ms=0), problem="field 'duration' is missing")
    bad_nobody = replace(
        entry("bad-2", list_id="L-unknown", duration_ms=0), problem="field 'start' is missing"
    )
    bad_unbillable = replace(entry("bad-3", list_id="L-acme", billable=False), problem="x")
    result = attribute_time(
        [bad_acme, bad_nobody, bad_unbillable, entry("ok", folder_id="F-beta")], CLIENTS, OCTOBER
    )

    assert ids(result.malformed["10002"]) == ["bad-1"] and result.by_client["10002"] == []
    assert ids(result.by_client["10003"]) == ["ok"] and "10003" not in result.malformed
    assert ids(result.unattributed) == ["bad-2"]
    assert result.reasons["bad-2"] == "malformed entry: field 'start' is missing"
    assert result.non_billable_count == 1


def test_a_finished_entry_with_a_negative_duration_is_not_a_running_timer():
    finished = TimeEntry(
        "e1", "u1", "Zoë", True, datetime(2026, 10, 2, tzinfo=UTC), datetime(2026, 10, 2, 1, tzinfo=UTC), -5
    )
    assert not finished.running
