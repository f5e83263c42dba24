"""The secret scan: every secret value of a scenario, in every form it could leak, against every
file the scenario's runs produced (logs, summaries, mails decoded, SharePoint files, ledger dump)."""

from __future__ import annotations

import json
from email import policy
from email.parser import BytesParser
from pathlib import Path
from typing import Any
from urllib.parse import quote

from integrations.aws import IDENTIFIER_FIELDS
from sandbox import scenario as scenarios
from sandbox.store import read_json

# What the product itself does not treat as secret (account identifiers, expiry dates; the OAuth
# app's client id appears in every authorize URL): the same list the log mask uses, plus client_id.
IDENTIFIERS = IDENTIFIER_FIELDS | {"client_id"}
MIN_LENGTH = 8  # shorter values would match by accident


def secret_values(
    state_dir: Path, scenario: dict[str, Any], current: dict[str, dict[str, Any]]
) -> dict[str, str]:
    """Value -> label of every secret: the scenario's, the stored ones now, and every token the
    stand-ins issued (refresh tokens, old ones too, and access tokens)."""
    found: dict[str, str] = {}

    def add(label: str, value: Any) -> None:
        if isinstance(value, str) and len(value) >= MIN_LENGTH:
            found.setdefault(value, label)

    for source, secrets in (("scenario", scenarios.secrets(scenario)), ("stored", current)):
        for name, fields in secrets.items():
            for key, value in (fields or {}).items():
                if key not in IDENTIFIERS:
                    add(f"{name} {key} ({source})", value)
    oauth = read_json(state_dir / "qbo" / "oauth.json", {}) or {}
    add("QBO refresh token (current)", oauth.get("refresh_token"))
    for token in oauth.get("retired_refresh_tokens", []):
        add("QBO refresh token (retired)", token)
    for token in oauth.get("access_tokens", {}):
        add("QBO access token", token)
    for token in read_json(state_dir / "graph" / "tokens.json", {}) or {}:
        add("Graph access token", token)
    return found


def forms(value: str) -> set[str]:
    """The ways a value shows up in text: as is, JSON-escaped, URL-encoded."""
    return {value, json.dumps(value)[1:-1], quote(value, safe="")}


def readable(path: Path) -> str:
    """A file's text; a mail's decoded parts too (bodies and attachments are often base64)."""
    raw = path.read_bytes()
    texts = [raw.decode("utf-8", errors="replace")]
    if path.suffix == ".eml":
        message = BytesParser(policy=policy.default).parsebytes(raw)
        for part in message.walk():
            if not part.is_multipart():
                payload = part.get_payload(decode=True) or b""
                texts.append(payload.decode("utf-8", errors="replace"))
    return "\n".join(texts)


def output_files(root: Path, state_dir: Path) -> list[Path]:
    """What a scenario produced: job outputs in ``root`` and the sandbox's mails and SharePoint."""
    own = [
        p
        for p in root.iterdir()
        if p.is_file() and p.suffix in (".stdout", ".stderr", ".json", ".calls", ".signal")
    ]
    mails = sorted((state_dir / "mail").glob("*.eml"))
    shared = sorted(p for p in (state_dir / "sharepoint").rglob("*") if p.is_file())
    return sorted(own) + mails + shared


def scan(files: list[Path], secrets: dict[str, str]) -> list[tuple[Path, str]]:
    """(file, secret label) for every secret found in a file."""
    leaks = []
    for path in files:
        text = readable(path)
        for value, label in secrets.items():
            if any(form in text for form in forms(value)):
                leaks.append((path, label))
    return leaks
