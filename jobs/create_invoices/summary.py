"""The bookkeeper's summary of a create run: mail (HTML + text), the run's CSV, the CLI table and
the dry-run listing. Pure: takes the run's results, returns strings and dicts."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from create_invoices.attribution import Attribution
from create_invoices.billing import hours
from create_invoices.period import Period
from integrations.models import ProcessRun, TimeEntry
from integrations.report import Section, money, render_html, render_text

if TYPE_CHECKING:
    from create_invoices.job import ClientResult

REVIEW_NOTE = (
    "The new invoices are marked 'send later' in QuickBooks and go out with the next daily send "
    "(05:00 Pacific). To hold one back for review, clear 'send later' on it in QuickBooks before then."
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
) -> Report:
    made = [r for r in results if r.outcome in ("created", "would_create")]
    skipped = [r for r in results if r.outcome == "skipped"]
    failed = [r for r in results if r.outcome == "failed"]
    total = sum((r.draft.total for r in made if r.draft), Decimal("0"))
    title_word = "Would create" if dry_run else "Created"
    sections = [
        Section(
            f"{title_word} invoices ({len(made)})",
            ("Customer", "Invoice", "Lines", "Hours", "Amount"),
            [
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
            + (
                [("Total", "", "", sum((_hours(r) for r in made), Decimal("0")), money(total))]
                if made
                else []
            ),
            numeric={"Lines", "Hours", "Amount"},
            note="" if dry_run else REVIEW_NOTE if made else "",
        ),
        Section(
            f"Skipped ({len(skipped)})",
            ("Customer", "Reason", "Invoice"),
            [(r.customer_name, r.reason, r.doc_number or r.invoice_id or "") for r in skipped],
        ),
        Section(
            f"Failed ({len(failed)})", ("Customer", "Reason"), [(r.customer_name, r.reason) for r in failed]
        ),
    ]
    warnings = [f"{r.customer_name}: {w}" for r in results for w in r.warnings]
    if warnings:
        sections.append(Section(f"Warnings ({len(warnings)})", lines=warnings))
    unattributed = attribution.unattributed if attribution else []
    sections.append(
        Section(
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
            note="Billable time no client could be matched to. Not billed: add the location to a client in the registry "
            "or rename it with the client number, then re-run."
            if unattributed
            else "",
        )
    )
    running = attribution.running if attribution else []
    if running:
        sections.append(
            Section(
                f"ClickUp timers still running ({len(running)})",
                ("User", "Task", "Started (UTC)", "Entry id"),
                [
                    (e.user_name, e.task_name or "-", e.start.strftime("%Y-%m-%d %H:%M"), e.id)
                    for e in running
                ],
                note="Not billed this time.",
            )
        )
    sections.append(
        Section(
            f"Robot runs not finished ({len(unfinished)})",
            ("Workspace", "Process", "Run id", "State", "Started (UTC)"),
            [
                (
                    run.workspace_id,
                    run.process_name,
                    run.id,
                    run.state,
                    run.started_at.strftime("%Y-%m-%d %H:%M") if run.started_at else "-",
                )
                for run in unfinished
            ],
            note=("Still running when the job ran: not billed. " if unfinished else "") + ENDED_RUNS_NOTE,
        )
    )
    counts = {
        "created": sum(r.outcome == "created" for r in results),
        "would_create": sum(r.outcome == "would_create" for r in results),
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
    if failed:
        subject += f", {len(failed)} FAILED"
    return Report(
        subject=subject,
        html=render_html(heading, intro, sections),
        text=render_text(heading, intro, sections),
        csv=lines_csv(results),
        table=[
            {
                "client": r.client_id,
                "customer": r.customer_name,
                "outcome": r.outcome,
                "invoice": r.doc_number or r.invoice_id,
                "lines": str(len(r.draft.lines)) if r.draft else "",
                "hours": str(_hours(r)) if r.draft else "",
                "amount": str(r.draft.total) if r.draft else "",
                "reason": "; ".join(part for part in (r.reason, *r.warnings) if part),
            }
            for r in results
        ],
        counts=counts,
        total=total,
        period=period.label,
    )


def lines_csv(results: Sequence[ClientResult]) -> str:
    """Every line of every invoice the run created (or would create), one row each."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(
        ["client", "customer", "invoice", "line", "description", "qty", "unit_price", "amount", "hours"]
    )
    for r in results:
        if r.draft is None or r.outcome not in ("created", "would_create"):
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
        if r.draft is None or r.outcome not in ("would_create", "skipped", "created"):
            continue
        flag = "" if r.outcome == "would_create" else f"  [{r.reason}]"
        out.append(f"{r.customer_name} ({r.client_id}){flag}")
        for line in r.draft.lines:
            out.append(f"    {line.description:<60} {line.qty:>8} x {line.unit_price:>8} = {line.amount:>10}")
        out.append(f"    {'total':<60} {'':>8}   {'':>8}   {r.draft.total:>10}")
        if r.outcome == "would_create":
            grand += r.draft.total
    out.append(f"Total to invoice: {money(grand)}")
    return "\n".join(out)
