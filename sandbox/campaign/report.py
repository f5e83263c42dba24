"""The campaign's report: a row per family, examples of what went wrong, the last line, JSON."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from sandbox.campaign.counts import COUNTED, Counts, Outcome

HEADER = ("family", "scenarios", "D", "M", "L", "T", "X", "U", "re-auth needed", "needs a person", "seconds")
EXAMPLES = 4


def summarise(outcomes: list[Outcome], families: tuple[str, ...], seconds: float) -> dict[str, Any]:
    rows, total = [], Counts()
    for family in families:
        members = [o for o in outcomes if o.family == family]
        if not members:
            continue
        counts = Counts()
        for outcome in members:
            counts.add(outcome.counts)
        total.add(counts)
        problems = [p for o in members for p in o.problems]
        rows.append(
            {
                "family": family,
                "scenarios": len(members),
                **asdict(counts),
                "seconds": round(sum(o.seconds for o in members), 1),
                "files_scanned": sum(o.files_scanned for o in members),
                "problems": len(problems),
                "examples": problems[:EXAMPLES],
            }
        )
    return {
        "scenarios": len(outcomes),
        "totals": asdict(total),
        "passed": not total.faulty(),
        "seconds": round(seconds, 1),
        "families": rows,
        "outcomes": [o.as_dict() for o in outcomes],
    }


def last_line(report: dict[str, Any]) -> str:
    t = report["totals"]
    return (
        f"faults: {report['scenarios']} scenarios, {t['duplicates']} duplicate invoices, "
        f"{t['double_mails']} double mails, {t['lost']} lost invoices, {t['lost_tokens']} lost tokens, "
        f"{t['leaks']} leaked secrets, {t['unrecovered']} unrecovered"
    )


def render(report: dict[str, Any]) -> str:
    table = [HEADER]
    for row in report["families"]:
        table.append(
            (
                row["family"],
                str(row["scenarios"]),
                *(str(row[name]) for name in COUNTED),
                str(row["reauth"]),
                str(row["person"]),
                f"{row['seconds']:.0f}",
            )
        )
    widths = [max(len(line[i]) for line in table) for i in range(len(HEADER))]
    lines = [
        "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(line, widths, strict=True))
        )
        for line in table
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    scanned = sum(row["files_scanned"] for row in report["families"])
    lines.append(
        f"(D duplicate invoices, M double mails, L lost invoices, T lost tokens, X leaked secrets, "
        f"U unrecovered; {scanned} output files scanned for secrets; {report['seconds']:.0f} s in all)"
    )
    for row in report["families"]:
        if row["examples"]:
            lines.append(f"\n{row['family']}: {row['problems']} problem(s), for example")
            lines += [f"  - {example}" for example in row["examples"]]
    lines.append("")
    lines.append(last_line(report))
    return "\n".join(lines)
