"""A small but valid PDF, written by hand (no dependency): enough for an invoice attachment that
opens in any viewer and whose text (invoice number, total) tests can find in the bytes."""

from __future__ import annotations

_PAGE_LINES = 46


def _escape(text: str) -> bytes:
    raw = text.encode("cp1252", "replace")
    return raw.replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)")


def _page_stream(title: str, lines: list[tuple[str, bool]], page: int, pages: int) -> bytes:
    parts = [b"BT", b"/F2 18 Tf", b"50 742 Td", b"(" + _escape(title) + b") Tj", b"ET"]
    y = 710
    for text, bold in lines:
        font = b"/F2" if bold else b"/F1"
        parts += [b"BT", font + b" 10 Tf", f"50 {y} Td".encode(), b"(" + _escape(text) + b") Tj", b"ET"]
        y -= 14
    parts += [b"BT", b"/F1 8 Tf", b"50 30 Td", b"(" + _escape(f"Page {page} of {pages}") + b") Tj", b"ET"]
    return b"\n".join(parts)


def render(title: str, lines: list[tuple[str, bool]]) -> bytes:
    """A PDF with ``title`` on top of each page and ``lines`` (text, bold) below it."""
    chunks = [lines[i : i + _PAGE_LINES] for i in range(0, max(len(lines), 1), _PAGE_LINES)] or [[]]
    objects: list[bytes] = []
    page_count = len(chunks)
    # 1 catalog, 2 pages, 3 regular font, 4 bold font, 5 info, then (page, content) pairs.
    kids = " ".join(f"{6 + 2 * i} 0 R" for i in range(page_count))
    objects.append(b"<< /Type /Catalog /Pages 2 0 R >>")
    objects.append(f"<< /Type /Pages /Kids [{kids}] /Count {page_count} >>".encode())
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>")
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica-Bold /Encoding /WinAnsiEncoding >>")
    objects.append(b"<< /Title (" + _escape(title) + b") /Producer (QBO Invoice Processor sandbox) >>")
    for index, chunk in enumerate(chunks):
        content = _page_stream(title, chunk, index + 1, page_count)
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
            f"/Resources << /Font << /F1 3 0 R /F2 4 0 R >> >> /Contents {7 + 2 * index} 0 R >>".encode()
        )
        objects.append(f"<< /Length {len(content)} >>\nstream\n".encode() + content + b"\nendstream")
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{offset:010d} 00000 n \n".encode() for offset in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R /Info 5 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)
