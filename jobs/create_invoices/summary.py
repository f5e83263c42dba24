"""The bookkeeper's summary of a create run: mail (HTML + text), the run's CSV, the CLI table and
the dry-run listing. Pure: takes the run's results, returns strings and dicts."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from create_invoices.attribution import Attribution
from create_invoices.billing import hours
from create_invoices.period import Period
from create_invoices.results import ClientResult, Outcome
from integrations.models import ProcessRun, TimeEntry
from integrations.report import Section, money, render_html, render_text, stopped_sections

REVIEW_NOTE = (
    "The new invoices are marked 'send later' in QuickBooks and go out with the next daily send run. "
    "To hold one back for review, clear 'send later' on it in QuickBooks before then."
)
UNFINISHED_NOTE = (
    "Still running when the job ran: not billed now; once ended, carried forward to the next invoice."
)
UNATTRIBUTED_NOTE = (
    "Billable time no client could be matched to. Not billed: add the location to a client in the "
    "registry or rename it with the client number, then re-run."
)


@dataclass
class Report:
    subject: str
    html: str
    text: str
    csv: str
    table: list[dict[str, str]]
    counts: dict[str, int]
    total: Decimal
    period: str

    def as_dict(self) -> dict[str, Any]:
        return {"period": self.period, "counts": self.counts, "total": str(self.total)}


def _hours(result: ClientResult) -> Decimal:
    return sum((line.hours for line in result.draft.lines), Decimal("0")) if result.draft else Decimal("0")


def _entry_hours(entry: TimeEntry) -> Decimal:
    return hours(Decimal(max(entry.duration_ms, 0)) / 1000)


def _location(entry: TimeEntry) -> str:
    return " / ".join(n for n in (entry.space_name, entry.folder_name, entry.list_name) if n) or "-"


HOLD_NOTE = (
    "These invoices are in QuickBooks but NOT queued for sending. Check each one; to send it, run "
    "the create job with --release <invoice number>, or tick 'send later' on it in QuickBooks."
)
LATE_NOTE = "Usage of an already-invoiced month that was not on its invoice: billed now, as its own lines."


def _held_section(made: Sequence[ClientResult], dry_run: bool) -> list[Section]:
    """Held invoices, listed first in the mail with the reason (DESIGN §1 step 4)."""
    held = [r for r in made if r.hold and r.draft]
    if not held:
        return []
    return [
        Section(
            f"{'Would hold' if dry_run else 'Held for review'} ({len(held)})",
            ("Customer", "Invoice", "Amount", "Reason"),
            [
                (
                    r.customer_name,
                    r.doc_number or r.invoice_id or "-",
                    money(r.draft.total),
                    "; ".join(r.hold),
                )
                for r in held
                if r.draft
            ],
            numeric={"Amount"},
            note=HOLD_NOTE,
        )
    ]


def _late_section(made: Sequence[ClientResult]) -> list[Section]:
    """What was carried forward from closed months, line by line."""
    rows = [
        (
            r.customer_name,
            r.doc_number or r.invoice_id or "-",
            line.description,
            line.hours,
            money(line.amount),
        )
        for r in made
        for usage in r.late
        for line in usage.priced.lines
    ]
    if not rows:
        return []
    return [
        Section(
            f"Late time carried forward ({len(rows)})",
            ("Customer", "Invoice", "Line", "Hours", "Amount"),
            rows,
            numeric={"Hours", "Amount"},
            note=LATE_NOTE,
        )
    ]


def _running_section(results: Sequence[ClientResult], attribution: Attribution | None) -> list[Section]:
    """Billable ClickUp timers still running, with the client they belong to and who runs them."""
    running = attribution.running if attribution else []
    if not running:
        return []
    names = {r.client_id: r.customer_name for r in results}
    owners = attribution.running_owner if attribution else {}

    def client(entry: TimeEntry) -> str:
        owner = owners.get(entry.id)
        return names.get(owner, owner) if owner else "unattributed"

    return [
        Section(
            f"ClickUp timers still running ({len(running)})",
            ("Customer", "Member", "Task", "Started (UTC)", "Entry id"),
            [
                (client(e), e.user_name, e.task_name or "-", e.start.strftime("%Y-%m-%d %H:%M"), e.id)
                for e in running
            ],
            note="Not billed this time: once stopped, the time is carried forward to the next invoice.",
        )
    ]


# Robocorp may turn an "unresolved" run into "completed" later, with another end time (issue 11.14).
ENDED_RUNS_NOTE = (
    "Ended runs (completed, failed or unresolved) are billed as Robocorp reported them when this job "
    "ran; a run Robocorp resolves later with another end time is not billed again."
)


def build(
    period: Period,
    results: Sequence[ClientResult],
    attribution: Attribution | None,
    unfinished: Sequence[ProcessRun],
    *,
    dry_run: bool = False,
    stopped: str = "",
) -> Report:
    made = [r for r in results if r.made and r.draft]
    held = [r for r in made if r.hold]
    skipped = [r for r in results if r.outcome is Outcome.SKIPPED]
    failed = [r for r in results if r.outcome is Outcome.FAILED]
    total = sum((r.draft.total for r in made if r.draft), Decimal("0"))
    unattributed = attribution.unattributed if attribution else []
    sections = [
        *stopped_sections(stopped),
        *_held_section(made, dry_run),
        _made_section(made, total, dry_run),
        Section(
            f"Skipped ({len(skipped)})",
            ("Customer", "Reason", "Invoice"),
            [(r.customer_name, r.reason, r.doc_number or r.invoice_id or "") for r in skipped],
        ),
        Section(
            f"Failed ({len(failed)})", ("Customer", "Reason"), [(r.customer_name, r.reason) for r in failed]
        ),
        *_late_section(made),
        *_warnings_section(results),
        _unattributed_section(unattributed),
        *_running_section(results, attribution),
        _unfinished_section(results, unfinished),
    ]
    counts = {
        "created": sum(r.outcome is Outcome.CREATED for r in results),
        "would_create": sum(r.outcome is Outcome.WOULD_CREATE for r in results),
        "held": len(held),
        "skipped": len(skipped),
        "failed": len(failed),
        "unattributed_entries": len(unattributed),
        "unfinished_runs": len(unfinished),
    }
    heading = f"Invoices for {period.label}" + (" (dry run)" if dry_run else "")
    intro = (
        f"{counts['created'] or counts['would_create']} invoice(s) totalling {money(total)}; "
        f"{len(skipped)} skipped; {len(failed)} failed."
    )
    subject = (
        f"[QBO invoices] {period.label}: {len(made)} {'to create' if dry_run else 'created'}, {money(total)}"
    )
    if held:
        subject += f", {len(held)} HELD"
    if failed:
        subject += f", {len(failed)} FAILED"
    if stopped:
        subject = subject.replace("[QBO invoices]", "[QBO invoices] STOPPED EARLY:", 1)
    return Report(
        subject=subject,
        html=render_html(heading, intro, sections),
        text=render_text(heading, intro, sections),
        csv=lines_csv(results),
        table=[_table_row(r) for r in results],
        counts=counts,
        total=total,
        period=period.label,
    )


def _made_section(made: Sequence[ClientResult], total: Decimal, dry_run: bool) -> Section:
    rows: list[tuple[object, ...]] = [
        (
            r.customer_name,
            r.doc_number or r.invoice_id or "-",
            len(r.draft.lines),
            _hours(r),
            money(r.draft.total),
        )
        for r in made
        if r.draft
    ]
    if made:
        rows.append(("Total", "", "", sum((_hours(r) for r in made), Decimal("0")), money(total)))
    return Section(
        f"{'Would create' if dry_run else 'Created'} invoices ({len(made)})",
        ("Customer", "Invoice", "Lines", "Hours", "Amount"),
        rows,
        numeric={"Lines", "Hours", "Amount"},
        note=REVIEW_NOTE if made and not dry_run else "",
    )


def _warnings_section(results: Sequence[ClientResult]) -> list[Section]:
    warnings = [f"{r.customer_name}: {w}" for r in results for w in r.warnings]
    return [Section(f"Warnings ({len(warnings)})", lines=warnings)] if warnings else []


def _unattributed_section(unattributed: Sequence[TimeEntry]) -> Section:
    return Section(
        f"Unattributed billable ClickUp time ({len(unattributed)})",
        ("User", "Task", "Location", "Started (UTC)", "Hours", "Entry id"),
        [
            (
                e.user_name,
                e.task_name or e.description or "-",
                _location(e),
                e.start.strftime("%Y-%m-%d %H:%M"),
                _entry_hours(e),
                e.id,
            )
            for e in unattributed
        ],
        numeric={"Hours"},
        note=UNATTRIBUTED_NOTE if unattributed else "",
    )


def _unfinished_section(results: Sequence[ClientResult], unfinished: Sequence[ProcessRun]) -> Section:
    client_of = {run.id: r.customer_name for r in results for run in r.unfinished}
    return Section(
        f"Robot runs not finished ({len(unfinished)})",
        ("Customer", "Process", "Run id", "State", "Started (UTC)"),
        [
            (
                client_of.get(run.id, run.workspace_id),
                run.process_name,
                run.id,
                run.state,
                run.started_at.strftime("%Y-%m-%d %H:%M") if run.started_at else "-",
            )
            for run in unfinished
        ],
        note=(f"{UNFINISHED_NOTE} " if unfinished else "") + ENDED_RUNS_NOTE,
    )


def _table_row(r: ClientResult) -> dict[str, str]:
    holds = [f"held: {h}" for h in r.hold] if r.made else []
    return {
        "client": r.client_id,
        "customer": r.customer_name,
        "outcome": str(r.outcome),
        "invoice": r.doc_number or r.invoice_id,
        "lines": str(len(r.draft.lines)) if r.draft else "",
        "hours": str(_hours(r)) if r.draft else "",
        "amount": str(r.draft.total) if r.draft else "",
        "reason": "; ".join(part for part in (r.reason, *holds, *r.warnings) if part),
    }


def lines_csv(results: Sequence[ClientResult]) -> str:
    """Every line of every invoice the run created (or would create), one row each."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(
        ["client", "customer", "invoice", "line", "description", "qty", "unit_price", "amount", "hours"]
    )
    for r in results:
        if r.draft is None or not r.made:
            continue
        for number, line in enumerate(r.draft.lines, start=1):
            writer.writerow(
                [
                    r.client_id,
                    r.customer_name,
                    r.doc_number or r.invoice_id,
                    number,
                    line.description,
                    line.qty,
                    line.unit_price,
                    line.amount,
                    line.hours,
                ]
            )
    return out.getvalue()


def dry_run_listing(results: Sequence[ClientResult]) -> str:
    """What a dry run prints: each invoice line by line with its total."""
    out: list[str] = []
    grand = Decimal("0")
    for r in results:
        if r.draft is None or r.outcome is Outcome.FAILED:
            continue
        flag = "" if r.outcome is Outcome.WOULD_CREATE else f"  [{r.reason}]"
        flag += f"  [HOLD: {'; '.join(r.hold)}]" if r.hold else ""
        out.append(f"{r.customer_name} ({r.client_id}){flag}")
        for line in r.draft.lines:
            out.append(f"    {line.description:<60} {line.qty:>8} x {line.unit_price:>8} = {line.amount:>10}")
        out.append(f"    {'total':<60} {'':>8}   {'':>8}   {r.draft.total:>10}")
        if r.outcome is Outcome.WOULD_CREATE:
            grand += r.draft.total
    out.append(f"Total to invoice: {money(grand)}")
    return "\n".join(out)
