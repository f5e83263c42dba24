"""Which client each billable ClickUp time entry belongs to.

Rules (DESIGN §1 step 2), in order for each entry whose ``start`` is in the period (UTC):

1. duplicate ids (overlapping request windows) are counted once: the first occurrence wins;
2. non-billable entries are only counted (running or not: they are never billed anyway);
3. billable running timers (negative duration) are listed in ``running`` and never billed: the
   entry's start is in this period, so time logged after the invoice is out would be lost
   silently if nobody stopped the timer;
4. the registry's ``clickup_location_ids``: the entry's list id, then folder id, then space id
   (most specific wins). An id claimed by two clients is a registry error: the entry is NOT
   guessed, it goes to ``unattributed`` and the id is reported in ``conflicts``;
5. the location NAMES, list then folder then space: a name whose leading digits are exactly a
   client number ("10002 - Acme", "10002 Acme", "10002"; "100021 X" is not client 10002);
6. anything else is ``unattributed`` billable time: listed, never dropped.

A malformed entry (``TimeEntry.problem``) that may be billable is attributed the same way, but
into ``malformed``: it fails the client it belongs to (with the entry named), or, when it belongs
to no client, it is listed as unattributed with its problem as the reason.

Pass the WHOLE registry as ``clients`` (inactive and excluded clients too), so time that belongs
to a client who is not being billed today is not reported as unattributed; pick the clients you
bill from ``by_client`` afterwards.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from create_invoices.period import Period
from integrations.identifiers import leading_client_number
from integrations.models import ClientRecord, TimeEntry, first_of_each_id


@dataclass(frozen=True)
class Attribution:
    """Billable time of the period per client, and everything that was not billed, with why."""

    by_client: dict[str, list[TimeEntry]]  # every client id of the registry, entries sorted by start
    unattributed: list[TimeEntry]  # billable, finished, no client (or a conflicting registry claim)
    running: list[TimeEntry]  # billable timers still running: never billed
    non_billable_count: int
    # location id -> client ids that all claim it in the registry (a registry error to fix)
    conflicts: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # unattributed entry id -> why it could not be attributed (only for conflicts)
    reasons: dict[str, str] = field(default_factory=dict)
    # client id -> malformed entries that belong to it: the client fails until they are fixed
    malformed: dict[str, list[TimeEntry]] = field(default_factory=dict)
    duplicate_count: int = 0  # entries seen more than once (same id), counted once
    outside_period_count: int = 0  # entries whose start is not in the period: ignored


def location_claims(clients: Sequence[ClientRecord]) -> dict[str, tuple[str, ...]]:
    """Registry location id -> the client ids that claim it (sorted, usually exactly one)."""
    claims: dict[str, set[str]] = {}
    for client in clients:
        for location in client.clickup_location_ids:
            claims.setdefault(location, set()).add(client.client_id)
    return {location: tuple(sorted(owners)) for location, owners in claims.items()}


def attribute_time(
    entries: Iterable[TimeEntry], clients: Sequence[ClientRecord], period: Period
) -> Attribution:
    """Split the period's time entries into per-client billable time and what is not billed."""
    claims = location_claims(clients)
    known = {client.client_id for client in clients}
    by_client: dict[str, list[TimeEntry]] = {client.client_id: [] for client in clients}
    unattributed: list[TimeEntry] = []
    running: list[TimeEntry] = []
    reasons: dict[str, str] = {}
    malformed: dict[str, list[TimeEntry]] = {}
    non_billable = outside = 0
    unique, duplicates = first_of_each_id(entries)
    for entry in unique:
        if entry.problem is not None and entry.billable is not False:
            owner, _ = _owner_by_location_id(entry, claims)
            owner = owner or _owner_by_name(entry, known)
            if owner is None:
                reasons[entry.id] = f"malformed entry: {entry.problem}"
                unattributed.append(entry)
            else:
                malformed.setdefault(owner, []).append(entry)
            continue
        if not period.contains(entry.start):
            outside += 1
            continue
        if not entry.billable:
            non_billable += 1
            continue
        if entry.running:
            running.append(entry)
            continue
        owner, conflict = _owner_by_location_id(entry, claims)
        if conflict is not None:
            location, owners = conflict
            reasons[entry.id] = f"ClickUp location {location} is claimed by clients {', '.join(owners)}"
            unattributed.append(entry)
            continue
        if owner is None:
            owner = _owner_by_name(entry, known)
        if owner is None:
            unattributed.append(entry)
        else:
            by_client[owner].append(entry)

    def order(entry: TimeEntry) -> tuple:
        return (entry.start, entry.id)

    # every registry conflict is reported, also those no entry of this period ran into
    conflicts = {location: owners for location, owners in claims.items() if len(owners) > 1}
    return Attribution(
        by_client={client_id: sorted(found, key=order) for client_id, found in by_client.items()},
        unattributed=sorted(unattributed, key=order),
        running=sorted(running, key=order),
        non_billable_count=non_billable,
        conflicts=dict(sorted(conflicts.items())),
        reasons=reasons,
        malformed=malformed,
        duplicate_count=duplicates,
        outside_period_count=outside,
    )


def _owner_by_location_id(
    entry: TimeEntry, claims: dict[str, tuple[str, ...]]
) -> tuple[str | None, tuple[str, tuple[str, ...]] | None]:
    """(client id, None) on a unique claim; (None, (location, owners)) on a conflict; else (None, None)."""
    for location in (entry.list_id, entry.folder_id, entry.space_id):
        if not location:
            continue
        owners = claims.get(location)
        if not owners:
            continue
        if len(owners) == 1:
            return owners[0], None
        return None, (location, owners)
    return None, None


def _owner_by_name(entry: TimeEntry, known: set[str]) -> str | None:
    for name in (entry.list_name, entry.folder_name, entry.space_name):
        number = leading_client_number(name)
        if number is not None and number in known:
            return number
    return None
