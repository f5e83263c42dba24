"""QuickBooks Online stand-in: the Intuit OAuth token endpoint and the Accounting API subset we use.

Enforced as QBO does (see ../shared/reference/qbo-api.md): refresh tokens rotate (here on every
refresh) and the old one answers ``invalid_grant``; expired or unknown access tokens get 401 with the
lowercase ``fault`` body; invoices need an active customer, ``Amount == Qty x UnitPrice`` (6070) and
a BillEmail for ``NeedToSend``; updates need the current SyncToken (5010); a repeated ``requestid``
gets the original response back. State lives in ``qbo/*.json`` under the state dir.
"""

from __future__ import annotations

import copy
import json
import re
import time
import uuid
from datetime import date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from flask import Flask, Response, request

from sandbox import mail, pdf, qbo_oauth, qbo_query
from sandbox.store import JsonStore, dumps

COMPANY_TZ = ZoneInfo("America/Los_Angeles")
ENTITY_DOCS = {
    "Customer": "qbo/customers",
    "Item": "qbo/items",
    "Term": "qbo/terms",
    "Invoice": "qbo/invoices",
}
NAME_LISTS = {"Customer", "Item", "Term"}
EMAIL_STATUSES = ("NotSet", "NeedToSend", "EmailSent")
READ_ONLY = {
    "Id",
    "SyncToken",
    "MetaData",
    "TotalAmt",
    "Balance",
    "HomeBalance",
    "domain",
    "sparse",
    "DeliveryInfo",
}
# Fields the sandbox lets you filter on (documented as filterable); others get error 4001 when strict.
QUERYABLE = {
    "Invoice": {"id", "docnumber", "txndate", "duedate", "customerref", "totalamt", "balance"},
    "Customer": {
        "id",
        "displayname",
        "companyname",
        "givenname",
        "familyname",
        "fullyqualifiedname",
        "active",
    },
    "Item": {"id", "name", "active", "type", "sku", "fullyqualifiedname"},
    "Term": {"id", "name", "active"},
}
for _fields in QUERYABLE.values():
    _fields.update({"metadata.createtime", "metadata.lastupdatedtime"})
DEFAULT_OPTIONS = {
    "access_token_ttl_seconds": 3600,
    "requestid_replay": "replay",
    "strict_query_fields": True,
}
DEFAULT_OPTIONS.update(qbo_oauth.OPTIONS)  # the refresh-token lifetime (sandbox/qbo_oauth.py)


class QboFault(Exception):
    """A Fault answer: HTTP ``status`` with the JSON Fault envelope."""

    def __init__(
        self,
        code: str,
        message: str,
        detail: str,
        *,
        status: int = 400,
        kind: str = "ValidationFault",
        element: str = "",
    ) -> None:
        super().__init__(detail)
        self.status, self.code, self.message, self.detail, self.kind, self.element = (
            status,
            code,
            message,
            detail,
            kind,
            element,
        )

    def fault(self) -> dict[str, Any]:
        error = {"Message": self.message, "Detail": self.detail, "code": self.code, "element": self.element}
        return {"Error": [error], "type": self.kind}


REPLAYED_FAULT_STATUSES = frozenset({400, 404})  # ValidationFault (6070, 6000...), ObjectNotFound (610)


def company_now() -> datetime:
    return datetime.now(COMPANY_TZ).replace(microsecond=0)


def _stamp() -> str:
    return company_now().isoformat()


def _time() -> str:
    return datetime.now(COMPANY_TZ).isoformat(timespec="milliseconds")


def decimal(value: Any, what: str) -> Decimal:
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise QboFault("2000", "Invalid Number", f"{what} is not a number: {value!r}") from None
    if not number.is_finite():
        raise QboFault("2000", "Invalid Number", f"{what} is not a number: {value!r}")
    return number


def money(value: Any) -> str:
    return f"{Decimal(str(value)):,.2f}"


def _not_found(entity: str, object_id: Any) -> QboFault:
    return QboFault(
        "610",
        "Object Not Found",
        f"Object Not Found : Something you're trying to use has been made inactive. Check the fields with accounts, "
        f"customers, items, vendors or employees. ({entity} {object_id})",
    )


def _email_ok(address: Any) -> bool:
    return (
        isinstance(address, str)
        and len(address) <= 100
        and re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", address) is not None
    )


class QboStandIn:
    """The company file: customers, items, terms, invoices, preferences, OAuth state."""

    def __init__(self, store: JsonStore, mail_dir: Path) -> None:
        self.store = store
        self.mail_dir = mail_dir

    # --- seeding --------------------------------------------------------------------------------

    def seed(self, config: dict[str, Any]) -> None:
        """Write the company of a scenario (section ``qbo``)."""
        now = _stamp()
        company_info = {
            "CompanyName": "Sandbox Company",
            "LegalName": "Sandbox Company",
            "Country": "US",
            "Email": {"Address": "billing@example.com"},
            **config.get("company", {}),
        }
        company_info.setdefault("Id", "1")
        preferences = {
            "SalesFormsPrefs": {
                "CustomTxnNumbers": bool(config.get("preferences", {}).get("CustomTxnNumbers", False)),
                # the company's default terms (SalesFormsPrefs.DefaultTerms, a Term reference)
                **(
                    {"DefaultTerms": config["preferences"]["DefaultTerms"]}
                    if config.get("preferences", {}).get("DefaultTerms")
                    else {}
                ),
            },
            "CurrencyPrefs": {"HomeCurrency": {"value": "USD"}, "MultiCurrencyEnabled": False},
        }
        options = {**DEFAULT_OPTIONS, **config.get("options", {})}
        if "access_token_ttl_seconds" in config:
            options["access_token_ttl_seconds"] = config["access_token_ttl_seconds"]
        entities: dict[str, list[dict[str, Any]]] = {}
        for entity, key in (("Term", "terms"), ("Item", "items"), ("Customer", "customers")):
            rows = []
            for raw in config.get(key, []):
                row = {"domain": "QBO", "sparse": False, "Active": True, "SyncToken": "0", **raw}
                row["Id"] = str(row["Id"])
                row.setdefault("MetaData", {"CreateTime": now, "LastUpdatedTime": now})
                if entity in ("Customer", "Item"):
                    row.setdefault("FullyQualifiedName", row.get("DisplayName") or row.get("Name"))
                rows.append(row)
            entities[entity] = rows
        max_id = max(
            [int(r["Id"]) for rows in entities.values() for r in rows if str(r["Id"]).isdigit()] or [0]
        )
        company = {
            "realm_id": str(config["realm_id"]),
            "environment": config.get("environment", "production"),
            "CompanyInfo": company_info,
            "Preferences": preferences,
            "options": options,
            "next_id": max(max_id + 1, int(config.get("next_id", 0))),
            "next_doc_number": int(config.get("next_doc_number", 1001)),
        }
        for entity, rows in entities.items():
            self.store.put(ENTITY_DOCS[entity], rows)
        self.store.put("qbo/company", company)
        self.store.put("qbo/invoices", [])
        self.store.put("qbo/requestids", {})
        self.store.put(
            "qbo/oauth",
            {
                "client_id": config["client_id"],
                "client_secret": config["client_secret"],
                "redirect_uris": list(config.get("redirect_uris", qbo_oauth.DEFAULT_REDIRECT_URIS)),
                **qbo_oauth.connection(
                    config["refresh_token"],
                    time.time(),
                    options,
                    age_hours=config.get("refresh_token_age_hours", 24),
                    days_left=config.get("refresh_token_days_left"),
                    hard_days_left=config.get("refresh_token_hard_days_left"),
                ),
                "retired_refresh_tokens": [],
                "access_tokens": {},
                "refreshes": 0,
            },
        )
        for raw in config.get("invoices", []):
            self._seed_invoice(raw)

    def _seed_invoice(self, raw: dict[str, Any]) -> None:
        """Historic invoices of a scenario go through the same validation as API creates."""
        body = copy.deepcopy(raw)
        extra = {k: body.pop(k) for k in ("Id", "SyncToken", "DeliveryInfo", "MetaData") if k in body}
        with self.store.lock:
            invoice = self.create_invoice(body)
            invoices = self.store.get("qbo/invoices", [])
            if "Id" in extra:
                invoice["Id"] = str(extra["Id"])
                company = self.store.get("qbo/company")
                if invoice["Id"].isdigit():
                    company["next_id"] = max(company["next_id"], int(invoice["Id"]) + 1)
                self.store.put("qbo/company", company)
            invoice.update({k: v for k, v in extra.items() if k != "Id"})
            invoices[-1] = invoice
            self.store.put("qbo/invoices", invoices)

    # --- helpers --------------------------------------------------------------------------------

    @property
    def company(self) -> dict[str, Any]:
        return self.store.get("qbo/company")

    def option(self, name: str) -> Any:
        return self.company.get("options", {}).get(name, DEFAULT_OPTIONS.get(name))

    def set_options(self, **options: Any) -> None:
        unknown = set(options) - set(DEFAULT_OPTIONS)
        if unknown:
            raise ValueError(f"unknown QBO option(s): {', '.join(sorted(unknown))}")
        with self.store.edit("qbo/company") as company:
            company.setdefault("options", {}).update(options)

    def rows(self, entity: str) -> list[dict[str, Any]]:
        return self.store.get(ENTITY_DOCS[entity], [])

    def find(self, entity: str, object_id: Any) -> dict[str, Any] | None:
        wanted = str(object_id)
        return next((row for row in self.rows(entity) if row["Id"] == wanted), None)

    def _next_id(self) -> str:
        company = self.company
        value = company["next_id"]
        company["next_id"] = value + 1
        self.store.put("qbo/company", company)
        return str(value)

    def _next_doc_number(self) -> str:
        company = self.company
        value = company["next_doc_number"]
        company["next_doc_number"] = value + 1
        self.store.put("qbo/company", company)
        return str(value)

    # --- OAuth ----------------------------------------------------------------------------------

    def refresh(
        self, client_id: str | None, client_secret: str | None, form: dict[str, str], hard: bool
    ) -> tuple:
        """The token endpoint: (status, body) for the refresh and authorization-code grants."""
        with self.store.lock:
            oauth = self.store.get("qbo/oauth")
            if client_id != oauth["client_id"] or client_secret != oauth["client_secret"]:
                return 401, {"error": "invalid_client"}
            grant = form.get("grant_type")
            options = {name: self.option(name) for name in qbo_oauth.OPTIONS}
            ttl = int(self.option("access_token_ttl_seconds"))
            if grant == "refresh_token":
                status, body = qbo_oauth.refresh(
                    oauth, form.get("refresh_token"), time.time(), options, ttl, hard
                )
            elif grant == "authorization_code":
                status, body = qbo_oauth.exchange_code(oauth, form, time.time(), options, ttl, hard)
            else:
                return 400, {"error": "unsupported_grant_type"}
            self.store.put("qbo/oauth", oauth)  # persisted before the answer leaves
        return status, body

    def authorize(self, args: dict[str, str]) -> tuple[int, str]:
        """The authorize endpoint (approves at once); see ``qbo_oauth.authorize``."""
        with self.store.edit("qbo/oauth") as oauth:
            return qbo_oauth.authorize(oauth, args, self.company["realm_id"], time.time())

    def access_ok(self, token: str) -> bool:
        expires = self.store.get("qbo/oauth", {}).get("access_tokens", {}).get(token)
        return expires is not None and expires > time.time()

    def expire_access_tokens(self) -> None:
        with self.store.edit("qbo/oauth") as oauth:
            oauth["access_tokens"] = {}

    # --- queries --------------------------------------------------------------------------------

    def query(self, text: str) -> dict[str, Any]:
        try:
            parsed = qbo_query.parse(text)
        except qbo_query.QueryError as exc:
            raise QboFault(exc.code, "Error parsing query", exc.detail) from None
        entity = next(
            (
                name
                for name in (*ENTITY_DOCS, "Preferences", "CompanyInfo")
                if name.lower() == parsed.entity.lower()
            ),
            None,
        )
        if entity is None:
            raise QboFault(
                "4001",
                "Invalid query",
                f"QueryValidationError: the sandbox does not hold entity {parsed.entity!r}",
            )
        if entity in ("Preferences", "CompanyInfo"):
            rows = [{"Id": "1", **self.company[entity]}]
        else:
            rows = self.rows(entity)
            if self.option("strict_query_fields"):
                for condition in parsed.conditions:
                    if condition.field.lower() not in QUERYABLE[entity]:
                        raise QboFault(
                            "4001",
                            "Invalid query",
                            f"QueryValidationError: property '{condition.field}' is not queryable",
                        )
                    if condition.field.lower() == "id" and condition.op not in ("=", "IN"):
                        raise QboFault(
                            "4001", "Invalid query", "QueryValidationError: Id supports only = and IN"
                        )
        page, total = qbo_query.run(parsed, rows, default_active_only=entity in NAME_LISTS)
        if parsed.count:
            return {"totalCount": total}
        if not page:
            return {}
        return {entity: page, "startPosition": parsed.start_position, "maxResults": len(page)}

    # --- invoices -------------------------------------------------------------------------------

    def _active_customer(self, ref: Any) -> dict[str, Any]:
        value = ref.get("value") if isinstance(ref, dict) else None
        if not value:
            raise QboFault(
                "2020",
                "Required param missing, need to supply the required value for the API",
                "Required parameter CustomerRef is missing in the request",
                element="CustomerRef",
            )
        customer = self.find("Customer", value)
        if customer is None or customer.get("Active") is False:
            raise _not_found("Customer", value)
        return customer

    def _lines(self, lines: Any) -> tuple[list[dict[str, Any]], Decimal]:
        if not isinstance(lines, list) or not lines:
            raise QboFault(
                "2020",
                "Required param missing, need to supply the required value for the API",
                "Required parameter Line is missing in the request",
                element="Line",
            )
        out, total, number = [], Decimal("0"), 0
        for index, raw in enumerate(lines, start=1):
            if not isinstance(raw, dict):
                raise QboFault(
                    "2010", "Request has invalid or unsupported property", f"Line {index} is not an object"
                )
            kind = raw.get("DetailType")
            if kind == "SubTotalLineDetail":
                continue  # recomputed
            if kind == "DescriptionOnly":
                number += 1
                out.append({**raw, "Id": str(number), "LineNum": number, "Amount": raw.get("Amount", 0)})
                continue
            if kind != "SalesItemLineDetail":
                raise QboFault(
                    "6000",
                    "A business validation error has occurred",
                    f"Line {index}: the sandbox supports SalesItemLineDetail and DescriptionOnly lines (got {kind!r})",
                )
            detail = dict(raw.get("SalesItemLineDetail") or {})
            item_ref = detail.get("ItemRef") or {}
            item = self.find("Item", item_ref.get("value")) if item_ref.get("value") else None
            if item is None or item.get("Active") is False:
                raise _not_found("Item", item_ref.get("value"))
            if "Amount" not in raw:
                raise QboFault(
                    "2020",
                    "Required param missing, need to supply the required value for the API",
                    f"Line {index}: Amount is required",
                    element="Line.Amount",
                )
            amount = decimal(raw["Amount"], f"Line {index} Amount")
            if "Qty" in detail and "UnitPrice" in detail:
                qty, price = (
                    decimal(detail["Qty"], f"Line {index} Qty"),
                    decimal(detail["UnitPrice"], f"Line {index} UnitPrice"),
                )
                # python-quickbooks sends Qty 0 lines with an Amount and QBO keeps them (DESIGN §7).
                if qty != 0 and qty * price != amount:
                    raise QboFault(
                        "6070",
                        "Amount calculation incorrect in the request",
                        f"Amount calculation incorrect in the request : Amount is not equal to UnitPrice * Qty. "
                        f"Line {index}: {qty} x {price} = {qty * price}, supplied Amount {amount}",
                        element="Line.Amount",
                    )
            description = raw.get("Description")
            if description is not None and len(str(description)) > 4000:
                raise QboFault(
                    "2050",
                    "String length is either shorter or longer than supported by specification",
                    f"Line {index}: Description longer than 4000",
                )
            detail["ItemRef"] = {"value": item["Id"], "name": item["Name"]}
            detail.setdefault("TaxCodeRef", {"value": "NON"})
            number += 1
            out.append(
                {**raw, "Id": str(number), "LineNum": number, "Amount": amount, "SalesItemLineDetail": detail}
            )
            total += amount
        out.append({"DetailType": "SubTotalLineDetail", "Amount": total, "SubTotalLineDetail": {}})
        return out, total

    def _check(self, invoice: dict[str, Any]) -> None:
        status = invoice.get("EmailStatus", "NotSet")
        if status not in EMAIL_STATUSES:
            raise QboFault(
                "2010",
                "Request has invalid or unsupported property",
                f"EmailStatus must be one of {', '.join(EMAIL_STATUSES)}",
                element="EmailStatus",
            )
        address = (invoice.get("BillEmail") or {}).get("Address")
        if status == "NeedToSend" and not address:
            raise QboFault(
                "6000",
                "A business validation error has occurred while processing your request",
                "Business Validation Error: BillEmail is required when EmailStatus is NeedToSend.",
                element="BillEmail",
            )
        if address is not None and not _email_ok(address):
            raise QboFault(
                "2090",
                "Invalid Email Address format",
                f"Invalid Email Address format: {address!r}",
                element="BillEmail",
            )
        doc = invoice.get("DocNumber")
        if doc is not None and len(str(doc)) > 21:
            raise QboFault(
                "2050",
                "String length is either shorter or longer than supported by specification",
                "DocNumber: Min:0 Max:21 supported",
                element="DocNumber",
            )
        for name in ("TxnDate", "DueDate"):
            value = invoice.get(name)
            if value is not None:
                try:
                    date.fromisoformat(str(value))
                except ValueError:
                    raise QboFault(
                        "2000", "Invalid Date", f"{name} must be YYYY-MM-DD (got {value!r})", element=name
                    ) from None

    def _term_days(self, ref: Any) -> int | None:
        value = ref.get("value") if isinstance(ref, dict) else None
        term = self.find("Term", value) if value else None
        return int(term.get("DueDays", 0)) if term else None

    def create_invoice(self, body: dict[str, Any]) -> dict[str, Any]:
        with self.store.lock:
            customer = self._active_customer(body.get("CustomerRef"))
            lines, total = self._lines(body.get("Line"))
            invoice = {k: v for k, v in body.items() if k not in READ_ONLY}
            for name in ("TxnDate", "DueDate"):
                if invoice.get(name) == "":  # python-quickbooks sends empty dates; QBO takes them as unset
                    del invoice[name]
            invoice["CustomerRef"] = {"value": customer["Id"], "name": customer["DisplayName"]}
            invoice.setdefault("TxnDate", company_now().date().isoformat())
            invoice.setdefault("EmailStatus", "NotSet")
            invoice.setdefault("PrintStatus", "NotSet")
            custom_numbers = self.company["Preferences"]["SalesFormsPrefs"]["CustomTxnNumbers"]
            given = invoice.pop("DocNumber", None)
            if given not in (None, "AUTO_GENERATE"):
                invoice["DocNumber"] = given
            self._check(invoice)
            if given == "AUTO_GENERATE" or (given is None and not custom_numbers):
                invoice["DocNumber"] = self._next_doc_number()
            if "DueDate" not in invoice:
                # Documented: "the number of days specified in SalesTermRef added the transaction
                # date" [VOSKA invoice.md]. What QBO does with neither is NOT FOUND: the stand-in
                # then makes it due on the invoice date, and never borrows the customer's terms,
                # so a client that leaves the due date to QBO is caught by the tests.
                days = self._term_days(invoice.get("SalesTermRef"))
                invoice["DueDate"] = (
                    date.fromisoformat(invoice["TxnDate"]) + timedelta(days=days or 0)
                ).isoformat()
            now = _stamp()
            invoice.update(
                {
                    "Line": lines,
                    "TotalAmt": total,
                    "Balance": total,
                    "Deposit": 0,
                    "domain": "QBO",
                    "sparse": False,
                    "SyncToken": "0",
                    "CurrencyRef": {"value": "USD", "name": "United States Dollar"},
                    "TxnTaxDetail": {"TotalTax": 0},
                    "LinkedTxn": [],
                    "ApplyTaxAfterDiscount": False,
                    "MetaData": {"CreateTime": now, "LastUpdatedTime": now},
                    "Id": self._next_id(),
                }
            )
            invoices = self.rows("Invoice")
            invoices.append(invoice)
            self.store.put("qbo/invoices", invoices)
            return invoice

    def _current(self, body: dict[str, Any]) -> dict[str, Any]:
        invoice = self.find("Invoice", body.get("Id"))
        if invoice is None:
            raise _not_found("Invoice", body.get("Id"))
        if str(body.get("SyncToken")) != invoice["SyncToken"]:
            raise QboFault(
                "5010",
                "Stale Object Error",
                f"Stale Object Error : You and sandbox were working on this at the same time. sandbox finished before you "
                f"did, so your work was not saved. (SyncToken {body.get('SyncToken')!r}, current {invoice['SyncToken']!r})",
            )
        return invoice

    def _save(self, invoice: dict[str, Any]) -> dict[str, Any]:
        invoice["SyncToken"] = str(int(invoice["SyncToken"]) + 1)
        invoice["MetaData"] = {**invoice.get("MetaData", {}), "LastUpdatedTime": _stamp()}
        invoices = [invoice if row["Id"] == invoice["Id"] else row for row in self.rows("Invoice")]
        self.store.put("qbo/invoices", invoices)
        return invoice

    def update_invoice(self, body: dict[str, Any]) -> dict[str, Any]:
        with self.store.lock:
            current = self._current(body)
            sparse = body.get("sparse") in (True, "true")
            changes = {k: v for k, v in body.items() if k not in READ_ONLY}
            if sparse:
                merged = {**current, **changes}
            else:  # a full update sets every writable field that is left out to NULL
                merged = {**{k: v for k, v in current.items() if k in READ_ONLY}, **changes}
            if "CustomerRef" in changes or not sparse:
                customer = self._active_customer(merged.get("CustomerRef"))
                merged["CustomerRef"] = {"value": customer["Id"], "name": customer["DisplayName"]}
            if "Line" in changes or not sparse:
                lines, total = self._lines(merged.get("Line"))
                merged.update(Line=lines, TotalAmt=total, Balance=total)
            self._check(merged)
            merged["sparse"] = False
            return self._save(merged)

    def void_invoice(self, body: dict[str, Any]) -> dict[str, Any]:
        with self.store.lock:
            invoice = self._current(body)
            for line in invoice["Line"]:
                line["Amount"] = 0
            note = invoice.get("PrivateNote")
            invoice.update(TotalAmt=0, Balance=0, PrivateNote="Voided" + (f" - {note}" if note else ""))
            return self._save(invoice)

    def delete_invoice(self, body: dict[str, Any]) -> dict[str, Any]:
        with self.store.lock:
            invoice = self._current(body)
            self.store.put(
                "qbo/invoices", [row for row in self.rows("Invoice") if row["Id"] != invoice["Id"]]
            )
            return {"status": "Deleted", "domain": "QBO", "Id": invoice["Id"]}

    def send_invoice(self, invoice_id: str, send_to: str | None) -> dict[str, Any]:
        with self.store.lock:
            invoice = self.find("Invoice", invoice_id)
            if invoice is None:
                raise _not_found("Invoice", invoice_id)
            if send_to is not None:
                if not _email_ok(send_to):
                    raise QboFault(
                        "2090",
                        "Invalid Email Address format",
                        f"Invalid Email Address format: {send_to!r}",
                        element="sendTo",
                    )
                invoice["BillEmail"] = {"Address": send_to}
            address = (invoice.get("BillEmail") or {}).get("Address")
            if not address:
                raise QboFault(
                    "6000",
                    "A business validation error has occurred while processing your request",
                    "Business Validation Error: the invoice has no BillEmail and no sendTo was given.",
                    element="BillEmail",
                )
            self._deliver(invoice, address)
            invoice["EmailStatus"] = "EmailSent"
            invoice["DeliveryInfo"] = {"DeliveryType": "Email", "DeliveryTime": _stamp()}
            return self._save(invoice)

    def _deliver(self, invoice: dict[str, Any], address: str) -> None:
        info = self.company["CompanyInfo"]
        name = info.get("CompanyName", "Sandbox Company")
        number = invoice.get("DocNumber") or invoice["Id"]
        reply_to = [info["Email"]["Address"]] if (info.get("Email") or {}).get("Address") else []
        cc = [
            a.strip()
            for a in str((invoice.get("BillEmailCc") or {}).get("Address", "")).split(",")
            if a.strip()
        ]
        text = (
            f"Dear {invoice['CustomerRef'].get('name', 'customer')},\n\n"
            f"Here's your invoice! We appreciate your prompt payment.\n\n"
            f"Invoice {number}\nDue {invoice.get('DueDate', '')}\nBalance due ${money(invoice.get('Balance', 0))}\n\n"
            f"Thanks for your business!\n{name}\n"
        )
        message = mail.build_message(
            sender=f"{name} <quickbooks@notification.intuit.com>",
            to=[address],
            cc=cc,
            reply_to=reply_to,
            subject=f"Invoice {number} from {name}",
            text=text,
            attachments=[(f"Invoice_{number}.pdf", "application/pdf", self.invoice_pdf(invoice))],
            via="qbo-invoice-send",
        )
        mail.write_eml(self.mail_dir, message, f"invoice {number}")

    def invoice_pdf(self, invoice: dict[str, Any]) -> bytes:
        info = self.company["CompanyInfo"]
        number = invoice.get("DocNumber") or invoice["Id"]
        lines: list[tuple[str, bool]] = [
            (info.get("CompanyName", ""), True),
            (
                f"Bill to: {invoice['CustomerRef'].get('name', '')}  {(invoice.get('BillEmail') or {}).get('Address', '')}",
                False,
            ),
            (
                f"Invoice no.: {number}    Date: {invoice.get('TxnDate', '')}    Due: {invoice.get('DueDate', '')}",
                False,
            ),
            ("", False),
        ]
        for line in invoice.get("Line", []):
            if line.get("DetailType") != "SalesItemLineDetail":
                continue
            detail = line["SalesItemLineDetail"]
            item = detail.get("ItemRef", {}).get("name", "")
            text = f"{item} - {line.get('Description') or ''}".strip(" -")
            qty, price = detail.get("Qty"), detail.get("UnitPrice")
            figures = (
                f"{qty} x {money(price)} = {money(line['Amount'])}"
                if qty is not None and price is not None
                else money(line["Amount"])
            )
            lines.append((f"{text[:70]}    {figures}", False))
        lines += [("", False), (f"Total: {money(invoice.get('TotalAmt', 0))}", True)]
        lines.append((f"Balance due: {money(invoice.get('Balance', 0))}", True))
        return pdf.render(f"Invoice {number}", lines)

    # --- replay ---------------------------------------------------------------------------------

    def replayed(self, request_id: str | None) -> tuple[int, str] | None:
        if not request_id:
            return None
        stored = self.store.get("qbo/requestids", {}).get(request_id)
        if stored is None:
            return None
        if self.option("requestid_replay") == "error600":
            fault = QboFault(
                "600",
                "Duplicate Request ID",
                f"Our system detected the duplicate: Request ID {request_id} was used before",
            )
            return 400, dumps({"Fault": fault.fault(), "time": _time()})
        return stored["status"], stored["body"]

    def remember(self, request_id: str | None, status: int, body: str) -> None:
        """Intuit: a repeated requestid gets "the same response as it did for the original request"
        [BLOG-REQID], errors included. DESIGN §7: completed business answers only (2xx and 4xx
        validation faults); 401, 429 and 5xx are not answers to the request and are not stored."""
        if request_id and (status < 400 or status in REPLAYED_FAULT_STATUSES):
            with self.store.edit("qbo/requestids", {}) as seen:
                seen[request_id] = {"status": status, "body": body, "at": time.time()}

    # --- the WSGI app ---------------------------------------------------------------------------

    def app(self) -> Flask:  # noqa: C901 - one route table
        app = Flask("sandbox-qbo")
        base = "/v3/company/<realm>"

        def answer(status: int, payload: Any, content_type: str = "application/json") -> Response:
            body = payload if isinstance(payload, str | bytes) else dumps(payload)
            return Response(body, status=status, content_type=content_type)

        def fault(exc: QboFault) -> Response:
            return answer(exc.status, {"Fault": exc.fault(), "time": _time()})

        def body_json() -> dict[str, Any]:
            try:
                value = json.loads(request.get_data() or b"null", parse_float=Decimal)
            except ValueError:
                raise QboFault(
                    "2010", "Request has invalid or unsupported property", "Request body is not valid JSON"
                ) from None
            if not isinstance(value, dict):
                raise QboFault(
                    "2010",
                    "Request has invalid or unsupported property",
                    "Request body must be a JSON object",
                )
            return value

        def write(handler: Any) -> Response:
            """Run a write under requestid replay: a repeated requestid gets the stored answer."""
            request_id = request.args.get("requestid")
            if request_id is not None and not 0 < len(request_id) <= 50:
                return fault(
                    QboFault(
                        "2050",
                        "String length is either shorter or longer than supported by specification",
                        "requestid must be 1-50 characters",
                    )
                )
            with self.store.lock:
                replay = self.replayed(request_id)
                if replay is not None:
                    return answer(replay[0], replay[1])
                try:
                    status, payload = 200, handler()
                except QboFault as exc:
                    status, payload = exc.status, {"Fault": exc.fault(), "time": _time()}
                text = dumps(payload)
                self.remember(request_id, status, text)
                return answer(status, text)

        @app.before_request
        def authenticate() -> Response | None:
            if not request.path.startswith("/v3/"):
                return None
            header = request.headers.get("Authorization", "")
            token = header[7:] if header.startswith("Bearer ") else ""
            if not token or not self.access_ok(token):
                detail = "Token expired or unknown" if token else "Malformed bearer token: missing"
                body = {
                    "warnings": None,
                    "intuitObject": None,
                    "fault": {
                        "error": [
                            {
                                "message": "message=AuthenticationFailed; errorCode=003200; statusCode=401",
                                "detail": detail,
                                "code": "3200",
                                "element": None,
                            }
                        ],
                        "type": "AUTHENTICATION",
                    },
                    "report": None,
                    "queryResponse": None,
                    "batchItemResponse": [],
                    "attachableResponse": [],
                    "syncErrorResponse": None,
                    "requestId": None,
                    "time": int(time.time() * 1000),
                    "status": None,
                    "cdcresponse": [],
                }
                response = answer(401, body)
                response.headers["WWW-Authenticate"] = 'Bearer realm="Intuit", error="invalid_token"'
                return response
            realm = (request.view_args or {}).get("realm")
            if realm is not None and realm != self.company["realm_id"]:
                return fault(
                    QboFault(
                        "3100",
                        "ApplicationAuthorizationFailed",
                        f"message=ApplicationAuthorizationFailed; errorCode=003100; statusCode=403; realm {realm} is not the connected company",
                        status=403,
                        kind="AuthorizationFault",
                    )
                )
            return None

        @app.post("/oauth2/v1/tokens/bearer")
        def token() -> Response:
            auth = request.authorization
            if auth is not None and auth.type == "basic":
                client_id, client_secret = auth.username, auth.password
            else:
                client_id, client_secret = request.form.get("client_id"), request.form.get("client_secret")
            hard = request.headers.get("x-include-refresh-token-hard-expires-in", "").lower() == "true"
            status, body = self.refresh(client_id, client_secret, request.form.to_dict(), hard)
            return answer(status, body)

        @app.get("/connect/oauth2")
        def authorize() -> Response:
            status, target = self.authorize(request.args.to_dict())
            if status != 302:
                return answer(status, {"error": target.split(":", 1)[0], "error_description": target})
            return Response(status=302, headers={"Location": target})

        @app.route(f"{base}/query", methods=["GET", "POST"])
        def query(realm: str) -> Response:
            text = request.args.get("query") if request.method == "GET" else request.get_data(as_text=True)
            try:
                with self.store.lock:
                    return answer(200, {"QueryResponse": self.query(text or ""), "time": _time()})
            except QboFault as exc:
                return fault(exc)

        @app.get(f"{base}/preferences")
        def preferences(realm: str) -> Response:
            return answer(
                200,
                {"Preferences": {"domain": "QBO", "Id": "1", **self.company["Preferences"]}, "time": _time()},
            )

        @app.get(f"{base}/companyinfo/<company_id>")
        def company_info(realm: str, company_id: str) -> Response:
            return answer(
                200, {"CompanyInfo": {"domain": "QBO", **self.company["CompanyInfo"]}, "time": _time()}
            )

        @app.get(f"{base}/<entity>/<object_id>")
        def read(realm: str, entity: str, object_id: str) -> Response:
            name = next((n for n in ENTITY_DOCS if n.lower() == entity.lower()), None)
            if name is None:
                return fault(
                    QboFault(
                        "500", "Unsupported Operation", f"The sandbox does not serve {entity}", status=400
                    )
                )
            row = self.find(name, object_id)
            if row is None:
                return fault(_not_found(name, object_id))
            return answer(200, {name: row, "time": _time()})

        @app.post(f"{base}/invoice")
        def invoice_write(realm: str) -> Response:
            operation = request.args.get("operation")

            def handler() -> dict[str, Any]:
                body = body_json()
                if operation == "delete":
                    return {"Invoice": self.delete_invoice(body), "time": _time()}
                if operation == "void":
                    return {"Invoice": self.void_invoice(body), "time": _time()}
                if operation not in (None, "update"):
                    raise QboFault("500", "Unsupported Operation", f"operation={operation} is not supported")
                result = self.update_invoice(body) if body.get("Id") else self.create_invoice(body)
                return {"Invoice": result, "time": _time()}

            return write(handler)

        @app.post(f"{base}/invoice/<invoice_id>/send")
        def invoice_send(realm: str, invoice_id: str) -> Response:
            send_to = request.args.get("sendTo")
            return write(lambda: {"Invoice": self.send_invoice(invoice_id, send_to), "time": _time()})

        @app.get(f"{base}/invoice/<invoice_id>/pdf")
        def invoice_pdf(realm: str, invoice_id: str) -> Response:
            invoice = self.find("Invoice", invoice_id)
            if invoice is None:
                return fault(_not_found("Invoice", invoice_id))
            return answer(200, self.invoice_pdf(invoice), "application/pdf")

        @app.errorhandler(404)
        @app.errorhandler(405)
        def unknown(error: Any) -> Response:
            return fault(
                QboFault(
                    "500",
                    "Unsupported Operation",
                    f"{request.method} {request.path} is not served by the sandbox",
                    status=error.code,
                )
            )

        return app


def intuit_headers(service: str) -> dict[str, str]:
    """Every QBO answer carries an ``intuit_tid`` (the id Intuit support asks for)."""
    return {"intuit_tid": f"1-{uuid.uuid4().hex[:8]}-{uuid.uuid4().hex[:16]}"}
