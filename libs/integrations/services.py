"""Wiring: builds every client a job needs from Settings, reading the four secrets once.

Both jobs start here, so a secret that cannot be read or is incomplete stops the run with exit
code 2 before anything is written.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from integrations import errors
from integrations.aws import AwsClients, ClientRegistry, Ledger, SecretStore, aws_clients
from integrations.cli import StartupError
from integrations.clickup import ClickUpClient, build_clickup
from integrations.config import Settings
from integrations.msgraph import GraphClient, build_graph
from integrations.qbo import QboClient, build_qbo
from integrations.robocorp import RobocorpClient, build_robocorp


@dataclass
class Services:
    """The clients of one run. Secrets are read lazily, once, so a job reads only what it uses."""

    settings: Settings
    aws: AwsClients
    secrets: SecretStore
    ledger: Ledger
    registry: ClientRegistry

    def _secret(self, name: str) -> dict:
        try:
            return self.secrets.read_json(name)
        except errors.ServiceError as exc:
            raise StartupError(str(exc)) from None

    @cached_property
    def qbo(self) -> QboClient:
        try:
            return build_qbo(self.settings, self.secrets, self.ledger)
        except errors.ReauthorizationRequired:
            raise
        except errors.ServiceError as exc:
            raise StartupError(str(exc)) from None

    @cached_property
    def graph(self) -> GraphClient:
        return build_graph(self.settings, self._secret(self.settings.msgraph_secret_name))

    @cached_property
    def clickup(self) -> ClickUpClient:
        return build_clickup(self.settings, self._secret(self.settings.clickup_secret_name))

    @cached_property
    def robocorp(self) -> RobocorpClient:
        return build_robocorp(self.settings, self._secret(self.settings.robocorp_secret_name))


def connect(settings: Settings) -> Services:
    clients = aws_clients(settings)
    return Services(
        settings=settings,
        aws=clients,
        secrets=SecretStore(clients.secrets),
        ledger=Ledger(clients.dynamodb.Table(settings.ledger_table)),
        registry=ClientRegistry(clients.dynamodb.Table(settings.registry_table)),
    )
