"""Sent mail as real RFC 822 files (``mail/*.eml``), written by the Graph and QBO stand-ins."""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Any

from sandbox.store import write_atomic


def build_message(
    *,
    sender: str,
    to: Sequence[str],
    subject: str,
    html: str | None = None,
    text: str | None = None,
    cc: Sequence[str] = (),
    bcc: Sequence[str] = (),
    reply_to: Sequence[str] = (),
    attachments: Sequence[tuple[str, str, bytes]] = (),
    via: str,
) -> EmailMessage:
    """An EmailMessage as the receiving mailbox would see it (Bcc kept so tests can see it)."""
    message = EmailMessage()
    message["From"] = sender
    if to:
        message["To"] = ", ".join(to)
    if cc:
        message["Cc"] = ", ".join(cc)
    if bcc:
        message["Bcc"] = ", ".join(bcc)
    if reply_to:
        message["Reply-To"] = ", ".join(reply_to)
    message["Subject"] = subject
    message["Date"] = format_datetime(datetime.now(UTC))
    message["Message-ID"] = make_msgid(domain="sandbox.local")
    message["X-Sandbox-Via"] = via
    if text is not None:
        message.set_content(text)
    if html is not None:
        if text is not None:
            message.add_alternative(html, subtype="html")
        else:
            message.set_content(html, subtype="html")
    if text is None and html is None:
        message.set_content("")
    for name, content_type, content in attachments:
        maintype, _, subtype = (content_type or "application/octet-stream").partition("/")
        message.add_attachment(content, maintype=maintype, subtype=subtype or "octet-stream", filename=name)
    return message


def _slug(text: str) -> str:
    return (re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-")[:50] or "mail").lower()


def write_eml(mail_dir: Path, message: EmailMessage | bytes, subject: str = "") -> Path:
    """Store one message; names sort by time of sending."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
    path = mail_dir / f"{stamp}-{uuid.uuid4().hex[:6]}-{_slug(subject)}.eml"
    data = message if isinstance(message, bytes) else message.as_bytes(policy=policy.SMTP)
    write_atomic(path, data)
    return path


def read_eml(path: Path) -> EmailMessage:
    with open(path, "rb") as handle:
        return BytesParser(policy=policy.default).parse(handle)  # type: ignore[return-value]


def summarise(path: Path) -> dict[str, Any]:
    """The readable facts of one stored mail (no attachment bytes)."""
    message = read_eml(path)
    text = html = None
    attachments = []
    for part in message.walk():
        if part.is_multipart():
            continue
        filename = part.get_filename()
        disposition = part.get_content_disposition()
        if filename or disposition == "attachment":
            payload = part.get_payload(decode=True) or b""
            attachments.append(
                {"name": filename, "content_type": part.get_content_type(), "size": len(payload)}
            )
        elif part.get_content_type() == "text/plain" and text is None:
            text = part.get_content()
        elif part.get_content_type() == "text/html" and html is None:
            html = part.get_content()

    def addresses(name: str) -> list[str]:
        value = message.get(name)
        return [a.addr_spec for a in value.addresses] if value is not None else []

    return {
        "file": path.name,
        "path": str(path),
        "via": message.get("X-Sandbox-Via", ""),
        "from": str(message.get("From", "")),
        "to": addresses("To"),
        "cc": addresses("Cc"),
        "bcc": addresses("Bcc"),
        "subject": str(message.get("Subject", "")),
        "date": str(message.get("Date", "")),
        "text": text,
        "html": html,
        "attachments": attachments,
    }
