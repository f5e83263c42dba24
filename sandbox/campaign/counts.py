"""What the campaign counts, per scenario and summed per family."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

# The six counts of the last line (DESIGN §2 "make faults"), then the two shown separately.
COUNTED = ("duplicates", "double_mails", "lost", "lost_tokens", "leaks", "unrecovered")


@dataclass
class Counts:
    duplicates: int = 0  # invoices beyond the first with one marker
    double_mails: int = 0  # customer mails beyond the first for one invoice
    lost: int = 0  # clients with billable usage and no (or a wrong) invoice after the re-run
    lost_tokens: int = 0  # stored refresh token unusable without an honest exit 2
    leaks: int = 0  # (file, secret) pairs where a secret value appears in an output
    unrecovered: int = 0  # invoice, delivery, archive or graceful stop not done after one re-run
    reauth: int = 0  # stored token unusable, and the run said so with exit 2 (not a fault)
    person: int = 0  # needs_review after a mail call was really attempted (not a fault)

    def add(self, other: Counts) -> None:
        for item in fields(self):
            setattr(self, item.name, getattr(self, item.name) + getattr(other, item.name))

    def faulty(self) -> bool:
        return any(getattr(self, name) for name in COUNTED)


@dataclass
class Outcome:
    """One scenario's result: its counts and, for each count, what happened (for the report)."""

    family: str
    name: str
    counts: Counts = field(default_factory=Counts)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # facts worth showing that are not faults
    files_scanned: int = 0
    seconds: float = 0.0

    def problem(self, count: str | None, text: str, amount: int = 1) -> None:
        """Record a problem; ``count`` names the counter it adds to (None: shown only)."""
        if count is not None:
            setattr(self.counts, count, getattr(self.counts, count) + amount)
        self.problems.append(f"{self.name}: {text}")

    def as_dict(self) -> dict:
        return asdict(self)
