"""Holds: an invoice that looks wrong is created but not queued for sending (DESIGN §1 step 4, §7
Holds). Pure rules and the hold marker's format; the job applies them, ``--release`` undoes them.

Held = ``EmailStatus NotSet`` plus ``HOLD_MARKER`` in the PrivateNote. It is released when its
EmailStatus becomes ``NeedToSend`` (``--release`` or a person in QBO); the send job sends every
NeedToSend invoice, so a held one is never sent until then.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from create_invoices.billing import InvoiceLine, hours
from integrations.identifiers import HOLD_MARKER

MEDIAN_OF = 3  # the median of the client's last 3 invoices made by this system
MAX_NOTE = 4000  # QBO PrivateNote limit


@dataclass(frozen=True)
class HoldRules:
    max_hours: int = 12  # a single run or time entry longer than this
    median_multiple: int = 3  # a total above this many times the median of the last invoices


def median(values: Sequence[Decimal]) -> Decimal:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def hold_reasons(
    lines: Sequence[InvoiceLine], earlier_totals: Sequence[Decimal], rules: HoldRules
) -> list[str]:
    """Why the invoice of ``lines`` must be held (empty: send it). ``earlier_totals``: the client's
    earlier invoices made by this system, most recent first (the median rule needs 3)."""
    reasons = []
    limit = rules.max_hours * 3600
    for number, line in enumerate(lines, start=1):
        if line.qty <= 0:
            reasons.append(f"line {number} has quantity {line.qty}")
        for row in line.trace:
            if row.seconds > limit:
                what = "run" if row.source == "robocorp" else "time entry"
                reasons.append(
                    f"{what} {row.source_id} ({row.name}) is {hours(row.seconds)} h, over the {rules.max_hours} h maximum"
                )
    if len(earlier_totals) >= MEDIAN_OF:
        typical = median(list(earlier_totals[:MEDIAN_OF]))
        total = sum((line.amount for line in lines), Decimal(0))
        if total > typical * rules.median_multiple:
            reasons.append(
                f"total {total:.2f} is over {rules.median_multiple}x the median {typical:.2f} "
                f"of the client's last {MEDIAN_OF} invoices"
            )
    return reasons


def held_note(note: str, reasons: Sequence[str]) -> str:
    """``note`` with the hold marker and the reasons appended (within QBO's 4,000 characters)."""
    text = f"{note} {HOLD_MARKER} held for review: {'; '.join(reasons)}"
    return text if len(text) <= MAX_NOTE else text[: MAX_NOTE - 1] + "…"


def released_note(note: str, when: str) -> str:
    """``note`` without the hold marker and reasons, saying when it was released."""
    kept = (note or "").split(f" {HOLD_MARKER}", 1)[0].rstrip()
    return f"{kept} (hold released {when})"[:MAX_NOTE]
