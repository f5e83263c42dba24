"""Rendering of the bookkeeper's summary mails: one HTML and one plain-text form of the same
sections, so both jobs' mails look alike. Pure: takes rows, returns strings."""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal

_TABLE = 'style="border-collapse:collapse;font-family:Arial,sans-serif;font-size:13px"'
_CELL = 'style="border:1px solid #ccc;padding:4px 8px;text-align:{align}"'


@dataclass
class Section:
    """A titled block of a summary: a table (columns + rows) and/or bullet lines."""

    title: str
    columns: Sequence[str] = ()
    rows: Sequence[Sequence[object]] = ()
    lines: Sequence[str] = ()
    note: str = ""
    numeric: set[str] = field(default_factory=set)  # column names aligned right


def stopped_sections(reason: str) -> list[Section]:
    """The first section of a run's mail when it was told to stop before it finished."""
    if not reason:
        return []
    return [
        Section(
            "Stopped early",
            lines=[
                f"The run received {reason} and stopped before it finished: what it did not finish is "
                "listed below as failed ('stopped early'). The next scheduled run finishes it; nothing "
                "is billed or sent twice. To finish now, run the job again."
            ],
        )
    ]


def money(amount: Decimal) -> str:
    return f"${amount:,.2f}"


def render_html(heading: str, intro: str, sections: Sequence[Section]) -> str:
    out = [f"<html><body><h2>{html.escape(heading)}</h2><p>{html.escape(intro)}</p>"]
    out += [section_html(section) for section in sections]
    out.append("</body></html>")
    return "".join(out)


def section_html(section: Section) -> str:
    """One section as HTML (also used to put a notice at the top of an already rendered mail)."""
    out = [f"<h3>{html.escape(section.title)}</h3>"]
    if section.note:
        out.append(f"<p>{html.escape(section.note)}</p>")
    if section.columns and section.rows:
        out.append(f"<table {_TABLE}><tr>")
        for column in section.columns:
            out.append(f"<th {_CELL.format(align='left')}>{html.escape(column)}</th>")
        out.append("</tr>")
        for row in section.rows:
            out.append("<tr>")
            for column, value in zip(section.columns, row, strict=True):
                align = "right" if column in section.numeric else "left"
                out.append(f"<td {_CELL.format(align=align)}>{html.escape(str(value))}</td>")
            out.append("</tr>")
        out.append("</table>")
    if section.lines:
        out.append("<ul>" + "".join(f"<li>{html.escape(line)}</li>" for line in section.lines) + "</ul>")
    if not section.rows and not section.lines:
        out.append("<p><em>none</em></p>")
    return "".join(out)


def render_text(heading: str, intro: str, sections: Sequence[Section]) -> str:
    out = [heading, "=" * len(heading), intro, ""]
    for section in sections:
        out += [section.title, "-" * len(section.title)]
        if section.note:
            out.append(section.note)
        if section.columns and section.rows:
            cells = [[str(v) for v in row] for row in section.rows]
            widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(section.columns)]
            out.append("  ".join(c.ljust(w) for c, w in zip(section.columns, widths, strict=True)))
            for row in cells:
                out.append(
                    "  ".join(
                        v.rjust(w) if c in section.numeric else v.ljust(w)
                        for v, w, c in zip(row, widths, section.columns, strict=True)
                    )
                )
        out += [f"- {line}" for line in section.lines]
        if not section.rows and not section.lines:
            out.append("none")
        out.append("")
    return "\n".join(out)


def safe_path_segment(name: str) -> str:
    """A SharePoint folder/file name: characters SharePoint rejects become '-', spacing kept."""
    cleaned = "".join("-" if ch in '"*:<>?/\\|#%' or ord(ch) < 32 else ch for ch in name).strip(" .")
    return cleaned or "unnamed"
