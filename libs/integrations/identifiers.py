"""The two identifiers every part of the product agrees on: the client number and the invoice marker.

Pure (no I/O), so billing code, both jobs, the sandbox and the tests share one definition:

* a **client number** is 3 to 10 ASCII digits ("10002"). A name *starts with* a client number when
  its leading digits, after optional spaces, are exactly that number: "10002 - Acme", "10002_x" and
  "10002" start with 10002; "100021 Other" does not; other scripts' digits ("١٠٠٠٢") never count;
* the **invoice marker** ``invoice-processor:<client>:<YYYY-MM>`` is written into an invoice's
  PrivateNote by the create job and found again, as a whitespace-separated word, by every later
  run (QBO prepends "Voided" to the note of a voided invoice, so the word may not come first).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

CLIENT_NUMBER = r"[0-9]{3,10}"
_EXACT = re.compile(rf"{CLIENT_NUMBER}")
_LEADING = re.compile(rf"\s*({CLIENT_NUMBER})(?![0-9])")

MARKER_PREFIX = "invoice-processor"
_MARKER = re.compile(rf"{MARKER_PREFIX}:({CLIENT_NUMBER}):([0-9]{{4}}-(?:0[1-9]|1[0-2]))")


def is_client_number(value: object) -> bool:
    """Whether ``value`` is exactly a client number ("10002"; not " 10002", "10002x" or "12")."""
    return isinstance(value, str) and _EXACT.fullmatch(value) is not None


def leading_client_number(name: object) -> str | None:
    """The client number a name starts with ("10002 - Acme CPA" -> "10002"), or None."""
    if not isinstance(name, str):
        return None
    match = _LEADING.match(name)
    return match.group(1) if match else None


@dataclass(frozen=True)
class InvoiceMarker:
    """Which client and month an invoice of this system bills."""

    client_id: str
    period: str  # YYYY-MM

    def __str__(self) -> str:
        return f"{MARKER_PREFIX}:{self.client_id}:{self.period}"


def invoice_marker(client_id: str, period: str) -> str:
    """``invoice-processor:10002:2026-10`` for client 10002 and October 2026."""
    marker = InvoiceMarker(client_id, period)
    if find_marker(str(marker)) != marker:
        raise ValueError(f"cannot build an invoice marker from client {client_id!r} and period {period!r}")
    return str(marker)


def find_marker(private_note: object) -> InvoiceMarker | None:
    """The marker a PrivateNote carries as a whole word, or None (first one wins)."""
    if not isinstance(private_note, str):
        return None
    for word in private_note.split():
        match = _MARKER.fullmatch(word)
        if match:
            return InvoiceMarker(match.group(1), match.group(2))
    return None


def has_marker(private_note: object, client_id: str, period: str) -> bool:
    """Whether a PrivateNote carries the marker of exactly this client and month."""
    return find_marker(private_note) == InvoiceMarker(client_id, period)
