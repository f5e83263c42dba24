"""Which QBO customer a registry client is billed to.

By the registry's ``customer_name`` (QBO's DisplayName; compared trimmed and case-insensitively,
as QBO does) when it is set, else by the one customer whose DisplayName starts with the client
number ("10002 - Acme CPA"; "100021 Other" is not client 10002). Inactive customers cannot be
invoiced (QBO answers 610/6250), so they are a distinct, explained failure. QBO renames a customer
it makes inactive to "<name> (deleted)"; that is recognised so the message says "inactive" rather
than "unknown".
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from integrations.identifiers import leading_client_number
from integrations.models import ClientRecord

_DELETED_SUFFIX = re.compile(r"\s*\(deleted\)\s*$", re.IGNORECASE)


class CustomerProblem(ValueError):
    """The client's QBO customer cannot be used; the message names the client and the name looked for."""

    def __init__(self, message: str, client_id: str, wanted: str, candidates: Sequence[dict] = ()):
        super().__init__(message)
        self.client_id = client_id
        self.wanted = wanted
        self.candidates = tuple(candidates)


class UnknownCustomer(CustomerProblem):
    """No QBO customer has that name."""


class InactiveCustomer(CustomerProblem):
    """The customer exists but is inactive in QBO."""


class AmbiguousCustomer(CustomerProblem):
    """Several active customers fit; the registry must name one (customer_name)."""


def _norm(text: object) -> str:
    return text.strip().casefold() if isinstance(text, str) else ""


def _active(customer: dict) -> bool:
    return customer.get("Active", True) not in (False, "false", "False")


def _describe(customers: Sequence[dict]) -> str:
    return ", ".join(f"{c.get('DisplayName')!r} (Id {c.get('Id')})" for c in customers)


def match_customer(client: ClientRecord, customers: Sequence[dict]) -> dict:
    """The active QBO customer to invoice for ``client``; raise a CustomerProblem otherwise."""
    if client.customer_name:
        wanted = client.customer_name.strip()
        key = _norm(wanted)
        found = [c for c in customers if _norm(c.get("DisplayName")) == key]
        if not found:  # an inactive customer renamed "<name> (deleted)" by QBO
            found = [
                c
                for c in customers
                if not _active(c) and _norm(_DELETED_SUFFIX.sub("", str(c.get("DisplayName") or ""))) == key
            ]
        looked_for = f"named {wanted!r}"
    else:
        wanted = client.client_id
        found = [c for c in customers if leading_client_number(c.get("DisplayName")) == client.client_id]
        looked_for = f"whose name starts with the client number {wanted}"

    active = [c for c in found if _active(c)]
    if len(active) == 1:
        return active[0]
    if len(active) > 1:
        hint = "" if client.customer_name else "; set customer_name in the registry"
        raise AmbiguousCustomer(
            f"client {client.client_id}: several active QBO customers {looked_for}: {_describe(active)}{hint}",
            client.client_id,
            wanted,
            active,
        )
    if found:
        raise InactiveCustomer(
            f"client {client.client_id}: the QBO customer {looked_for} is inactive: {_describe(found)}; "
            "make it active in QBO or mark the client inactive in the registry",
            client.client_id,
            wanted,
            found,
        )
    raise UnknownCustomer(
        f"client {client.client_id}: no QBO customer {looked_for}", client.client_id, wanted
    )
