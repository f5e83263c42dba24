"""The monthly create-invoices job: usage to exactly one QBO invoice per client and period.

Reads the registry, Robocorp runs and ClickUp time, prices them with QBO items, and for each
client claims (client, period) in the ledger before creating the invoice with a requestid that
stays the same across retries and crashes. Pure billing rules live in period/attribution/billing/
customers; this module only wires them to the clients and reports what happened.
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from loguru import logger

from create_invoices import summary
from create_invoices.attribution import Attribution, attribute_time
from create_invoices.billing import (
    InvoiceDraft,
    PriceBook,
    PricingError,
    aggregate_runtime,
    billed_source_ids,
    build_draft,
    draft_to_qbo,
    price_book_from_items,
    prices_for,
    split_lines,
    trace_csv,
)
from create_invoices.customers import CustomerProblem, match_customer
from create_invoices.holds import HoldRules, held_note, hold_reasons
from create_invoices.late_usage import LateUsage, late_lines, look_back, reopened
from create_invoices.period import Period, PeriodRefused, check_billable
from create_invoices.release import release
from create_invoices.results import ClientResult, Outcome, Reason
from create_invoices.terms import due_fields
from integrations import errors
from integrations.aws import LedgerEntry, UsageTrace
from integrations.claims import Claims
from integrations.cli import EXIT_OK, EXIT_PARTIAL, JobOptions, JobOutcome
from integrations.clock import clock_for
from integrations.config import Settings
from integrations.lifecycle import run_all
from integrations.models import Attachment, ClientRecord, ProcessRun
from integrations.qbo import (
    FUTURE_TXN_DATE_WINDOW,
    attempt_of,
    is_definite_failure,
    request_id_for,
    request_id_of,
)
from integrations.qbo_entities import Customer, Invoice
from integrations.report import safe_path_segment
from integrations.services import Services

HISTORY_MONTHS = 12  # how far back the client's earlier invoices are read for the median hold rule


def run(settings: Settings, options: JobOptions, services: Services) -> JobOutcome:
    clock = clock_for(settings)
    now = clock.now()
    if options.release:
        return release(services, options.release, clock, dry_run=options.dry_run)
    try:
        period = (
            Period.parse(options.period)
            if options.period
            else Period.previous_to(settings.scheduled_time or now, settings.business_time_zone)
        )
        check_billable(period, clock.today(), settings.business_time_zone, backfill=options.backfill)
    except PeriodRefused as exc:
        raise errors.UsageError(str(exc)) from None
    except ValueError as exc:
        raise errors.UsageError(f"--period: {exc}") from None
    run_id = uuid.uuid4().hex[:12]
    logger.info("billing period {period}", period=period.label, run_id=run_id)
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
        self.txn_date: date = now.astimezone(ZoneInfo(settings.business_time_zone)).date()
        self.hold_rules = HoldRules(settings.hold_max_hours, settings.hold_median_multiple)
        self.late_months = look_back(period, settings.late_lookback_months)
        self.late_attribution: dict[Period, Attribution] = {}
        # ledger rows and traces of the clients already invoiced, read in batches (_read_records)
        self._records: dict[str, LedgerEntry] | None = None
        self._traces: dict[str, UsageTrace] | None = None

    # -- the run ---------------------------------------------------------------------------
    def execute(self) -> JobOutcome:
        clients, invalid = self.services.registry.load()
        results: list[ClientResult] = [
            ClientResult.failed(
                item.key, item.key, Reason.INVALID_REGISTRY_ITEM, f"invalid registry item: {item.reason}"
            )
            for item in invalid
        ]
        selected, left_out = self._select(clients, {item.key for item in invalid})
        results += left_out

        self.services.require("qbo", "clickup", "robocorp", *(() if self.options.dry_run else ("graph",)))
        customers, prices, custom_numbers, existing = self._company()
        # A repeat run of the 4th-10th whose clients are all invoiced reads no usage at all.
        uninvoiced = any(client.client_id not in existing for client in selected)
        if not self.options.dry_run:
            self._read_records([client for client in selected if client.client_id in existing])
        attribution, clickup_error = self._time_entries(clients) if uninvoiced else (None, "")
        with Claims(
            self.services.ledger, self.run_id, self.settings.claim_ttl_seconds, self.services.stop
        ) as claims:
            self.claims = claims
            results += run_all(
                selected,
                lambda c: self._bill(
                    c, customers, prices, custom_numbers, existing, attribution, clickup_error
                ).finished(),
                workers=self.settings.create_workers,
                stop=self.services.stop,
                grace_seconds=self.settings.stop_grace_seconds,
                unfinished=self._stopped,
                name="client",
            )
        return self._finish(results, attribution)

    def _company(self) -> tuple[list[Customer], PriceBook, bool, dict[str, Invoice]]:
        """What every client needs, read once: customers, prices, numbering, this period's invoices.

        A failure here means the run cannot start (exit 2); an auth failure surfaces on the first call."""
        qbo = self.services.qbo
        try:
            customers = qbo.customers(include_inactive=True)
            prices = price_book_from_items(
                qbo.items(),
                self.settings.item_robot_runtime,
                self.settings.item_professional_services,
                self.settings.item_subscription,
            )
            self.terms, self.default_term_id = qbo.terms(), qbo.default_term_id()  # once per run
            return customers, prices, qbo.custom_txn_numbers(), self._existing_invoices()
        except PricingError as exc:
            raise errors.StartupError(f"QBO items: {exc}") from None
        except errors.ReauthorizationRequired:
            raise
        except errors.ServiceError as exc:
            raise errors.StartupError(f"cannot read the QuickBooks company: {exc}") from None

    def _stopped(self, client: ClientRecord, started: bool) -> ClientResult:
        """The result of a client the run did not finish because it was told to stop."""
        reason = (
            "stopped early while in progress: the next run finishes it"
            if started
            else "stopped early: not started"
        )
        return ClientResult.failed(
            client.client_id, client.customer_name or client.client_id, Reason.STOPPED, reason
        )

    def _select(
        self, clients: list[ClientRecord], invalid: set[str]
    ) -> tuple[list[ClientRecord], list[ClientResult]]:
        """The clients to bill this run, and a result for each one left out (and why)."""
        wanted = set(self.options.clients)
        unknown = sorted(wanted - {c.client_id for c in clients} - invalid)
        if unknown:  # a typo is a usage error: stop before anything is written or mailed
            raise errors.UsageError(
                f"--client {', '.join(unknown)}: not in the client registry {self.settings.registry_table}"
            )
        left_out: list[ClientResult] = []
        selected = []
        for client in sorted(clients, key=lambda c: c.client_id):
            if wanted and client.client_id not in wanted:
                continue
            result = ClientResult(client.client_id, client.customer_name or client.client_id, Outcome.SKIPPED)
            if not client.active:
                left_out.append(result.skip(Reason.INACTIVE, "inactive in registry"))
            elif self.settings.is_excluded(client.client_id, client.customer_name):
                left_out.append(result.skip(Reason.EXCLUDED, "excluded"))
            else:
                selected.append(client)
        return selected, left_out

    def _our_invoices(self) -> list[tuple[str, Invoice]]:
        """(client id, invoice) of every invoice this system made for the period, by its marker.

        Our invoices are dated on or after the period's first day, so one paged TxnDate query
        finds them all."""
        end = self.txn_date + FUTURE_TXN_DATE_WINDOW
        found = []
        for invoice in self.services.qbo.invoices_between(self.period.first_day, end):
            marker = invoice.marker
            if marker is not None and marker.period == self.period.label:
                found.append((marker.client_id, invoice))
        return found

    def _existing_invoices(self) -> dict[str, Invoice]:
        """This period's invoices already in QBO, by client id: one query for the whole run."""
        return dict(self._our_invoices())

    def _time_entries(self, clients: list[ClientRecord]) -> tuple[Attribution | None, str]:
        """All billable ClickUp time of the period, for ALL members, attributed to clients."""
        try:
            clickup = self.services.clickup
            members = clickup.members()
            # one read from the oldest month whose late time can still be carried forward
            since = self.late_months[-1].start if self.late_months else self.period.start
            entries = clickup.time_entries(since, self.period.end, [m.id for m in members])
        except errors.ServiceError as exc:
            logger.error("ClickUp time entries unavailable: {error}", error=str(exc))
            return None, f"ClickUp time entries unavailable ({exc})"
        self.late_attribution = {month: attribute_time(entries, clients, month) for month in self.late_months}
        attribution = attribute_time(entries, clients, self.period)
        logger.info(
            "ClickUp: {n} entries, {u} unattributed, {r} running timers",
            n=len(entries),
            u=len(attribution.unattributed),
            r=len(attribution.running),
        )
        return attribution, ""

    def _runs(self, client: ClientRecord) -> list[ProcessRun]:
        """The client's runs that started in the period or in a month whose late usage may still be
        carried forward (and any without a start, which ``aggregate_runtime`` names as errors).

        Pages are filtered as they are read, so memory follows that window, never a workspace's
        whole history. Every page is read: the list's order is not documented, so it cannot be
        cut short."""
        since = self.late_months[-1].start if self.late_months else self.period.start
        return [
            run
            for workspace in client.robocorp_workspace_ids
            for run in self.services.robocorp.process_runs(workspace)
            if run.started_at is None or run.started_at >= since
        ]

    # -- one client ------------------------------------------------------------------------
    def _bill(
        self,
        client: ClientRecord,
        customers: list[Customer],
        base_prices: PriceBook,
        custom_numbers: bool,
        existing: dict[str, Invoice],
        attribution: Attribution | None,
        clickup_error: str,
    ) -> ClientResult:
        name = client.customer_name or client.client_id
        with logger.contextualize(client=client.client_id):
            try:
                customer = match_customer(client, customers)
                name = customer.display_name or name
                already = existing.get(client.client_id)
                if already is not None:  # before any read: a repeat run costs no usage calls
                    return self._already_invoiced(client, name, already)
                if attribution is None:
                    return ClientResult.failed(client.client_id, name, Reason.ERROR, clickup_error)
                malformed = attribution.malformed.get(client.client_id)
                if malformed:
                    named = "; ".join(
                        f"entry {e.id} ({e.task_name or e.description or 'no task'}, {e.user_name or 'unknown user'}): "
                        f"{e.problem}"
                        for e in malformed
                    )
                    raise ValueError(f"malformed ClickUp time: {named}; fix it in ClickUp, then re-run")
                runs = self._runs(client)
                runtime = aggregate_runtime(runs, self.period)
                prices = prices_for(client, base_prices)
                priced = split_lines(
                    runtime, attribution.by_client.get(client.client_id, []), prices, self.period
                )
                unfinished_months: list[str] = []
                late, earlier_totals = self._history(client, runs, prices, unfinished_months)
                draft = build_draft(
                    client,
                    customer,
                    self.period,
                    priced.lines + [line for usage in late for line in usage.priced.lines],
                    self.txn_date,
                    custom_numbers,
                    dropped=priced.dropped + [line for usage in late for line in usage.priced.dropped],
                )
                result = ClientResult(
                    client.client_id,
                    name,
                    Outcome.SKIPPED,
                    draft=draft,
                    unfinished=runtime.unfinished,
                    late=late,
                    warnings=unfinished_months,
                )
                if draft is None:
                    if not self.options.dry_run:  # closed by this system: its late usage may reopen it
                        self.services.ledger.put_trace(
                            UsageTrace(client.client_id, self.period.label, "nothing"), only_if_new=True
                        )
                    return result.skip(Reason.NOTHING_TO_BILL, "nothing to bill")
                result.hold = hold_reasons(draft.lines, earlier_totals, self.hold_rules)
                if self.options.dry_run:
                    result.outcome, result.code, result.reason = (
                        Outcome.WOULD_CREATE,
                        Reason.DRY_RUN,
                        "dry run",
                    )
                    return result
                due = due_fields(self.txn_date, customer, self.default_term_id, self.terms)
                return self._create(client, draft, result, due)
            except errors.ReauthorizationRequired:
                raise
            except (CustomerProblem, PricingError, ValueError, errors.ServiceError) as exc:
                logger.error("client {client} failed: {error}", client=client.client_id, error=str(exc))
                return ClientResult.failed(client.client_id, name, Reason.ERROR, str(exc))

    def _history(
        self, client: ClientRecord, runs: list[ProcessRun], prices: PriceBook, warnings: list[str]
    ) -> tuple[list[LateUsage], list]:
        """Late usage of the closed months to carry forward, and the totals of the client's earlier
        invoices made by this system (most recent first, for the median hold rule). A month whose
        own run never finished ("pending") is not reopened but named in ``warnings``: its re-run
        heals it, and only then can its late usage be carried (nothing is billed twice meanwhile)."""
        ledger = self.services.ledger
        history = [self.period.minus(n) for n in range(1, max(HISTORY_MONTHS, len(self.late_months)) + 1)]
        heads = ledger.trace_heads(client.client_id, [month.label for month in history])
        totals = [
            Decimal(heads[month.label].total)
            for month in history  # most recent first
            if month.label in heads and heads[month.label].state == "invoiced"
        ]
        window = {month: heads[month.label] for month in self.late_months if month.label in heads}
        billed: frozenset[str] = frozenset()
        for month, head in window.items():
            if head.state in ("invoiced", "pending"):  # pending: its ids may be on an invoice already
                full = ledger.trace(client.client_id, month.label)
                billed |= billed_source_ids(full.usage_csv) if full else frozenset()
        warnings += [
            f"the {month.month_name} invoice run did not finish for this client; re-run it "
            f"(--period {month.label} --client {client.client_id}) so its late usage can be carried forward"
            for month, head in window.items()
            if head.state == "pending"
        ]
        months = reopened({month: head.state for month, head in window.items()})
        entries = {
            month: self.late_attribution[month].by_client.get(client.client_id, []) for month in months
        }
        return late_lines(months, runs, entries, billed, prices), totals

    def _already_invoiced(self, client: ClientRecord, name: str, invoice: Invoice) -> ClientResult:
        """The period's invoice with our marker is in QBO: skip the client without reading its usage."""
        result = ClientResult(client.client_id, name, Outcome.SKIPPED)
        result.skip(Reason.ALREADY_INVOICED, "already invoiced")
        result.invoice_id, result.doc_number = invoice.id, invoice.doc_number
        if not self.options.dry_run:
            self._record_existing(client, invoice, result)
        return result

    def _ledger_key(self, client: ClientRecord) -> str:
        return f"invoice#{client.client_id}#{self.period.label}"

    def _read_records(self, invoiced: list[ClientRecord]) -> None:
        """The ledger rows and traces of the clients already invoiced, read in batches of 100
        (``_record_existing`` checks each). Read at the start, they may be stale by the time a
        client is looked at, which costs nothing: the row only ever moves on to "created" and the
        trace to "invoiced", and what ``_record_existing`` writes is a conditional claim or a
        repeatable mark. If the batch read fails, each client reads its own (and fails alone)."""
        try:
            self._records = self.services.ledger.get_many(self._ledger_key(c) for c in invoiced)
            self._traces = self.services.ledger.period_traces(
                (c.client_id for c in invoiced), self.period.label
            )
        except errors.ServiceError as exc:
            logger.warning("ledger rows of invoiced clients not read in batches: {error}", error=str(exc))
            self._records, self._traces = None, None

    def _record_existing(self, client: ClientRecord, invoice: Invoice, result: ClientResult) -> None:
        """An invoice with our marker exists (perhaps created by a run that crashed before it
        recorded it): make the ledger say so, so nothing ever tries to create it again, and finish
        what that run left undone (its trace still "pending", its usage CSV not archived)."""
        key = self._ledger_key(client)
        entry = self.services.ledger.get(key) if self._records is None else self._records.get(key)
        if entry is None or entry.status != "created":
            acquired, entry = self.claims.take(key, request_id_for(key, "create"))
            if not acquired:
                return
            attributes = {"invoice_id": invoice.id, "doc_number": invoice.doc_number}
            self.claims.record(key, "created", attributes)
            entry = replace(entry, status="created", attributes={**entry.attributes, **attributes})
        trace = (
            self.services.ledger.trace(client.client_id, self.period.label, with_csv=False)
            if self._traces is None
            else self._traces.get(client.client_id)
        )
        if trace is not None and trace.state != "invoiced":
            self.services.ledger.mark_trace(
                client.client_id, self.period.label, "invoiced", invoice.id, invoice.doc_number
            )
        if entry.attributes.get("archived") is not True:
            self._archive_again(client, key, result)

    def _create(
        self, client: ClientRecord, draft: InvoiceDraft, result: ClientResult, due: dict
    ) -> ClientResult:
        qbo = self.services.qbo
        key = self._ledger_key(client)
        acquired, entry = self.claims.take(
            key,
            request_id_for(key, "create"),
            {"client_id": client.client_id, "period": self.period.label, "total": str(draft.total)},
        )
        if not acquired:
            status = entry.status if entry else "unknown"
            if status == "created":
                result.skip(Reason.ALREADY_INVOICED, "already invoiced")
                if (
                    entry is not None
                    and entry.attributes.get("archived") is not True
                    and not self.services.stop.requested
                ):
                    self._archive_again(client, key, result)
            else:  # a live run is still at it: this run cannot say the client is done
                result.outcome, result.code = Outcome.FAILED, Reason.CLAIMED_BY_ANOTHER_RUN
                result.reason = (
                    f"claimed by another run that is still working on it ({status}); the next run checks it"
                )
            if entry is not None:
                result.invoice_id = str(entry.attributes.get("invoice_id") or "")
                result.doc_number = str(entry.attributes.get("doc_number") or "")
            return result
        # A definite failure (a fault that created nothing) moved on to a new attempt, hence a new
        # requestid: QBO would replay the old error. An unknown outcome and a take-over of a dead
        # run's claim keep the attempt, and so the id (QBO answers with the original invoice).
        attempt = attempt_of(entry, "create")
        request_id = request_id_of(key, "create", entry)
        # What the invoice bills, recorded before it is created: which run and entry ids it holds (late
        # usage is never billed twice) and the usage CSV a later run archives if this one cannot.
        self.services.ledger.put_trace(
            UsageTrace(
                client.client_id, self.period.label, "pending", trace_csv(draft), total=str(draft.total)
            )
        )
        body = {**draft_to_qbo(draft), **due}
        if result.hold:
            body["EmailStatus"] = "NotSet"
            body["PrivateNote"] = held_note(body["PrivateNote"], result.hold)
        elif not draft.bill_email:
            body["EmailStatus"] = "NotSet"  # QBO refuses NeedToSend without BillEmail
            result.warnings.append("customer has no email address: invoice not queued for sending")
        try:
            invoice = qbo.create_invoice(body, request_id)
        except errors.DuplicateRequest:
            invoice = self._find_by_marker(client)
            if invoice is None:
                self.claims.record(key, "failed", {"reason": "QBO reported a duplicate request id"})
                raise
        except errors.ServiceError as exc:
            if is_definite_failure(exc):
                self.claims.record(key, "failed", {"reason": str(exc), "create_attempt": attempt + 1})
                raise
            if isinstance(exc, errors.ValidationFault):  # refused, but not in a way a new id cures
                self.claims.record(key, "failed", {"reason": str(exc)})
                raise
            # Outcome unknown (timeout, 5xx after retries): the next run looks for the marker and
            # re-sends the same requestid, which QBO answers with the original invoice.
            self.claims.record(key, "failed", {"reason": str(exc), "outcome": "unknown"})
            raise
        result.outcome, result.code, result.reason = Outcome.CREATED, Reason.NONE, ""
        result.invoice_id, result.doc_number = invoice.id, invoice.doc_number
        self.services.ledger.mark_trace(
            client.client_id, self.period.label, "invoiced", result.invoice_id, result.doc_number
        )
        archived = self._archive(result, trace_csv(draft))
        self.claims.record(
            key,
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

    def _find_by_marker(self, client: ClientRecord) -> Invoice | None:
        return next((inv for number, inv in self._our_invoices() if number == client.client_id), None)

    def _archive_again(self, client: ClientRecord, key: str, result: ClientResult) -> None:
        """Archive the usage detail recorded when the invoice was created (never data read again,
        so it always adds up to the invoice)."""
        trace = self.services.ledger.trace(client.client_id, self.period.label)
        if trace is None or not trace.usage_csv:
            result.warnings.append(
                "usage CSV not archived, and its detail was not recorded: export it by hand"
            )
            return
        if self._archive(result, trace.usage_csv):
            self.services.ledger.annotate(key, "created", {"archived": True})
            result.warnings.append("usage CSV archived now (an earlier run could not)")

    def _archive(self, result: ClientResult, usage_csv: str) -> bool:
        """Upload the usage trace CSV to SharePoint; a failure is reported, never hides the invoice."""
        parts = [self.period.label, safe_path_segment(result.customer_name)]
        parts.append(f"usage-{result.client_id}-{self.period.label}.csv")
        try:
            self.services.archive(parts, usage_csv.encode("utf-8-sig"))
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
            stopped=self.services.stop.reason if self.services.stop.requested else "",
        )
        failed = any(r.outcome is Outcome.FAILED for r in results)
        # A repeat run of the 4th-10th that created, held and failed nothing mails nobody (DESIGN §1).
        news = (
            failed
            or self.services.stop.requested
            or any(r.outcome is Outcome.CREATED or r.warnings for r in results)
        )
        if self.options.dry_run:
            print(summary.dry_run_listing(results))
        elif news:
            csv = Attachment(f"invoices-{self.period.label}.csv", "text/csv", report.csv.encode("utf-8-sig"))
            mailed = self.services.mail_bookkeeper(report.subject, report.html, report.text, [csv])
            failed = failed or not mailed
        else:
            logger.info("nothing new for {period}: no mail", period=self.period.label)
        return JobOutcome(
            exit_code=EXIT_PARTIAL if failed else EXIT_OK,
            summary={
                **report.as_dict(),
                **self.services.token_expiry_report(publish_metric=not self.options.dry_run),
                "throttling": self.services.throttling(),
            },
            table=report.table,
        )
