"""What a create run decided for each client: plain data shared by the job and its summary."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from create_invoices.billing import InvoiceDraft
from create_invoices.late_usage import LateUsage
from integrations.models import ProcessRun


class Outcome(StrEnum):
    CREATED = "created"
    WOULD_CREATE = "would_create"  # dry run
    SKIPPED = "skipped"
    FAILED = "failed"


class Reason(StrEnum):
    """Why a client was skipped or failed, as a code; ``ClientResult.reason`` says it to a person."""

    NONE = ""
    INVALID_REGISTRY_ITEM = "invalid_registry_item"
    NOT_IN_REGISTRY = "not_in_registry"
    INACTIVE = "inactive"
    EXCLUDED = "excluded"
    NOTHING_TO_BILL = "nothing_to_bill"
    ALREADY_INVOICED = "already_invoiced"
    CLAIMED_BY_ANOTHER_RUN = "claimed_by_another_run"
    DRY_RUN = "dry_run"
    STOPPED = "stopped"  # the run was told to stop (SIGTERM) before it finished this client
    ERROR = "error"  # the client's data or a service call failed; ``reason`` says which


@dataclass
class ClientResult:
    client_id: str
    customer_name: str
    outcome: Outcome
    reason: str = ""
    code: Reason = Reason.NONE
    draft: InvoiceDraft | None = None
    invoice_id: str = ""
    doc_number: str = ""
    warnings: list[str] = field(default_factory=list)
    unfinished: list[ProcessRun] = field(default_factory=list)  # runs of the period still running
    late: list[LateUsage] = field(default_factory=list)  # carried forward from closed months
    hold: list[str] = field(default_factory=list)  # why the invoice is held (empty: queued to send)

    def skip(self, code: Reason, reason: str) -> ClientResult:
        self.outcome, self.code, self.reason = Outcome.SKIPPED, code, reason
        return self

    @classmethod
    def failed(cls, client_id: str, name: str, code: Reason, reason: str) -> ClientResult:
        return cls(client_id, name, Outcome.FAILED, reason, code)

    def finished(self) -> ClientResult:
        """Keep only what the run's summary needs once the client is done: its lines and totals, not
        the run and entry records behind them (its usage CSV and ledger trace hold those), so a
        run's memory does not grow with every client's usage."""
        if self.draft is not None:
            self.draft = self.draft.without_trace()
        self.late = [usage.without_records() for usage in self.late]
        return self

    @property
    def made(self) -> bool:
        """An invoice was created, or would be in a dry run."""
        return self.outcome in (Outcome.CREATED, Outcome.WOULD_CREATE)
