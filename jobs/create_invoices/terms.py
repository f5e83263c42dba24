"""Due dates decided by us, not left to QBO.

QBO documents only that a missing DueDate is TxnDate plus the days of the invoice's SalesTermRef;
what it does with neither is not documented. So every invoice carries its terms and due date: the
customer's terms, else the company's default terms (Preferences.SalesFormsPrefs.DefaultTerms),
else due on the invoice date.
"""

from __future__ import annotations

import calendar
from collections.abc import Mapping
from datetime import date, timedelta
from typing import Any


def _ref(value: Any) -> str:
    return str(value.get("value") or "").strip() if isinstance(value, Mapping) else ""


def _due(txn_date: date, term: Mapping[str, Any]) -> date:
    """Standard terms add DueDays; date-driven terms fall due on DayOfMonthDue of a later month."""
    if term.get("DueDays") not in (None, ""):
        return txn_date + timedelta(days=int(term["DueDays"]))
    day = term.get("DayOfMonthDue")
    if day not in (None, ""):
        year, month = (txn_date.year + (txn_date.month == 12), txn_date.month % 12 + 1)
        return date(year, month, min(int(day), calendar.monthrange(year, month)[1]))
    return txn_date


def due_fields(
    txn_date: date, customer: Mapping[str, Any], default_term_id: str, terms: Mapping[str, Mapping[str, Any]]
) -> dict[str, Any]:
    """``SalesTermRef`` and ``DueDate`` for an invoice dated ``txn_date`` (``terms`` by Id)."""
    for term_id in (_ref(customer.get("SalesTermRef")), default_term_id):
        term = terms.get(term_id) if term_id else None
        if term is not None:
            return {"SalesTermRef": {"value": term_id}, "DueDate": _due(txn_date, term).isoformat()}
    return {"DueDate": txn_date.isoformat()}
