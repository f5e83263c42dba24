"""Late usage: billable time and ended robot runs of an already-closed month that no invoice holds
yet, carried forward onto the client's next monthly invoice as their own lines (DESIGN §1 step 4,
§7 Late usage). Pure: the job reads the ledger traces and the services and passes plain data in.

Which months reopen: only those this system closed, i.e. with a recorded trace (an invoice it
created, or "nothing to bill"). A month billed before the system or by hand has no trace and never
reopens: its usage may be on an invoice we cannot see, and billing it again would bill it twice.
What is already billed: every run and time-entry id on any recorded trace of the client in the
look-back window (ids are unique per service), so a late item lands on exactly one invoice.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from create_invoices.billing import PriceBook, PricedLines, RuntimeUsage, aggregate_runtime, usage_lines
from create_invoices.period import Period
from integrations.models import ProcessRun, TimeEntry

REOPENABLE_STATES = frozenset({"invoiced", "nothing"})  # "pending": the month's own run is unfinished


@dataclass(frozen=True)
class LateUsage:
    """The not-yet-billed usage of one reopened month and the lines it bills."""

    month: Period
    runtime: RuntimeUsage
    entries: tuple[TimeEntry, ...]
    priced: PricedLines

    def without_records(self) -> LateUsage:
        """Only the lines it bills, without their runs and entries (see ``InvoiceDraft.without_trace``)."""
        lines = [replace(line, trace=()) for line in self.priced.lines]
        return replace(
            self, runtime=RuntimeUsage([], [], self.month), entries=(), priced=PricedLines(lines, [])
        )


def look_back(period: Period, months: int) -> list[Period]:
    """The closed months before ``period`` whose late usage it may carry, most recent first."""
    return [period.minus(n) for n in range(1, months + 1)]


def reopened(states: Mapping[Period, str]) -> list[Period]:
    """Months (of ``look_back``) that this system closed, oldest first."""
    return sorted(month for month, state in states.items() if state in REOPENABLE_STATES)


def unbilled(
    month: Period, runs: Iterable[ProcessRun], entries: Iterable[TimeEntry], billed: frozenset[str]
) -> tuple[RuntimeUsage, tuple[TimeEntry, ...]]:
    """The ended runs that started in ``month`` and its billable entries that no invoice holds."""
    runtime = aggregate_runtime(runs, month)
    processes = [
        replace(process, runs=tuple(run for run in process.runs if run.id not in billed))
        for process in runtime.processes
    ]
    kept = [process for process in processes if process.runs]
    fresh = tuple(entry for entry in entries if entry.id not in billed)
    return replace(runtime, processes=kept, unfinished=[]), fresh


def late_lines(
    months: Sequence[Period],
    runs: Sequence[ProcessRun],
    entries_by_month: Mapping[Period, Sequence[TimeEntry]],
    billed: frozenset[str],
    prices: PriceBook,
) -> list[LateUsage]:
    """For each reopened month, its unbilled usage priced as "Late time from October 2026: ..." lines."""
    found = []
    for month in months:
        runtime, fresh = unbilled(month, runs, entries_by_month.get(month, ()), billed)
        if not runtime.processes and not fresh:
            continue
        priced = usage_lines(runtime, fresh, prices, title_prefix=f"Late time from {month.month_name}: ")
        found.append(LateUsage(month, runtime, fresh, priced))
    return found
