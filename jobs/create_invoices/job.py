"""The monthly create-invoices job: usage to exactly one QBO invoice per client and period.

Reads the registry, Robocorp runs and ClickUp time, prices them with QBO items, and for each
client claims (client, period) in the ledger before creating the invoice with a requestid that
stays the same across retries and crashes. Pure billing rules live in period/attribution/billing/
customers; this module only wires them to the clients and reports what happened.
"""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from loguru import logger

from create_invoices import summary
from create_invoices.attribution import Attribution, attribute_time
from create_invoices.billing import (
    InvoiceDraft,
    PriceBook,
    PricingError,
    aggregate_runtime,
    build_draft,
    draft_to_qbo,
    marker,
    price_book_from_items,
    prices_for,
    split_lines,
    trace_csv,
)
from create_invoices.customers import CustomerProblem, match_customer
from create_invoices.period import Period
from create_invoices.terms import due_fields
from integrations import errors
from integrations.aws import CLAIM_LEASE_SECONDS
from integrations.cli import EXIT_OK, EXIT_PARTIAL, JobOptions, JobOutcome, StartupError
from integrations.config import BUSINESS_TIME_ZONE, Settings
from integrations.models import Attachment, ClientRecord, ProcessRun
from integrations.qbo import is_definite_failure, request_id_for
from integrations.report import safe_path_segment
from integrations.services import Services, connect

WORKERS = 4  # concurrent clients; QBO allows 10 concurrent requests and 10/s per company


@dataclass
class ClientResult:
    client_id: str
    customer_name: str
    outcome: str  # created | would_create | skipped | failed
    reason: str = ""
    draft: InvoiceDraft | None = None
    invoice_id: str = ""
    doc_number: str = ""
    warnings: list[str] = field(default_factory=list)
    unfinished: list[ProcessRun] = field(default_factory=list)  # runs of the period still running


def run(settings: Settings, options: JobOptions) -> JobOutcome:
    now = datetime.now(UTC)
    period = (
        Period.parse(options.period) if options.period else Period.previous_to(settings.scheduled_time or now)
    )
    run_id = uuid.uuid4().hex[:12]
    logger.info("billing period {period}", period=period.label, run_id=run_id)
    services = connect(settings)
    return CreateRun(settings, options, services, period, run_id, now).execute()


class CreateRun:
    """One execution of the job; holds what is fetched once per run (customers, items, invoices)."""

    def __init__(
        self,
        settings: Settings,
        options: JobOptions,
        services: Services,
        period: Period,
        run_id: str,
        now: datetime,
    ):
        self.settings, self.options, self.services = settings, options, services
        self.period, self.run_id, self.now = period, run_id, now
        self.txn_date: date = now.astimezone(ZoneInfo(BUSINESS_TIME_ZONE)).date()

    # -- the run ---------------------------------------------------------------------------
    def execute(self) -> JobOutcome:
        clients, invalid = self.services.registry.load()
        results: list[ClientResult] = [
            ClientResult(item.key, item.key, "failed", f"invalid registry item: {item.reason}")
            for item in invalid
        ]
        selected = self._select(clients, results)

        self.services.require("qbo", "clickup", "robocorp", *(() if self.options.dry_run else ("graph",)))
        qbo = self.services.qbo
        customers = qbo.customers(include_inactive=True)  # first QBO call: an auth failure exits 2 here
        try:
            prices = price_book_from_items(
                qbo.items(),
                self.settings.item_robot_runtime,
                self.settings.item_professional_services,
                self.settings.item_subscription,
            )
        except PricingError as exc:
            raise StartupError(f"QBO items: {exc}") from None
        custom_numbers = qbo.custom_txn_numbers()
        self.terms, self.default_term_id = qbo.terms(), qbo.default_term_id()  # once per run
        existing = self._existing_invoices()

        attribution, clickup_error = self._time_entries(clients)
        with ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="client") as pool:
            results += list(
                pool.map(
                    lambda c: self._bill(
                        c, customers, prices, custom_numbers, existing, attribution, clickup_error
                    ),
                    selected,
                )
            )
        results += self._skipped_by_selection
        return self._finish(results, attribution)

    def _select(self, clients: list[ClientRecord], results: list[ClientResult]) -> list[ClientRecord]:
        self._skipped_by_selection: list[ClientResult] = []
        wanted = set(self.options.clients)
        known = {c.client_id for c in clients}
        for missing in sorted(wanted - known):
            if not any(r.client_id == missing for r in results):
                results.append(ClientResult(missing, missing, "failed", "not in the client registry"))
        selected = []
        for client in sorted(clients, key=lambda c: c.client_id):
            name = client.customer_name or client.client_id
            if wanted and client.client_id not in wanted:
                continue
            if not client.active:
                self._skipped_by_selection.append(
                    ClientResult(client.client_id, name, "skipped", "inactive in registry")
                )
            elif self.settings.is_excluded(client.client_id, client.customer_name):
                self._skipped_by_selection.append(ClientResult(client.client_id, name, "skipped", "excluded"))
            else:
                selected.append(client)
        return selected

    def _existing_invoices(self) -> dict[str, dict]:
        """Invoices of this period already in QBO, by marker: one paged query for the whole run.

        Our invoices are dated on or after the period's first day, so a TxnDate range finds them;
        the marker in PrivateNote (or our DocNumber) identifies them."""
        found: dict[str, dict] = {}
        end = self.txn_date + timedelta(days=62)
        for invoice in self.services.qbo.invoices_between(self.period.first_day, end):
            note = invoice.get("PrivateNote") or ""
            for token in note.split():
                if token.startswith("invoice-processor:") and token.endswith(f":{self.period.label}"):
                    found[token] = invoice
        return found

    def _time_entries(self, clients: list[ClientRecord]) -> tuple[Attribution | None, str]:
        """All billable ClickUp time of the period, for ALL members, attributed to clients."""
        try:
            clickup = self.services.clickup
            members = clickup.members()
            entries = clickup.time_entries(self.period.start, self.period.end, [m.id for m in members])
        except errors.ServiceError as exc:
            logger.error("ClickUp time entries unavailable: {error}", error=str(exc))
            return None, f"ClickUp time entries unavailable ({exc})"
        attribution = attribute_time(entries, clients, self.period)
        logger.info(
            "ClickUp: {n} entries, {u} unattributed, {r} running timers",
            n=len(entries),
            u=len(attribution.unattributed),
            r=len(attribution.running),
        )
        return attribution, ""

    def _runs(self, client: ClientRecord) -> list[ProcessRun]:
        runs: list[ProcessRun] = []
        for workspace in client.robocorp_workspace_ids:
            runs.extend(self.services.robocorp.process_runs(workspace))
        return runs

    # -- one client ------------------------------------------------------------------------
    def _bill(
        self,
        client: ClientRecord,
        customers: list[dict],
        base_prices: PriceBook,
        custom_numbers: bool,
        existing: dict[str, dict],
        attribution: Attribution | None,
        clickup_error: str,
    ) -> ClientResult:
        name = client.customer_name or client.client_id
        with logger.contextualize(client=client.client_id):
            try:
                if attribution is None:
                    return ClientResult(client.client_id, name, "failed", clickup_error)
                customer = match_customer(client, customers)
                name = customer.get("DisplayName") or name
                runtime = aggregate_runtime(self._runs(client), self.period)
                prices = prices_for(client, base_prices)
                priced = split_lines(
                    runtime, attribution.by_client.get(client.client_id, []), prices, self.period
                )
                draft = build_draft(
                    client,
                    customer,
                    self.period,
                    priced.lines,
                    self.txn_date,
                    custom_numbers,
                    dropped=priced.dropped,
                )
                result = ClientResult(
                    client.client_id, name, "skipped", draft=draft, unfinished=runtime.unfinished
                )
                if draft is None:
                    result.reason = "nothing to bill"
                    return result
                already = existing.get(marker(client.client_id, self.period))
                if already is not None:
                    result.reason = "already invoiced"
                    result.invoice_id, result.doc_number = (
                        str(already["Id"]),
                        str(already.get("DocNumber") or ""),
                    )
                    if not self.options.dry_run:
                        self._record_existing(client, already)
                    return result
                if self.options.dry_run:
                    result.outcome, result.reason = "would_create", "dry run"
                    return result
                due = due_fields(self.txn_date, customer, self.default_term_id, self.terms)
                return self._create(client, draft, result, due)
            except (CustomerProblem, PricingError, ValueError) as exc:
                logger.error("client {client} failed: {error}", client=client.client_id, error=str(exc))
                return ClientResult(client.client_id, name, "failed", str(exc))
            except errors.ReauthorizationRequired:
                raise
            except errors.ServiceError as exc:
                logger.error("client {client} failed: {error}", client=client.client_id, error=str(exc))
                return ClientResult(client.client_id, name, "failed", str(exc))

    def _ledger_key(self, client: ClientRecord) -> str:
        return f"invoice#{client.client_id}#{self.period.label}"

    def _record_existing(self, client: ClientRecord, invoice: dict) -> None:
        """An invoice with our marker exists (perhaps created by a run that crashed before it
        recorded it): make the ledger say so, so nothing ever tries to create it again."""
        key = self._ledger_key(client)
        entry = self.services.ledger.get(key)
        if entry is not None and entry.status == "created":
            return
        acquired, _ = self.services.ledger.claim(
            key, self.run_id, request_id_for(key, "create"), CLAIM_LEASE_SECONDS
        )
        if acquired:
            self.services.ledger.record(
                key,
                self.run_id,
                "created",
                {"invoice_id": str(invoice["Id"]), "doc_number": invoice.get("DocNumber")},
            )

    def _create(
        self, client: ClientRecord, draft: InvoiceDraft, result: ClientResult, due: dict
    ) -> ClientResult:
        ledger, qbo = self.services.ledger, self.services.qbo
        key = self._ledger_key(client)
        acquired, entry = ledger.claim(
            key,
            self.run_id,
            request_id_for(key, "create"),
            CLAIM_LEASE_SECONDS,
            {"client_id": client.client_id, "period": self.period.label, "total": str(draft.total)},
        )
        if not acquired:
            status = entry.status if entry else "unknown"
            result.reason = (
                "already invoiced" if status == "created" else f"claimed by another run ({status})"
            )
            if entry is not None:
                result.invoice_id = str(entry.attributes.get("invoice_id") or "")
                result.doc_number = str(entry.attributes.get("doc_number") or "")
            return result
        # A definite failure (a fault that created nothing) moved on to a new attempt, hence a new
        # requestid: QBO would replay the old error. An unknown outcome keeps the attempt and id.
        attempt = int((entry.attributes.get("create_attempt") if entry else 0) or 0)
        request_id = request_id_for(key, "create", attempt)
        body = {**draft_to_qbo(draft), **due}
        if not draft.bill_email:
            body["EmailStatus"] = "NotSet"  # QBO refuses NeedToSend without BillEmail
            result.warnings.append("customer has no email address: invoice not queued for sending")
        try:
            invoice = qbo.create_invoice(body, request_id)
        except errors.DuplicateRequest:
            invoice = self._find_by_marker(client)
            if invoice is None:
                ledger.record(key, self.run_id, "failed", {"reason": "QBO reported a duplicate request id"})
                raise
        except errors.ServiceError as exc:
            if is_definite_failure(exc):
                ledger.record(key, self.run_id, "failed", {"reason": str(exc), "create_attempt": attempt + 1})
                raise
            # Outcome unknown (timeout, 5xx after retries): the next run looks for the marker and
            # re-sends the same requestid, which QBO answers with the original invoice.
            ledger.record(key, self.run_id, "failed", {"reason": str(exc), "outcome": "unknown"})
            raise
        result.outcome, result.reason = "created", ""
        result.invoice_id, result.doc_number = str(invoice["Id"]), str(invoice.get("DocNumber") or "")
        archived = self._archive(result)
        ledger.record(
            key,
            self.run_id,
            "created",
            {"invoice_id": result.invoice_id, "doc_number": result.doc_number, "archived": archived},
        )
        logger.info(
            "created invoice {doc} for {client}: {total}",
            doc=result.doc_number or result.invoice_id,
            client=client.client_id,
            total=str(draft.total),
        )
        return result

    def _find_by_marker(self, client: ClientRecord) -> dict | None:
        wanted = marker(client.client_id, self.period)
        for invoice in self.services.qbo.invoices_between(
            self.period.first_day, self.txn_date + timedelta(days=62)
        ):
            if wanted in (invoice.get("PrivateNote") or "").split():
                return invoice
        return None

    def _archive(self, result: ClientResult) -> bool:
        """Upload the usage trace CSV to SharePoint; a failure is reported, never hides the invoice."""
        assert result.draft is not None
        parts = [self.period.label, safe_path_segment(result.customer_name)]
        parts.append(f"usage-{result.client_id}-{self.period.label}.csv")
        try:
            self.services.archive(parts, trace_csv(result.draft).encode("utf-8-sig"))
            return True
        except errors.ServiceError as exc:
            result.warnings.append(f"usage CSV not archived to SharePoint: {exc}")
            logger.warning("usage CSV not archived: {error}", error=str(exc))
            return False

    # -- reporting -------------------------------------------------------------------------
    def _finish(self, results: list[ClientResult], attribution: Attribution | None) -> JobOutcome:
        results.sort(key=lambda r: r.client_id)
        unfinished = [run for r in results for run in r.unfinished]
        report = summary.build(
            self.period,
            results,
            attribution,
            unfinished,
            dry_run=self.options.dry_run,
        )
        failed = any(r.outcome == "failed" for r in results)
        if self.options.dry_run:
            print(summary.dry_run_listing(results))
        else:
            csv = Attachment(f"invoices-{self.period.label}.csv", "text/csv", report.csv.encode("utf-8-sig"))
            mailed = self.services.mail_bookkeeper(report.subject, report.html, report.text, [csv])
            failed = failed or not mailed
        return JobOutcome(
            exit_code=EXIT_PARTIAL if failed else EXIT_OK,
            summary={**report.as_dict(), "throttling": self.services.throttling()},
            table=report.table,
        )
