"""Typed views of the QBO entities the jobs read: Customer, Item, Invoice.

Each view is built at the client boundary from the JSON QBO sent and keeps it whole (it is a
read-only ``Mapping`` of the original fields, so nothing is lost and a sparse update or a log can
still see every field), with typed accessors for what the product uses. No I/O here.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from integrations.identifiers import InvoiceMarker, find_marker

_FALSE = (False, "false", "False")


class Entity(Mapping[str, Any]):
    """A QBO entity as read. ``view["Field"]`` is the raw value; properties are typed."""

    __slots__ = ("_raw",)

    def __init__(self, raw: Mapping[str, Any]):
        self._raw = dict(raw)

    def __getitem__(self, key: str) -> Any:
        return self._raw[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._raw)

    def __len__(self) -> int:
        return len(self._raw)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(Id={self.id!r})"

    @property
    def id(self) -> str:
        """QBO ids are strings (they are numeric today; nothing promises it)."""
        value = self._raw.get("Id")
        return "" if value is None else str(value)

    @property
    def active(self) -> bool:
        return self._raw.get("Active", True) not in _FALSE

    @property
    def raw(self) -> dict[str, Any]:
        """A copy of the fields as QBO sent them."""
        return dict(self._raw)


def _address(value: Any) -> str:
    """``{"Address": "a@b"}`` -> "a@b" (trimmed; "" when absent)."""
    address = value.get("Address") if isinstance(value, Mapping) else None
    return address.strip() if isinstance(address, str) else ""


def _decimal(value: Any) -> Decimal | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


class Customer(Entity):
    @property
    def display_name(self) -> str:
        return str(self._raw.get("DisplayName") or "")

    @property
    def email(self) -> str:
        """The primary email address ("" when the customer has none)."""
        return _address(self._raw.get("PrimaryEmailAddr"))

    @property
    def terms_id(self) -> str:
        ref = self._raw.get("SalesTermRef")
        return str(ref.get("value") or "") if isinstance(ref, Mapping) else ""


class Item(Entity):
    @property
    def name(self) -> str:
        return str(self._raw.get("Name") or "")

    @property
    def full_name(self) -> str:
        return str(self._raw.get("FullyQualifiedName") or "")

    @property
    def unit_price(self) -> Decimal | None:
        """UnitPrice as an exact Decimal; None when absent or not a number."""
        return _decimal(self._raw.get("UnitPrice"))


class Invoice(Entity):
    @property
    def doc_number(self) -> str:
        return str(self._raw.get("DocNumber") or "")

    @property
    def number(self) -> str:
        """What a person calls the invoice: its doc number, else its id."""
        return self.doc_number or self.id

    @property
    def sync_token(self) -> str:
        return str(self._raw.get("SyncToken") or "0")

    @property
    def customer_id(self) -> str:
        ref = self._raw.get("CustomerRef")
        return str(ref.get("value") or "") if isinstance(ref, Mapping) else ""

    @property
    def customer_name(self) -> str:
        """The customer's name as the invoice refers to it (else its id)."""
        ref = self._raw.get("CustomerRef")
        if not isinstance(ref, Mapping):
            return ""
        return str(ref.get("name") or ref.get("value") or "")

    @property
    def total(self) -> Decimal:
        """TotalAmt to the cent (0.00 when absent)."""
        return (_decimal(self._raw.get("TotalAmt")) or Decimal(0)).quantize(Decimal("0.01"))

    @property
    def txn_date(self) -> str:
        return str(self._raw.get("TxnDate") or "")

    @property
    def due_date(self) -> str:
        return str(self._raw.get("DueDate") or "")

    @property
    def email_status(self) -> str:
        return str(self._raw.get("EmailStatus") or "")

    @property
    def bill_email(self) -> str:
        return _address(self._raw.get("BillEmail"))

    @property
    def cc(self) -> list[str]:
        return [a for a in [_address(self._raw.get("BillEmailCc"))] if a]

    @property
    def bcc(self) -> list[str]:
        return [a for a in [_address(self._raw.get("BillEmailBcc"))] if a]

    @property
    def private_note(self) -> str:
        return str(self._raw.get("PrivateNote") or "")

    @property
    def marker(self) -> InvoiceMarker | None:
        """Which client and month this system made the invoice for (None: not ours)."""
        return find_marker(self.private_note)

    @property
    def delivered(self) -> bool:
        """QBO's own record that the invoice was emailed (EmailSent, or a DeliveryInfo)."""
        return self.email_status == "EmailSent" or bool(self._raw.get("DeliveryInfo"))
