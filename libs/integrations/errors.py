"""Typed errors shared by every client.

Each error names the service, the operation and the reason, and carries the HTTP status and the
service's request/transaction id when there is one (QBO's ``intuit_tid``). They never carry
request bodies or headers, so no credential can leak through an exception message.
"""

from __future__ import annotations


class InvoiceProcessorError(Exception):
    """Base of every error this project raises on purpose."""


class ConfigError(InvoiceProcessorError):
    """The configuration is missing or invalid. Lists every problem at once."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("invalid configuration:\n  - " + "\n  - ".join(self.problems))


class StartupError(InvoiceProcessorError):
    """The run cannot start (for example an unreadable secret). Exit code 2."""


class UsageError(StartupError):
    """The command line names something that does not exist (an unknown --client). Exit code 2,
    nothing written, nobody mailed."""


class ServiceError(InvoiceProcessorError):
    """A call to an external service failed."""

    def __init__(
        self,
        service: str,
        operation: str,
        reason: str,
        *,
        status: int | None = None,
        request_id: str | None = None,
        code: str | None = None,
    ):
        self.service = service
        self.operation = operation
        self.reason = reason
        self.status = status
        self.request_id = request_id
        self.code = code
        parts = [f"{service} {operation} failed: {reason}"]
        if status is not None:
            parts.append(f"HTTP {status}")
        if code:
            parts.append(f"code {code}")
        if request_id:
            parts.append(f"request id {request_id}")
        super().__init__(" | ".join(parts))


class TransportError(ServiceError):
    """Timeouts, refused or dropped connections, after the retry budget was spent."""


class RateLimited(ServiceError):
    """HTTP 429 after the retry budget was spent."""


class ServerError(ServiceError):
    """HTTP 5xx after the retry budget was spent."""


class AuthExpired(ServiceError):
    """HTTP 401: the access token expired or was revoked."""


class PermissionDenied(ServiceError):
    """HTTP 403."""


class NotFound(ServiceError):
    """HTTP 404, or an object the service says does not exist (QBO 610)."""


class ValidationFault(ServiceError):
    """The service rejected the request as invalid (4xx, QBO ValidationFault). Never retried."""


class StaleObject(ValidationFault):
    """QBO 5010: the SyncToken is stale; re-read and try again."""


class DuplicateRequest(ServiceError):
    """QBO 600: the requestid was seen before; look the object up instead."""


class GarbledResponse(ServiceError):
    """The service answered 2xx with a body we cannot understand."""


class ReauthorizationRequired(ServiceError):
    """The stored OAuth refresh token is no longer valid: a person must reconnect the app."""
