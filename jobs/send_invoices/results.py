"""What a send run did with each waiting invoice: plain data shared by the job and its summary."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum


class Outcome(StrEnum):
    SENT = "sent"
    WOULD_SEND = "would_send"  # dry run
    SKIPPED = "skipped"
    FAILED = "failed"
    NEEDS_REVIEW = "needs_review"  # the mail may have gone out: a person decides


class Reason(StrEnum):
    """Why an invoice was not (or not simply) sent, as a code; ``Delivery.reason`` says it to a person."""

    NONE = ""
    EXCLUDED = "excluded"
    NO_BILL_EMAIL = "no_bill_email"
    DRY_RUN = "dry_run"
    ALREADY_SENT = "already_sent"  # an earlier run delivered it (its QBO status may be fixed now)
    CLAIMED_BY_ANOTHER_RUN = "claimed_by_another_run"
    OUTCOME_UNKNOWN = "outcome_unknown"
    STOPPED = "stopped"  # the run was told to stop (SIGTERM) before it finished this invoice
    ERROR = "error"


# Reasons that are configuration, not news: they alone do not make a bookkeeper mail worth sending.
QUIET_REASONS = frozenset({Reason.EXCLUDED, Reason.DRY_RUN})


@dataclass
class Delivery:
    invoice_id: str
    doc_number: str
    customer: str
    amount: Decimal
    outcome: Outcome
    reason: str = ""
    code: Reason = Reason.NONE
    to: str = ""
    warning: str = ""

    def skip(self, code: Reason, reason: str) -> Delivery:
        self.outcome, self.code, self.reason = Outcome.SKIPPED, code, reason
        return self

    def set(self, outcome: Outcome, code: Reason, reason: str) -> Delivery:
        self.outcome, self.code, self.reason = outcome, code, reason
        return self
