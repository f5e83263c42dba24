"""Wiring: builds every client a job needs from Settings, reading the four secrets once.

Both jobs start here, so a secret that cannot be read or is incomplete stops the run with exit
code 2 before anything is written.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property

from loguru import logger

from integrations import errors, token_expiry
from integrations.aws import AwsClients, ClientRegistry, Ledger, SecretStore, aws_clients
from integrations.clickup import ClickUpClient, build_clickup
from integrations.config import Settings
from integrations.lifecycle import StopSignal
from integrations.models import Attachment
from integrations.msgraph import GraphClient, build_graph
from integrations.qbo import QboClient, build_qbo
from integrations.report import Section, section_html
from integrations.robocorp import RobocorpClient, build_robocorp

EXPIRY_METRIC = "QboRefreshTokenDaysLeft"


@dataclass
class Services:
    """The clients of one run. Secrets are read lazily, once, so a job reads only what it uses."""

    settings: Settings
    aws: AwsClients
    secrets: SecretStore
    ledger: Ledger
    registry: ClientRegistry
    stop: StopSignal = field(default_factory=StopSignal)  # set on SIGTERM/SIGINT

    def _secret(self, name: str) -> dict:
        try:
            return self.secrets.read_json(name)
        except errors.ServiceError as exc:
            raise errors.StartupError(str(exc)) from None

    @cached_property
    def qbo(self) -> QboClient:
        try:
            return build_qbo(self.settings, self.secrets, self.ledger)
        except errors.ReauthorizationRequired:
            raise
        except errors.ServiceError as exc:
            raise errors.StartupError(str(exc)) from None

    @cached_property
    def graph(self) -> GraphClient:
        return build_graph(self.settings, self._secret(self.settings.msgraph_secret_name))

    @cached_property
    def clickup(self) -> ClickUpClient:
        """The ClickUp client, refused (exit 2) unless its token is an owner or admin of the team:
        anyone else may silently see only their own time and under-bill (issue 11.13)."""
        client = build_clickup(self.settings, self._secret(self.settings.clickup_secret_name))
        try:
            role = client.token_role()
        except errors.ServiceError as exc:  # unreachable now: the time-entry fetch reports it per client
            logger.warning("could not check the ClickUp token's role: {error}", error=str(exc))
            return client
        if not role.may_bill:
            raise errors.StartupError(f"refusing to bill: {role.refusal()}")
        return client

    @cached_property
    def robocorp(self) -> RobocorpClient:
        return build_robocorp(self.settings, self._secret(self.settings.robocorp_secret_name))

    def throttling(self) -> dict[str, dict[str, float]]:
        """Per service built in this run: the 429s it waited out and for how long (run summary)."""
        built = {name: self.__dict__[name] for name in ("qbo", "clickup") if name in self.__dict__}
        return {name: client.throttling() for name, client in built.items()}

    def require(self, *clients: str) -> None:
        """Build these clients now, reading their secrets: a missing or broken secret must stop the
        run (exit 2) before its first write, not halfway through."""
        for name in clients:
            getattr(self, name)

    @cached_property
    def sharepoint_site(self) -> str:
        """The archive site's id, resolved once per run."""
        return self.graph.resolve_site(self.settings.ms_graph_hostname, self.settings.sharepoint_site_path)

    def archive(self, parts: Sequence[str], content: bytes) -> None:
        """Store a file under SHAREPOINT_FOLDER/<parts...> (replacing an older copy: re-runs are safe)."""
        path = "/".join([self.settings.sharepoint_folder, *parts])
        self.graph.upload_file(self.sharepoint_site, path, content, conflict="replace")

    def token_expiry_report(self, *, publish_metric: bool = True) -> dict:
        """The QBO refresh token's expiry block for a run summary (both jobs call this), and the
        ``QboRefreshTokenDaysLeft`` metric for its alarm; empty when QBO was never connected."""
        if "qbo" not in self.__dict__:
            return {}
        block = token_expiry.report(self.qbo.token_expiry, datetime.now(UTC))
        if publish_metric and block["days_left"] is not None and self.settings.metrics_namespace:
            try:
                self.aws.cloudwatch.put_metric_data(
                    Namespace=self.settings.metrics_namespace,
                    MetricData=[
                        {"MetricName": EXPIRY_METRIC, "Value": float(block["days_left"]), "Unit": "None"}
                    ],
                )
            except Exception as exc:  # noqa: BLE001 - a metric must not fail the run; the mail still warns
                logger.warning("could not publish {metric}: {error}", metric=EXPIRY_METRIC, error=str(exc))
        for line in block["warnings"]:
            logger.warning(line)
        return {"qbo_refresh_token": block}

    def mail_bookkeeper(
        self, subject: str, html: str, text: str, attachments: Sequence[Attachment] = ()
    ) -> bool:
        """Send a run's summary to BOOKKEEPER_EMAIL; False (and an error in the log) if it could not go.

        Every such mail carries the QBO reconnect warning from 30 days before the token expires."""
        if "qbo" in self.__dict__:
            lines = token_expiry.warnings(self.qbo.token_expiry, datetime.now(UTC))
            if lines:
                notice = Section("Action needed: reconnect QuickBooks", lines=lines)
                html = html.replace("<body>", "<body>" + section_html(notice), 1)
                text = "\n".join([notice.title, *(f"- {line}" for line in lines), "", text])
        try:
            self.graph.send_mail(
                self.settings.sender_email,
                [self.settings.bookkeeper_email],
                subject,
                html,
                text=text,
                attachments=attachments,
            )
            return True
        except errors.ServiceError as exc:
            logger.error("summary mail not sent: {error}", error=str(exc))
            return False


def connect(settings: Settings) -> Services:
    clients = aws_clients(settings)
    return Services(
        settings=settings,
        aws=clients,
        secrets=SecretStore(clients.secrets),
        ledger=Ledger(clients.dynamodb.Table(settings.ledger_table)),
        registry=ClientRegistry(clients.dynamodb.Table(settings.registry_table)),
    )
