"""What is in a sandbox: one state dict (for tests and the control endpoint) and its readable form
(``python -m sandbox show``). Secret values never appear: secrets show version ids, stages and the
names of the fields each version changed."""

from __future__ import annotations

import os
from decimal import Decimal
from pathlib import Path
from typing import Any

from sandbox import aws, mail
from sandbox.store import read_json


def collect_state(
    state_dir: Path,
    *,
    aws_data: dict[str, Any] | None,
    requests: dict[str, Any] | None = None,
    faults: dict[str, Any] | None = None,
    metrics: list[dict[str, Any]] | None = None,
    running: bool = False,
) -> dict[str, Any]:
    """The sandbox's state; ``aws_data`` is a live snapshot or the one on disk (None: not seeded)."""
    settings = (read_json(state_dir / "scenario.json", {}) or {}).get("settings", {})
    described = aws.describe(aws_data or {})
    tables = described["tables"]
    mail_dir = state_dir / "mail"
    mails = [mail.summarise(path) for path in sorted(mail_dir.glob("*.eml"))] if mail_dir.is_dir() else []
    files = []
    root = state_dir / "sharepoint"
    if root.is_dir():
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            relative = path.relative_to(root).as_posix()
            files.append({"path": relative, "size": path.stat().st_size, "local_path": str(path)})
    return {
        "state_dir": str(state_dir),
        "running": running,
        "seed": read_json(state_dir / "seed.json"),
        "invoices": read_json(state_dir / "qbo" / "invoices.json", []),
        "qbo_oauth": _oauth(state_dir),
        "mails": mails,
        "files": files,
        "ledger": tables.get(settings.get("LEDGER_TABLE", ""), []),
        "registry": tables.get(settings.get("DYNAMODB_TABLE_ROBOCORP_CLIENTS", ""), []),
        "tables": tables,
        "secrets": described["secrets"],
        "metrics": metrics,
        "faults": faults if faults is not None else read_json(state_dir / "faults.json", {}),
        "requests": requests,
    }


def _oauth(state_dir: Path) -> dict[str, Any]:
    oauth = read_json(state_dir / "qbo" / "oauth.json", {}) or {}
    return {"refreshes": oauth.get("refreshes", 0), "live_access_tokens": len(oauth.get("access_tokens", {}))}


# --- readable output ----------------------------------------------------------------------------


def _money(value: Any) -> str:
    try:
        return f"{Decimal(str(value)):,.2f}"
    except ArithmeticError:
        return str(value)


def _table(rows: list[list[str]], header: list[str], indent: str = "  ") -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    out = [indent + "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip()]
    out.append(indent + "  ".join("-" * w for w in widths))
    out += [indent + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return out


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _qty(value: Any) -> str:
    try:
        return f"{Decimal(str(value)).normalize():f}"
    except ArithmeticError:
        return str(value)


def _flat(value: Any) -> str:
    if isinstance(value, dict):
        return " ".join(f"{k}={_flat(v)}" for k, v in sorted(value.items()))
    return str(value)


def _fields(names: list[str]) -> str:
    return ", ".join(names) if len(names) <= 6 else f"{len(names)} fields ({', '.join(names[:3])}, …)"


def _size(count: int) -> str:
    return (
        f"{count} B"
        if count < 1024
        else f"{count / 1024:.1f} KB"
        if count < 1024 * 1024
        else f"{count / 1048576:.1f} MB"
    )


def format_state(state: dict[str, Any], env: dict[str, str] | None = None) -> str:  # noqa: C901 - one report
    lines: list[str] = []
    seed = state.get("seed") or {}
    status = "running" if state.get("running") else "stopped (showing what is on disk)"
    lines.append(f"Sandbox {status} - state in {state['state_dir']}")
    if seed:
        lines.append(f"Scenario: {seed.get('scenario')} (seeded {seed.get('seeded_at')})")
    else:
        lines.append("Not seeded yet: run `make sandbox-reset` or `make sandbox-up`.")
    if env:
        names = {
            "QBO_BASE_URL": "QBO",
            "MSGRAPH_AUTHORITY_URL": "identity",
            "MSGRAPH_BASE_URL": "Graph",
            "CLICKUP_BASE_URL": "ClickUp",
            "ROBOCORP_BASE_URL": "Robocorp",
            "AWS_ENDPOINT_URL": "AWS (moto)",
        }
        lines.append(
            "Endpoints: " + ", ".join(f"{label} {env[key]}" for key, label in names.items() if key in env)
        )

    invoices = state.get("invoices") or []
    lines += ["", f"QBO invoices ({len(invoices)})"]
    rows = []
    for inv in sorted(invoices, key=lambda i: int(i["Id"]) if str(i["Id"]).isdigit() else 0):
        rows.append(
            [
                inv["Id"],
                inv.get("DocNumber", "") or "",
                inv.get("CustomerRef", {}).get("name", ""),
                inv.get("TxnDate", ""),
                inv.get("DueDate", ""),
                _money(inv.get("TotalAmt", 0)),
                inv.get("EmailStatus", ""),
                (inv.get("BillEmail") or {}).get("Address", "-"),
                inv.get("SyncToken", ""),
                _cut(inv.get("PrivateNote", "") or "", 40),
            ]
        )
    if rows:
        lines += _table(
            rows,
            [
                "Id",
                "DocNumber",
                "Customer",
                "TxnDate",
                "Due",
                "Total",
                "EmailStatus",
                "BillEmail",
                "Sync",
                "PrivateNote",
            ],
        )
        for inv in sorted(invoices, key=lambda i: int(i["Id"]) if str(i["Id"]).isdigit() else 0):
            lines.append(
                f"  #{inv['Id']} {inv.get('DocNumber', '')} {inv.get('CustomerRef', {}).get('name', '')}"
            )
            for line in inv.get("Line", []):
                if line.get("DetailType") != "SalesItemLineDetail":
                    continue
                detail = line.get("SalesItemLineDetail", {})
                qty, price = detail.get("Qty"), detail.get("UnitPrice")
                figures = (
                    f"{_qty(qty)} x {_money(price)} = {_money(line['Amount'])}"
                    if qty is not None and price is not None
                    else _money(line["Amount"])
                )
                item = detail.get("ItemRef", {}).get("name", "?")
                lines.append(
                    f"      {item:<24} {_cut(str(line.get('Description') or ''), 64):<64}  {figures}"
                )
            if inv.get("DeliveryInfo"):
                lines.append(
                    f"      delivered {inv['DeliveryInfo'].get('DeliveryType')} at {inv['DeliveryInfo'].get('DeliveryTime')}"
                )
    oauth = state.get("qbo_oauth") or {}
    lines.append(f"  QBO token refreshes so far: {oauth.get('refreshes', 0)}")

    mails = state.get("mails") or []
    lines += ["", f"Mails sent ({len(mails)}) - .eml files in {Path(state['state_dir']) / 'mail'}"]
    for item in mails:
        attachments = (
            ", ".join(f"{a['name']} ({_size(a['size'])})" for a in item["attachments"]) or "no attachments"
        )
        recipients = ", ".join(
            item["to"] + [f"cc {a}" for a in item["cc"]] + [f"bcc {a}" for a in item["bcc"]]
        )
        lines.append(f"  {item['date']}  [{item['via']}]  to {recipients}")
        lines.append(f"      {item['subject']!r}  -  {attachments}  ({item['file']})")

    files = state.get("files") or []
    lines += ["", f"SharePoint files ({len(files)}) - under {Path(state['state_dir']) / 'sharepoint'}"]
    lines += [f"  {f['path']}  ({_size(f['size'])})" for f in files]

    ledger = state.get("ledger") or []
    lines += ["", f"Ledger rows ({len(ledger)})"]
    rows = []
    for item in ledger:
        extras = {
            k: v
            for k, v in item.items()
            if k
            not in ("pk", "status", "run_id", "request_id", "claimed_at", "lease_expires_at", "expires_at")
        }
        rows.append(
            [
                str(item.get("pk", "")),
                str(item.get("status", "")),
                str(item.get("run_id", ""))[:12],
                str(item.get("claimed_at", "")),
                _cut(" ".join(f"{k}={_flat(v)}" for k, v in sorted(extras.items())), 100),
            ]
        )
    if rows:
        lines += _table(rows, ["pk", "status", "run", "claimed", "attributes"])

    registry = state.get("registry") or []
    lines += ["", f"Client registry ({len(registry)} items)"]
    for item in sorted(registry, key=lambda i: str(i.get("client_id"))):
        lines.append(
            f"  {item.get('client_id')}: {item.get('customer_name', '(no customer_name)')}  workspaces={item.get('robocorp_workspace_ids', '-')}"
        )

    lines += ["", "Secrets (values never shown)"]
    for name, versions in (state.get("secrets") or {}).items():
        lines.append(
            f"  {name}: {len(versions)} version(s), fields {_fields(versions[-1]['fields']) if versions else '-'}"
        )
        for version in versions:
            stages = ",".join(version["stages"]) or "-"
            lines.append(
                f"      {version['version_id']}  {version['created'][:19]}  {stages:<24} changed: {', '.join(version['changed'])}"
            )

    metrics = state.get("metrics")
    if metrics:
        lines += ["", "CloudWatch metrics"]
        lines += [
            f"  {m['namespace']}/{m['name']} {m['dimensions']}: {m.get('samples', '?')} sample(s)"
            for m in metrics
        ]

    faults = state.get("faults") or {}
    lines += ["", "Faults: " + ("none" if not faults else "")]
    for service, entry in faults.items():
        settings = ", ".join(f"{k}={v}" for k, v in entry.get("settings", {}).items()) or "-"
        rules = "; ".join(
            f"next {r['remaining']} -> {r['status']}" + (f" matching {r['match']}" if r.get("match") else "")
            for r in entry.get("fail_next", [])
        )
        lines.append(f"  {service}: {settings}" + (f"; {rules}" if rules else ""))

    requests = state.get("requests")
    if requests:
        lines += [
            "",
            "Requests served since start: "
            + ", ".join(f"{k} {v['total']}" for k, v in sorted(requests.items())),
        ]
    lines += [
        "",
        f"Logs: {Path(state['state_dir']) / 'sandbox.log'} and {Path(state['state_dir']) / 'requests.log'}",
    ]
    return "\n".join(lines) + os.linesep
