"""Plain data shared by the clients and the jobs. No I/O here: pure code may import it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol, TypeVar

from integrations.identifiers import is_client_number


@dataclass(frozen=True)
class ClientRecord:
    """One item of the client registry (table Robocorp_Client_Org_Workspace_IDs)."""

    client_id: str
    customer_name: str | None = None  # QBO DisplayName; None: found by the client-number prefix
    robocorp_organization_id: str | None = None
    robocorp_workspace_ids: tuple[str, ...] = ()
    clickup_location_ids: tuple[str, ...] = ()
    robot_hour_rate: Decimal | None = None
    service_hour_rate: Decimal | None = None
    monthly_fee: Decimal | None = None
    active: bool = True

    @classmethod
    def from_item(cls, item: Mapping[str, Any]) -> ClientRecord:
        """Validate a raw registry item; raise ValueError with every problem of this item."""
        problems: list[str] = []
        client_id = str(item.get("client_id", "")).strip()
        if not is_client_number(client_id):
            problems.append(f"client_id must be a client number like 10002 (got {item.get('client_id')!r})")
        name = item.get("customer_name")
        if name is not None and (not isinstance(name, str) or not name.strip()):
            problems.append("customer_name must be a non-empty string when present")
        workspaces = _string_list(item, "robocorp_workspace_ids", problems)
        locations = _string_list(item, "clickup_location_ids", problems)
        rates = {
            key: _money(item, key, problems)
            for key in ("robot_hour_rate", "service_hour_rate", "monthly_fee")
        }
        active = item.get("active", True)
        if isinstance(active, str) and active.lower() in ("true", "false"):
            active = active.lower() == "true"
        if not isinstance(active, bool):
            problems.append(f"active must be true or false (got {active!r})")
            active = True
        org = item.get("robocorp_organization_id")
        if problems:
            raise ValueError("; ".join(problems))
        return cls(
            client_id=client_id,
            customer_name=name.strip() if isinstance(name, str) else None,
            robocorp_organization_id=str(org) if org not in (None, "") else None,
            robocorp_workspace_ids=workspaces,
            clickup_location_ids=locations,
            active=active,
            **rates,
        )


def _string_list(item: Mapping[str, Any], key: str, problems: list[str]) -> tuple[str, ...]:
    value = item.get(key)
    if value is None:
        return ()
    if isinstance(value, str | bytes) or not hasattr(value, "__iter__"):
        problems.append(f"{key} must be a list of strings (got {type(value).__name__})")
        return ()
    out = []
    for entry in value:
        if not isinstance(entry, str) or not entry.strip():
            problems.append(f"{key} must hold non-empty strings (got {entry!r})")
            continue
        out.append(entry.strip())
    return tuple(dict.fromkeys(out))


def _money(item: Mapping[str, Any], key: str, problems: list[str]) -> Decimal | None:
    value = item.get(key)
    if value is None or value == "":
        return None
    if isinstance(value, float):
        value = repr(value)  # DynamoDB gives Decimal; a float would only come from hand-made data
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        problems.append(f"{key} must be a number (got {value!r})")
        return None
    if not amount.is_finite() or amount < 0 or amount != amount.quantize(Decimal("0.01")):
        problems.append(f"{key} must be a non-negative amount with at most 2 decimals (got {value!r})")
        return None
    return amount


@dataclass(frozen=True)
class InvalidRecord:
    """A registry item that failed validation: reported by its key, never silently dropped."""

    key: str
    reason: str


@dataclass(frozen=True)
class ProcessRun:
    """One Robocorp Control Room process run (ProcessRunResource)."""

    id: str
    workspace_id: str
    process_id: str
    process_name: str
    state: str  # new | in_progress | completed | unresolved | stopping
    started_at: datetime | None
    ended_at: datetime | None
    duration_seconds: Decimal | None


@dataclass(frozen=True)
class Member:
    """A member of the ClickUp workspace (team)."""

    id: str
    username: str
    email: str | None = None


@dataclass(frozen=True)
class TimeEntry:
    """One ClickUp time entry, with the location ids and names it was logged under."""

    id: str
    user_id: str
    user_name: str
    billable: bool
    start: datetime
    end: datetime | None
    duration_ms: int  # negative: a timer still running
    task_id: str | None = None
    task_name: str | None = None
    description: str = ""
    space_id: str | None = None
    folder_id: str | None = None
    list_id: str | None = None
    space_name: str | None = None
    folder_name: str | None = None
    list_name: str | None = None
    # what is wrong with the entry as ClickUp sent it (a duration that is not a number, a finished
    # entry with a negative duration): it cannot be billed, and fails only the client it belongs to
    problem: str | None = None

    @property
    def running(self) -> bool:
        """A timer still running: ClickUp reports a negative duration and no end."""
        return self.problem is None and self.duration_ms < 0 and self.end is None


class _HasId(Protocol):
    @property
    def id(self) -> str: ...


Record = TypeVar("Record", bound=_HasId)


def first_of_each_id(records: Iterable[Record]) -> tuple[list[Record], int]:
    """The records in order with repeated ids dropped (the first occurrence wins), and how many
    were dropped. Overlapping request windows and retried pages can return one record twice;
    it must be billed once."""
    seen: set[str] = set()
    unique: list[Record] = []
    dropped = 0
    for record in records:
        if record.id in seen:
            dropped += 1
            continue
        seen.add(record.id)
        unique.append(record)
    return unique, dropped


@dataclass(frozen=True)
class Attachment:
    """A file attached to a mail."""

    name: str
    content_type: str
    content: bytes = field(repr=False)
