"""``make doctor`` / ``invoice-processor --check``: a read-only preflight of a deployment (DESIGN
section 6), one row per check: check, ok/warn/fail, detail. Exit 0 with only ok and warn, 1 with
any fail, 2 when it cannot start (configuration). It writes nothing but a rotated refresh token,
and that only under the jobs' refresh lock (the QBO token refresh takes it).

Each check catches its own failure, so one broken thing gives exactly its own named fail.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation

from loguru import logger

from integrations import errors, token_expiry
from integrations.cli import EXIT_OK, EXIT_PARTIAL, JobOptions, JobOutcome
from integrations.config import Settings
from integrations.msgraph import token_roles
from integrations.services import Services

OK, WARN, FAIL = "ok", "warn", "fail"
SITE_WRITE_ROLES = {"Sites.ReadWrite.All", "Files.ReadWrite.All", "Sites.FullControl.All"}


@dataclass
class Row:
    check: str
    status: str
    detail: str

    def as_dict(self) -> dict[str, str]:
        return {"check": self.check, "status": self.status, "detail": self.detail}


class Doctor:
    """Runs the checks in order; later checks skip (with a fail of their own) what an earlier one broke."""

    def __init__(self, services: Services):
        self.services, self.settings = services, services.settings
        self.rows: list[Row] = []

    def add(self, check: str, status: str, detail: str) -> None:
        self.rows.append(Row(check, status, detail))

    def attempt(self, check: str, probe: Callable[[], tuple[str, str] | None]) -> bool:
        """Run one probe; a raised error becomes that check's fail. True when it did not fail."""
        try:
            result = probe()
        except (errors.InvoiceProcessorError, ValueError) as exc:
            self.add(check, FAIL, str(exc))
            return False
        if result is not None:
            self.add(check, *result)
            return result[0] != FAIL
        return True

    # -- the checks ----------------------------------------------------------------------------
    def run(self) -> list[Row]:
        s = self.settings
        for name in (s.qbo_secret_name, s.msgraph_secret_name, s.clickup_secret_name, s.robocorp_secret_name):
            self.attempt(f"secret {name}", lambda name=name: (OK, f"readable, fields: {self._fields(name)}"))
        self.attempt("table ledger", self._ledger_table)
        qbo_ok = self.attempt("qbo token", self._qbo_token)
        if qbo_ok:
            self.attempt("qbo items", self._items)
            self.attempt("qbo custom transaction numbers", self._custom_numbers)
            self.attempt("qbo refresh token expiry", self._expiry)
        self._registry(qbo_ok)
        self.attempt("clickup role", self._clickup_role)
        self._graph()
        return self.rows

    def _fields(self, name: str) -> str:
        return ", ".join(sorted(self.services.secrets.read_json(name))) or "none"

    def _ledger_table(self) -> tuple[str, str]:
        self.services.ledger.get("doctor#probe")
        return OK, f"{self.settings.ledger_table} answers"

    def _qbo_token(self) -> tuple[str, str]:
        qbo = self.services.qbo  # refreshes under the jobs' lock; saves a rotated token first
        return OK, f"refresh works; company {qbo.company_name() or '?'} (realm {qbo.realm_id})"

    def _items(self) -> tuple[str, str]:
        items = {str(i.get("Name") or ""): i for i in self.services.qbo.items(include_inactive=True)}
        problems, fine = [], []
        s = self.settings
        for name in (s.item_robot_runtime, s.item_professional_services, s.item_subscription):
            item = items.get(name)
            if item is None:
                problems.append(f"{name!r} missing")
            elif item.get("Active") is False:
                problems.append(f"{name!r} inactive")
            elif _price(item.get("UnitPrice")) <= 0:
                problems.append(f"{name!r} has no price")
            else:
                fine.append(f"{name} {_price(item.get('UnitPrice'))}")
        return (FAIL, "; ".join(problems)) if problems else (OK, ", ".join(fine))

    def _custom_numbers(self) -> tuple[str, str]:
        on = self.services.qbo.custom_txn_numbers()
        return OK, "on: invoices get DocNumber {client}-{YYYYMM}" if on else "off: QBO numbers the invoices"

    def _expiry(self) -> tuple[str, str]:
        block = token_expiry.report(self.services.qbo.token_expiry, datetime.now(UTC))
        if block["warnings"]:
            return WARN, " ".join(block["warnings"])
        dates = block[token_expiry.EXPIRES_AT], block[token_expiry.HARD_EXPIRES_AT]
        return OK, f"unused-limit {dates[0] or '?'}, hard limit {dates[1] or '?'}"

    def _registry(self, qbo_ok: bool) -> None:
        try:
            clients, invalid = self.services.registry.load()
        except errors.InvoiceProcessorError as exc:
            self.add("table registry", FAIL, str(exc))
            return
        self.add("table registry", OK, f"{self.settings.registry_table}: {len(clients)} valid row(s)")
        for item in invalid:
            self.add(f"registry {item.key}", FAIL, f"invalid row: {item.reason}")
        customers = self.services.qbo.customers(include_inactive=True) if qbo_ok else []
        # The job's own matching rule, so the preflight cannot disagree with the run.
        from create_invoices.customers import CustomerProblem, match_customer

        for client in sorted(clients, key=lambda c: c.client_id):
            check = f"registry {client.client_id}"
            if not client.active:
                self.add(check, OK, "inactive in the registry: not billed")
            elif self.settings.is_excluded(client.client_id, client.customer_name):
                self.add(check, OK, "excluded (EXCLUDED_CUSTOMERS): not billed")
            elif qbo_ok:
                try:
                    customer = match_customer(client, customers)
                except CustomerProblem as exc:
                    self.add(check, FAIL, str(exc))
                else:
                    email = (customer.get("PrimaryEmailAddr") or {}).get("Address")
                    name = customer.get("DisplayName")
                    if email:
                        self.add(check, OK, f"QBO customer {name!r}, BillEmail {email}")
                    else:
                        self.add(
                            check, WARN, f"QBO customer {name!r} has no email: its invoices cannot be sent"
                        )
            for workspace in client.robocorp_workspace_ids:
                self.attempt(f"robocorp {workspace}", lambda ws=workspace: self._workspace(ws))

    def _workspace(self, workspace: str) -> tuple[str, str]:
        next(iter(self.services.robocorp.process_runs(workspace, limit=1)), None)
        return OK, "workspace key answers"

    def _clickup_role(self) -> tuple[str, str]:
        from integrations.clickup import build_clickup  # not Services.clickup: that one refuses

        secret = self.services.secrets.read_json(self.settings.clickup_secret_name)
        role = build_clickup(self.settings, secret).token_role()
        detail = f"team {role.team_name or role.team_id}, token user {role.username or role.user_id}: {role.role_name}"
        return (OK, detail) if role.may_bill else (FAIL, f"{detail}; {role.refusal()}")

    def _graph(self) -> None:
        if not self.attempt("graph token", lambda: (OK, "client credentials accepted")):
            return
        roles = token_roles(self.services.graph.access_token())
        self.add(
            "graph role Mail.Send",
            *((OK, "granted") if "Mail.Send" in roles else (FAIL, _missing("Mail.Send"))),
        )
        if "Mail.ReadWrite" in roles:
            self.add("graph role Mail.ReadWrite", OK, "granted (mails over 3 MB)")
        else:
            self.add(
                "graph role Mail.ReadWrite",
                WARN,
                _missing("Mail.ReadWrite") + "; only mails over 3 MB need it",
            )
        if roles & SITE_WRITE_ROLES:
            self.add("graph role archive", OK, ", ".join(sorted(roles & SITE_WRITE_ROLES)))
        elif "Sites.Selected" in roles:
            self.add(
                "graph role archive", OK, "Sites.Selected (the site's write grant is checked by the upload)"
            )
        else:
            self.add("graph role archive", FAIL, _missing("Sites.ReadWrite.All or Sites.Selected"))
        self.attempt("graph site", self._site)

    def _site(self) -> tuple[str, str]:
        site = self.services.sharepoint_site
        return (
            OK,
            f"{self.settings.ms_graph_hostname}{self.settings.sharepoint_site_path} found ({site.split(',')[0]})",
        )


def _missing(role: str) -> str:
    return f"the app registration lacks the application permission {role} (docs/operations.md)"


def _price(value: object) -> Decimal:
    try:
        return Decimal(str(value))
    except (InvalidOperation, ValueError):
        return Decimal(0)


def run(settings: Settings, options: JobOptions, services: Services) -> JobOutcome:
    """The ``check`` job: every check, one row each; fails make exit 1."""
    doctor = Doctor(services)
    rows = [row.as_dict() for row in doctor.run()]
    counts = {status: sum(r["status"] == status for r in rows) for status in (OK, WARN, FAIL)}
    logger.info("preflight: {ok} ok, {warn} warn, {fail} fail", **counts)
    return JobOutcome(EXIT_PARTIAL if counts[FAIL] else EXIT_OK, {"checks": counts}, rows)
