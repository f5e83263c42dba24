"""AWS access: secrets, the client registry, the run ledger and the success metric.

The ledger is what makes "no duplicate invoice, ever" hold. Every decision it takes is ONE
conditional DynamoDB write (never read-then-write), so two runs racing for the same key cannot
both win: DynamoDB evaluates the condition and applies the write atomically per item.

Every botocore failure is turned into a typed ``ServiceError`` naming the service, the operation
and the AWS error code. Secret values never reach an exception: the reasons are built from AWS
error codes and messages (which never echo a secret) and are passed through the log mask.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import boto3
from boto3.dynamodb.conditions import Attr
from boto3.dynamodb.types import TypeDeserializer
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ParamValidationError,
    ReadTimeoutError,
)
from loguru import logger

from integrations import errors, token_expiry
from integrations.config import MAX_WORKERS, Settings
from integrations.logging import mask, register_secret
from integrations.models import ClientRecord, InvalidRecord

BOTO_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": 5},
    # every worker may hold a ledger connection, and the claims' heartbeat one more: botocore's 10
    # would make a run of 16 workers drop and reopen connections all along
    max_pool_connections=MAX_WORKERS + 8,
    connect_timeout=10,
    read_timeout=30,
    user_agent_extra="qbo-invoice-processor/1.0",
)

# Secret fields that identify an account rather than authenticate to it. They are not masked:
# masking "environment": "sandbox" would hide every mention of the word in every log line.
# Secret fields that are not secret (ids, the environment, the QBO refresh token's expiry dates):
# masking them would hide "realm 9130..." or "expires 2031-11-29" from the people who need to read it.
IDENTIFIER_FIELDS = frozenset(
    {"environment", "realm_id", "team_id", "tenant_id", token_expiry.EXPIRES_AT, token_expiry.HARD_EXPIRES_AT}
)

LEDGER_STATUSES = frozenset({"claimed", "created", "sent", "failed", "needs_review", "skipped"})
LOCK_PREFIX = "lock#"
TRACE_PREFIX = "trace#"
TRACE_STATES = frozenset({"pending", "invoiced", "nothing"})
# DynamoDB items are at most 400 KB: a trace is zlib-compressed and split into items of this many
# bytes (a month of 100,000 runs is a few MB of CSV, so a handful of chunk items).
TRACE_CHUNK_BYTES = 300_000
TRACE_RETAIN_DAYS = 800  # long enough for late usage (12 months back at most) and the median rule


def utcnow() -> datetime:
    return datetime.now(UTC)


# --------------------------------------------------------------------------- clients and errors


@dataclass(frozen=True)
class AwsClients:
    """The boto3 handles a run needs; built once by ``aws_clients`` and passed explicitly."""

    secrets: Any  # botocore SecretsManager client
    dynamodb: Any  # boto3 DynamoDB ServiceResource (``.Table(name)``)
    cloudwatch: Any  # botocore CloudWatch client


def aws_clients(settings: Settings) -> AwsClients:
    """Build the clients for ``settings.aws_region``; boto3 itself honours AWS_ENDPOINT_URL (sandbox)."""
    session = boto3.session.Session(region_name=settings.aws_region)
    if session.get_credentials() is None:  # else the first call fails deep inside a job, as a traceback
        raise errors.StartupError(
            "no AWS credentials found (environment, ~/.aws, SSO or the ECS task role); "
            "set AWS_PROFILE or run inside the task, or use ENV=sandbox"
        )
    return AwsClients(
        secrets=session.client("secretsmanager", config=BOTO_CONFIG),
        dynamodb=session.resource("dynamodb", config=BOTO_CONFIG),
        cloudwatch=session.client("cloudwatch", config=BOTO_CONFIG),
    )


_NOT_FOUND = {"ResourceNotFoundException", "NotFoundException"}
_DENIED = {"AccessDeniedException", "AccessDenied", "UnrecognizedClientException", "InvalidClientTokenId"}
_EXPIRED = {"ExpiredTokenException", "ExpiredToken"}
_THROTTLED = {
    "ThrottlingException",
    "Throttling",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "TooManyRequestsException",
}
_INVALID = {"ValidationException", "InvalidParameterException", "InvalidRequestException"}


def aws_error(service: str, operation: str, exc: Exception, reason: str | None = None) -> errors.ServiceError:
    """Turn a botocore exception into the typed error; ``reason`` overrides the AWS message."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        meta = exc.response.get("ResponseMetadata", {})
        code = str(error.get("Code") or "Unknown")
        text = reason or f"{code}: {error.get('Message') or 'no message'}"
        status = meta.get("HTTPStatusCode")
        if code in _NOT_FOUND:
            kind: type[errors.ServiceError] = errors.NotFound
        elif code in _DENIED:
            kind = errors.PermissionDenied
        elif code in _EXPIRED:
            kind = errors.AuthExpired
        elif code in _THROTTLED:
            kind = errors.RateLimited
        elif code in _INVALID:
            kind = errors.ValidationFault
        elif isinstance(status, int) and status >= 500:
            kind = errors.ServerError
        else:
            kind = errors.ServiceError
        return kind(
            service, operation, mask(text), status=status, request_id=meta.get("RequestId"), code=code
        )
    name = exc.__class__.__name__
    if isinstance(
        exc, EndpointConnectionError | ConnectTimeoutError | ReadTimeoutError | ConnectionClosedError
    ):
        return errors.TransportError(service, operation, mask(reason or f"{name}: {exc}"), code=name)
    if isinstance(exc, ParamValidationError):  # its message may quote the parameter values
        return errors.ValidationFault(service, operation, reason or f"{name}: invalid request parameters")
    return errors.ServiceError(service, operation, mask(reason or f"{name}: {exc}"), code=name)


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


# --------------------------------------------------------------------------- secrets


class SecretStore:
    """JSON secrets in Secrets Manager. Every value read or written is registered with the log mask."""

    def __init__(self, client: Any):
        self._client = client

    def read_json(self, name: str) -> dict[str, Any]:
        """Read the current (AWSCURRENT) version of a JSON-object secret."""
        operation = f"GetSecretValue {name}"
        try:
            response = self._client.get_secret_value(SecretId=name)
        except ClientError as exc:
            code = _error_code(exc)
            readable = {
                "ResourceNotFoundException": f"{code}: secret {name!r} does not exist in this account and "
                "region (check the secret name in the configuration and AWS_REGION)",
                "AccessDeniedException": f"{code}: not allowed to read secret {name!r} (the task role needs "
                "secretsmanager:GetSecretValue on it, and kms:Decrypt on its key)",
                "DecryptionFailure": f"{code}: secret {name!r} cannot be decrypted (check the KMS key policy)",
            }
            raise aws_error("secretsmanager", operation, exc, readable.get(code)) from None
        except BotoCoreError as exc:
            raise aws_error("secretsmanager", operation, exc) from None

        raw = response.get("SecretString")
        if raw is None and response.get("SecretBinary") is not None:
            try:
                raw = bytes(response["SecretBinary"]).decode("utf-8")
            except UnicodeDecodeError:
                raise errors.ServiceError(
                    "secretsmanager", operation, f"secret {name!r} is binary, not UTF-8 JSON text"
                ) from None
        if raw is None:
            raise errors.ServiceError("secretsmanager", operation, f"secret {name!r} has no value")
        register_secret(raw)  # even when it is not valid JSON: the raw text is the secret then
        try:
            value = json.loads(raw)
        except ValueError as exc:
            where = f" ({exc.msg} at line {exc.lineno} column {exc.colno})" if hasattr(exc, "msg") else ""
            raise errors.ServiceError(
                "secretsmanager", operation, f"secret {name!r} is not valid JSON{where}"
            ) from None
        if not isinstance(value, dict):
            raise errors.ServiceError(
                "secretsmanager",
                operation,
                f"secret {name!r} must be a JSON object, got a JSON {type(value).__name__}",
            )
        register_secret(_credentials(value))
        return value

    def write_json(self, name: str, value: Mapping[str, Any]) -> str:
        """Store a new AWSCURRENT version and return its VersionId.

        boto3 fills ``ClientRequestToken`` once per call and reuses it on its own retries, so a
        retried write cannot create two versions.
        """
        register_secret(_credentials(value))
        operation = f"PutSecretValue {name}"
        try:
            response = self._client.put_secret_value(SecretId=name, SecretString=json.dumps(dict(value)))
        except ClientError as exc:
            code = _error_code(exc)
            readable = {
                "ResourceNotFoundException": f"{code}: secret {name!r} does not exist (it must be created "
                "before the job can store a new version)",
                "AccessDeniedException": f"{code}: not allowed to write secret {name!r} (the task role needs "
                "secretsmanager:PutSecretValue on it)",
            }
            raise aws_error("secretsmanager", operation, exc, readable.get(code)) from None
        except BotoCoreError as exc:
            raise aws_error("secretsmanager", operation, exc) from None
        return str(response["VersionId"])


# --------------------------------------------------------------------------- client registry


class ClientRegistry:
    """The client registry table (DESIGN §3). Bad items are reported, never silently dropped."""

    def __init__(self, table: Any, *, page_size: int | None = None):
        self._table = table
        self._page_size = page_size

    def load(self) -> tuple[list[ClientRecord], list[InvalidRecord]]:
        """Every valid record (sorted by client number) and every invalid or duplicate one."""
        by_id: dict[str, list[ClientRecord]] = {}
        invalid: list[InvalidRecord] = []
        for index, item in enumerate(
            _scan(self._table, f"Scan {self._table.name}", page_size=self._page_size), start=1
        ):
            try:
                record = ClientRecord.from_item(item)
            except ValueError as exc:
                invalid.append(InvalidRecord(key=_readable_key(item, index), reason=str(exc)))
                continue
            by_id.setdefault(record.client_id, []).append(record)
        valid: list[ClientRecord] = []
        for client_id in sorted(by_id):
            records = by_id[client_id]
            if len(records) == 1:
                valid.append(records[0])
            else:  # which copy holds the right rates is anyone's guess: bill none, report it
                invalid.append(
                    InvalidRecord(
                        key=client_id,
                        reason=f"duplicate client_id: {len(records)} registry items are client {client_id}; "
                        "keep one and re-run",
                    )
                )
        if invalid:
            logger.warning(
                "client registry: {count} invalid item(s): {keys}",
                count=len(invalid),
                keys=", ".join(record.key for record in invalid),
            )
        return valid, invalid


def _readable_key(item: Mapping[str, Any], index: int) -> str:
    client_id = item.get("client_id")
    if isinstance(client_id, str) and client_id.strip():
        return client_id.strip()
    if client_id is not None:
        return repr(client_id)
    name = item.get("customer_name")
    if isinstance(name, str) and name.strip():
        return f"{name.strip()} (no client_id)"
    return f"item #{index} (no client_id)"


def _scan(table: Any, operation: str, *, page_size: int | None = None, **kwargs: Any) -> Iterator[dict]:
    """Every item of a paginated Scan (a page ends at 1 MB or ``page_size`` items)."""
    if page_size:
        kwargs["Limit"] = page_size
    while True:
        try:
            page = table.scan(**kwargs)
        except (ClientError, BotoCoreError) as exc:
            raise aws_error("dynamodb", operation, exc) from None
        yield from page.get("Items", [])
        last = page.get("LastEvaluatedKey")
        if not last:
            return
        kwargs["ExclusiveStartKey"] = last


# --------------------------------------------------------------------------- ledger


@dataclass(frozen=True)
class LedgerEntry:
    """One ledger row as stored. Numbers inside ``attributes`` come back as Decimal.

    ``previous_status``/``previous_run_id`` are set when the claim was taken over: "claimed" means
    the earlier run crashed mid-way, so the outcome of its work is unknown and must be checked
    (an invoice with the marker, a sent e-mail) before doing it again.
    """

    key: str
    status: str
    run_id: str
    request_id: str
    claimed_at: datetime
    lease_expires_at: datetime
    attributes: dict[str, Any] = field(default_factory=dict)
    previous_status: str | None = None
    previous_run_id: str | None = None
    attempts: int = 1

    def lease_expired(self, now: datetime) -> bool:
        return self.lease_expires_at < now


@dataclass(frozen=True)
class UsageTrace:
    """What this system billed a client for a month: its invoice's usage CSV (every run and time
    entry id behind every line), or that it closed the month with nothing to bill.

    ``state``: pending (written under the claim, before the QBO create), invoiced, or nothing."""

    client_id: str
    period: str  # "2026-10"
    state: str
    usage_csv: str = ""
    total: str = ""
    invoice_id: str = ""
    doc_number: str = ""

    @property
    def key(self) -> str:
        return trace_key(self.client_id, self.period)


def trace_key(client_id: str, period: str) -> str:
    return f"{TRACE_PREFIX}{client_id}#{period}"


class ClaimNotHeld(errors.ServiceError):
    """``Ledger.record`` by a run that does not (or no longer) hold the claim. Never retried."""


class Ledger:
    """Claims, outcomes and lease locks in one DynamoDB table (hash key ``pk``, TTL ``expires_at``)."""

    def __init__(self, table: Any, clock: Callable[[], datetime] = utcnow, *, page_size: int | None = None):
        self._table = table
        self._clock = clock
        self._page_size = page_size
        self._deserializer = TypeDeserializer()

    # -- reading

    def get(self, key: str) -> LedgerEntry | None:
        try:
            response = self._table.get_item(Key={"pk": key}, ConsistentRead=True)
        except (ClientError, BotoCoreError) as exc:
            raise aws_error("dynamodb", f"GetItem {key}", exc) from None
        item = response.get("Item")
        return _entry(item) if item else None

    def scan_prefix(self, prefix: str) -> list[LedgerEntry]:
        """Every row whose key starts with ``prefix``, sorted by key (a Scan of the whole table: the
        send job's look for unfinished deliveries, reports and tests)."""
        items = _scan(
            self._table,
            f"Scan {self._table.name} {prefix}*",
            page_size=self._page_size,
            FilterExpression=Attr("pk").begins_with(prefix),
            ConsistentRead=True,
        )
        return sorted((_entry(item) for item in items), key=lambda entry: entry.key)

    # -- claims

    def claim(
        self,
        key: str,
        run_id: str,
        request_id: str,
        lease_seconds: float,
        attributes: Mapping[str, Any] | None = None,
        retain_days: int = 400,
    ) -> tuple[bool, LedgerEntry | None]:
        """Claim ``key`` for this run; return (acquired, the entry as it is now).

        Acquired when the key is new, its status is "failed", or it is "claimed" by a run whose
        lease has expired (a crashed run). A takeover keeps the stored ``request_id``, so a retry
        after a crash repeats the original QBO ``requestid`` and QBO de-duplicates it. A key
        already "claimed" by ``run_id`` itself counts as acquired (``run_id`` must be unique per run).
        """
        if lease_seconds <= 0:
            raise ValueError("lease_seconds must be greater than zero")
        attrs = _to_dynamo(dict(attributes or {}))
        for _ in range(3):
            now = self._clock()
            lease = now + timedelta(seconds=lease_seconds)
            expires = _epoch_int(now + timedelta(days=retain_days))
            item = {
                "pk": key,
                "status": "claimed",
                "run_id": run_id,
                "request_id": request_id,
                "claimed_at": _iso(now),
                "updated_at": _iso(now),
                "lease_expires_at": _epoch(lease),
                "expires_at": expires,
                "attempts": 1,
                "attributes": attrs,
            }
            try:
                self._table.put_item(
                    Item=item,
                    ConditionExpression="attribute_not_exists(pk)",
                )
                logger.debug("ledger: claimed {key}", key=key, run_id=run_id)
                return True, _entry(item)
            except ClientError as exc:
                if _error_code(exc) != "ConditionalCheckFailedException":
                    raise aws_error("dynamodb", f"PutItem {key}", exc) from None
            except BotoCoreError as exc:
                raise aws_error("dynamodb", f"PutItem {key}", exc) from None

            acquired, current = self._take_over(key, run_id, request_id, now, lease, expires, attrs)
            if current is not None:
                return acquired, current
            # The row vanished between the two writes (TTL expiry); claim it as a new key.
        raise errors.ServiceError("dynamodb", f"claim {key}", "the ledger row kept changing; try again later")

    def _take_over(
        self,
        key: str,
        run_id: str,
        request_id: str,
        now: datetime,
        lease: datetime,
        expires: int,
        attrs: dict[str, Any],
    ) -> tuple[bool, LedgerEntry | None]:
        names = {
            "#s": "status",
            "#run": "run_id",
            "#req": "request_id",
            "#claimed": "claimed_at",
            "#updated": "updated_at",
            "#lease": "lease_expires_at",
            "#exp": "expires_at",
            "#attempts": "attempts",
            "#prev_s": "previous_status",
            "#prev_run": "previous_run_id",
            "#attrs": "attributes",
        }
        values: dict[str, Any] = {
            ":claimed": "claimed",
            ":failed": "failed",
            ":run": run_id,
            ":req": request_id,
            ":claimed_at": _iso(now),
            ":lease": _epoch(lease),
            ":exp": expires,
            ":now": _epoch(now),
            ":zero": 0,
            ":one": 1,
        }
        # previous_* first: they must read the old values whatever order SET actions are applied in.
        sets = [
            "#prev_s = #s",
            "#prev_run = #run",
            "#s = :claimed",
            "#run = :run",
            "#req = if_not_exists(#req, :req)",
            "#claimed = :claimed_at",
            "#updated = :claimed_at",
            "#lease = :lease",
            "#exp = :exp",
            "#attempts = if_not_exists(#attempts, :zero) + :one",
        ]
        if attrs:
            sets += _attribute_updates(attrs, names, values)
        else:
            values[":empty"] = {}
            sets.append("#attrs = if_not_exists(#attrs, :empty)")
        try:
            response = self._table.update_item(
                Key={"pk": key},
                UpdateExpression="SET " + ", ".join(sets),
                ConditionExpression="#s = :failed OR (#s = :claimed AND #lease < :now)",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
                ReturnValues="ALL_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            if _error_code(exc) != "ConditionalCheckFailedException":
                raise aws_error("dynamodb", f"UpdateItem {key}", exc) from None
            old = exc.response.get("Item")
            # Without ALL_OLD support, read only to report the holder; the decision is already taken.
            current = _entry(self._deserialize(old)) if old else self.get(key)
            # Our own claim: botocore retried a write whose reply was lost, or this run asked twice.
            # Run ids are unique per run, so no other run can have written ours.
            mine = current is not None and current.status == "claimed" and current.run_id == run_id
            return mine, current
        except BotoCoreError as exc:
            raise aws_error("dynamodb", f"UpdateItem {key}", exc) from None
        entry = _entry(response["Attributes"])
        logger.info(
            "ledger: took over {key} from run {previous} ({status})",
            key=key,
            previous=entry.previous_run_id,
            status=entry.previous_status,
        )
        return True, entry

    def record(self, key: str, run_id: str, status: str, attributes: Mapping[str, Any] | None = None) -> None:
        """Store the outcome of our claim and merge ``attributes``; refused unless we hold the claim."""
        if status not in LEDGER_STATUSES:
            raise ValueError(
                f"unknown ledger status {status!r} (use one of {', '.join(sorted(LEDGER_STATUSES))})"
            )
        names = {
            "#pk": "pk",
            "#s": "status",
            "#run": "run_id",
            "#updated": "updated_at",
        }
        values: dict[str, Any] = {":status": status, ":run": run_id, ":now": _iso(self._clock())}
        sets = ["#s = :status", "#updated = :now"]
        sets += _attribute_updates(_to_dynamo(dict(attributes or {})), names, values)
        try:
            self._table.update_item(
                Key={"pk": key},
                UpdateExpression="SET " + ", ".join(sets),
                ConditionExpression="attribute_exists(#pk) AND #run = :run",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            if _error_code(exc) != "ConditionalCheckFailedException":
                raise aws_error("dynamodb", f"UpdateItem {key}", exc) from None
            old = exc.response.get("Item")
            if old:
                holder = _entry(self._deserialize(old))
                why = f"it is held by run {holder.run_id} (status {holder.status})"
            else:
                why = "there is no ledger entry for it"
            raise ClaimNotHeld(
                "dynamodb",
                f"record {key}",
                f"run {run_id} cannot record {status!r}: it does not hold the claim, {why}",
                code="ConditionalCheckFailedException",
            ) from None
        except BotoCoreError as exc:
            raise aws_error("dynamodb", f"UpdateItem {key}", exc) from None

    def renew(self, key: str, run_id: str, lease_seconds: float) -> bool:
        """Extend the lease of a claim this run still holds; False when it no longer does."""
        return self._update_if(
            key,
            UpdateExpression="SET #lease = :lease",
            ConditionExpression="#run = :run AND #s = :claimed",
            ExpressionAttributeNames={"#lease": "lease_expires_at", "#run": "run_id", "#s": "status"},
            ExpressionAttributeValues={
                ":lease": _epoch(self._clock() + timedelta(seconds=lease_seconds)),
                ":run": run_id,
                ":claimed": "claimed",
            },
        )

    def annotate(self, key: str, status: str, attributes: Mapping[str, Any]) -> bool:
        """Merge ``attributes`` into a finished row (status ``status``) without holding a claim, e.g.
        to note that a later run archived a created invoice's usage file. False when the row is not
        (or no longer) in that status."""
        names = {"#s": "status", "#updated": "updated_at"}
        values: dict[str, Any] = {":status": status, ":now": _iso(self._clock())}
        sets = ["#updated = :now", *_attribute_updates(_to_dynamo(dict(attributes)), names, values)]
        return self._update_if(
            key,
            UpdateExpression="SET " + ", ".join(sets),
            ConditionExpression="#s = :status",
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
        )

    def _update_if(self, key: str, **request: Any) -> bool:
        return self._write_if("UpdateItem", key, Key={"pk": key}, **request)

    def _write_if(self, action: str, key: str, **request: Any) -> bool:
        """One conditional write (PutItem or UpdateItem): True when written, False when its
        condition did not hold; any other failure is an error naming the row."""
        write = self._table.put_item if action == "PutItem" else self._table.update_item
        try:
            write(**request)
        except ClientError as exc:
            if _error_code(exc) == "ConditionalCheckFailedException":
                return False
            raise aws_error("dynamodb", f"{action} {key}", exc) from None
        except BotoCoreError as exc:
            raise aws_error("dynamodb", f"{action} {key}", exc) from None
        return True

    # -- usage traces (what each invoice billed)

    def put_trace(self, trace: UsageTrace, *, only_if_new: bool = False) -> bool:
        """Store ``trace``: its chunks first, then the head that names them (so a reader never sees a
        head without its chunks). ``only_if_new``: keep an existing trace (returns False then)."""
        if trace.state not in TRACE_STATES:
            raise ValueError(f"unknown trace state {trace.state!r}")
        data = zlib.compress(trace.usage_csv.encode("utf-8"), 9)
        digest = hashlib.sha256(data).hexdigest()[:16]
        chunks = [data[i : i + TRACE_CHUNK_BYTES] for i in range(0, len(data), TRACE_CHUNK_BYTES)]
        now = self._clock()
        expires = _epoch_int(now + timedelta(days=TRACE_RETAIN_DAYS))
        for index, chunk in enumerate(chunks):
            chunk_key = f"{trace.key}#{digest}#{index}"
            self._put(chunk_key, {"pk": chunk_key, "data": chunk, "expires_at": expires})
        head = {
            "pk": trace.key,
            "kind": "trace",
            "client_id": trace.client_id,
            "period": trace.period,
            "state": trace.state,
            "total": trace.total,
            "invoice_id": trace.invoice_id,
            "doc_number": trace.doc_number,
            "digest": digest,
            "chunks": len(chunks),
            "updated_at": _iso(now),
            "expires_at": expires,
        }
        condition = {"ConditionExpression": "attribute_not_exists(pk)"} if only_if_new else {}
        return self._put(trace.key, head, tolerate_condition=only_if_new, **condition)

    def mark_trace(self, client_id: str, period: str, state: str, invoice_id: str, doc_number: str) -> None:
        """Set the state (and invoice) of an existing trace; a missing trace is left missing."""
        if state not in TRACE_STATES:
            raise ValueError(f"unknown trace state {state!r}")
        key = trace_key(client_id, period)
        try:
            self._table.update_item(
                Key={"pk": key},
                UpdateExpression="SET #s = :s, invoice_id = :i, doc_number = :d, updated_at = :now",
                ConditionExpression="attribute_exists(pk)",
                ExpressionAttributeNames={"#s": "state"},
                ExpressionAttributeValues={
                    ":s": state,
                    ":i": invoice_id,
                    ":d": doc_number,
                    ":now": _iso(self._clock()),
                },
            )
        except ClientError as exc:
            if _error_code(exc) != "ConditionalCheckFailedException":
                raise aws_error("dynamodb", f"UpdateItem {key}", exc) from None
        except BotoCoreError as exc:
            raise aws_error("dynamodb", f"UpdateItem {key}", exc) from None

    def trace(self, client_id: str, period: str, *, with_csv: bool = True) -> UsageTrace | None:
        """The trace of (client, month), or None; a chunk that is missing or does not match the
        head's digest is a ``GarbledResponse`` naming the trace (never silently an empty trace)."""
        key = trace_key(client_id, period)
        head = self._get(key)
        if head is None:
            return None
        text = ""
        if with_csv:
            digest, count = str(head.get("digest", "")), int(head.get("chunks", 0))
            parts = [self._get(f"{key}#{digest}#{index}") for index in range(count)]
            if any(part is None for part in parts):
                raise errors.GarbledResponse(
                    "dynamodb", f"read trace {key}", "a chunk of the trace is missing"
                )
            data = b"".join(bytes(getattr(p["data"], "value", p["data"])) for p in parts if p is not None)
            if hashlib.sha256(data).hexdigest()[:16] != digest:
                raise errors.GarbledResponse("dynamodb", f"read trace {key}", "the trace chunks do not match")
            text = zlib.decompress(data).decode("utf-8")
        return replace(_trace_head(client_id, head), usage_csv=text)

    def trace_heads(self, client_id: str, periods: Iterable[str]) -> dict[str, UsageTrace]:
        """The traces (without their CSV) of ``periods`` that exist, by period: one BatchGetItem
        per 100 months instead of a read per month (the job reads a year of them per client)."""
        keys = [trace_key(client_id, period) for period in periods]
        heads = self._batch_get(keys, f"BatchGetItem {TRACE_PREFIX}{client_id}")
        return {trace.period: trace for trace in (_trace_head(client_id, head) for head in heads.values())}

    def period_traces(self, client_ids: Iterable[str], period: str) -> dict[str, UsageTrace]:
        """The traces (without their CSV) of many clients for one period, by client id."""
        wanted = {trace_key(client_id, period): client_id for client_id in client_ids}
        heads = self._batch_get(list(wanted), f"BatchGetItem {TRACE_PREFIX}*#{period}")
        return {wanted[key]: _trace_head(wanted[key], head) for key, head in heads.items()}

    def get_many(self, keys: Iterable[str]) -> dict[str, LedgerEntry]:
        """The rows of ``keys`` that exist, by key: one BatchGetItem per 100 keys (a repeat run
        checks every invoiced client's row, and 2,000 single reads were most of its time)."""
        return {key: _entry(item) for key, item in self._batch_get(list(keys), "BatchGetItem").items()}

    def _batch_get(self, keys: list[str], operation: str) -> dict[str, dict[str, Any]]:
        """Strongly consistent reads of ``keys`` (the items found, by key), 100 per request."""
        client = self._table.meta.client  # the resource's client: it takes and returns plain values
        wanted = list(dict.fromkeys(keys))
        found: dict[str, dict[str, Any]] = {}
        for offset in range(0, len(wanted), 100):
            chunk = [{"pk": key} for key in wanted[offset : offset + 100]]
            request: dict[str, Any] = {self._table.name: {"Keys": chunk, "ConsistentRead": True}}
            for attempt in range(5):  # DynamoDB may leave keys unprocessed under load: ask again for those
                if attempt:
                    time.sleep(0.05 * 2**attempt)
                try:
                    reply = client.batch_get_item(RequestItems=request)
                except (ClientError, BotoCoreError) as exc:
                    raise aws_error("dynamodb", operation, exc) from None
                for item in reply.get("Responses", {}).get(self._table.name, []):
                    found[str(item["pk"])] = item
                request = reply.get("UnprocessedKeys") or {}
                if not request:
                    break
            else:
                raise errors.ServiceError("dynamodb", operation, "keys stayed unprocessed; try again later")
        return found

    def _get(self, key: str) -> dict[str, Any] | None:
        try:
            return self._table.get_item(Key={"pk": key}, ConsistentRead=True).get("Item")
        except (ClientError, BotoCoreError) as exc:
            raise aws_error("dynamodb", f"GetItem {key}", exc) from None

    def _put(self, key: str, item: dict[str, Any], *, tolerate_condition: bool = False, **extra: Any) -> bool:
        try:
            self._table.put_item(Item=item, **extra)
        except ClientError as exc:
            if tolerate_condition and _error_code(exc) == "ConditionalCheckFailedException":
                return False
            raise aws_error("dynamodb", f"PutItem {key}", exc) from None
        except BotoCoreError as exc:
            raise aws_error("dynamodb", f"PutItem {key}", exc) from None
        return True

    # -- lease locks

    def acquire_lock(self, name: str, owner: str, ttl_seconds: float) -> bool:
        """Take (or extend, when ``owner`` already holds it) the lock row ``lock#<name>``."""
        key = LOCK_PREFIX + name
        now = self._clock()
        lease = now + timedelta(seconds=ttl_seconds)
        item = {
            "pk": key,
            "status": "locked",
            "run_id": owner,
            "request_id": "",
            "claimed_at": _iso(now),
            "updated_at": _iso(now),
            "lease_expires_at": _epoch(lease),
            "expires_at": _epoch_int(lease + timedelta(days=1)),
            "attempts": 1,
            "attributes": {},
        }
        return self._write_if(
            "PutItem",
            key,
            Item=item,
            ConditionExpression="attribute_not_exists(#pk) OR #lease < :now OR #run = :owner",
            ExpressionAttributeNames={"#pk": "pk", "#lease": "lease_expires_at", "#run": "run_id"},
            ExpressionAttributeValues={":now": _epoch(now), ":owner": owner},
        )

    def release_lock(self, name: str, owner: str) -> None:
        """Delete the lock row if we still hold it (after our lease ran out someone else may)."""
        key = LOCK_PREFIX + name
        try:
            self._table.delete_item(
                Key={"pk": key},
                ConditionExpression="#run = :owner",
                ExpressionAttributeNames={"#run": "run_id"},
                ExpressionAttributeValues={":owner": owner},
            )
        except ClientError as exc:
            if _error_code(exc) == "ConditionalCheckFailedException":
                logger.warning("ledger: lock {name} was no longer held by {owner}", name=name, owner=owner)
                return
            raise aws_error("dynamodb", f"DeleteItem {key}", exc) from None
        except BotoCoreError as exc:
            raise aws_error("dynamodb", f"DeleteItem {key}", exc) from None

    def _deserialize(self, raw: Mapping[str, Any]) -> dict[str, Any]:
        """Items inside error responses stay in wire format ({"S": ...}) even on a Table resource."""
        return {name: self._deserializer.deserialize(value) for name, value in raw.items()}


def _trace_head(client_id: str, head: Mapping[str, Any]) -> UsageTrace:
    return UsageTrace(
        client_id=client_id,
        period=str(head.get("period", "")),
        state=str(head.get("state", "")),
        total=str(head.get("total", "")),
        invoice_id=str(head.get("invoice_id", "")),
        doc_number=str(head.get("doc_number", "")),
    )


def _entry(item: Mapping[str, Any]) -> LedgerEntry:
    return LedgerEntry(
        key=str(item["pk"]),
        status=str(item.get("status", "")),
        run_id=str(item.get("run_id", "")),
        request_id=str(item.get("request_id", "")),
        claimed_at=_parse_iso(item.get("claimed_at")),
        lease_expires_at=datetime.fromtimestamp(float(item.get("lease_expires_at", 0)), UTC),
        attributes=dict(item.get("attributes") or {}),
        previous_status=item.get("previous_status"),
        previous_run_id=item.get("previous_run_id"),
        attempts=int(item.get("attempts", 1)),
    )


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _parse_iso(value: Any) -> datetime:
    if not value:
        return datetime.fromtimestamp(0, UTC)
    parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _epoch(moment: datetime) -> Decimal:
    """Epoch seconds with millisecond precision, as DynamoDB wants numbers (Decimal, not float)."""
    return Decimal(math.floor(moment.timestamp() * 1000)) / 1000


def _epoch_int(moment: datetime) -> int:
    return int(moment.timestamp())


def _to_dynamo(value: Any) -> Any:
    """Make a value storable: floats become Decimal, datetimes ISO text, tuples lists."""
    if isinstance(value, bool) or value is None or isinstance(value, str | int | Decimal | bytes):
        return value
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, datetime):
        return _iso(value)
    if isinstance(value, Mapping):
        return {str(k): _to_dynamo(v) for k, v in value.items()}
    if isinstance(value, Iterable):
        return [_to_dynamo(v) for v in value]
    return str(value)


def _attribute_updates(attrs: Mapping[str, Any], names: dict[str, str], values: dict[str, Any]) -> list[str]:
    """SET actions that merge ``attrs`` into the row's ``attributes`` map, one key at a time (so
    keys written by earlier runs stay); adds the placeholders they use to ``names``/``values``."""
    actions = []
    for index, (name, value) in enumerate(attrs.items()):
        names["#attrs"] = "attributes"
        names[f"#a{index}"] = name
        values[f":a{index}"] = value
        actions.append(f"#attrs.#a{index} = :a{index}")
    return actions


# --------------------------------------------------------------------------- metric


def publish_run_metric(cloudwatch: Any, namespace: str, job_name: str, failed: bool) -> None:
    """Publish RunCompleted=1 and RunFailed=0/1 for ``job_name``; the missed-run alarm needs them."""
    dimensions = [{"Name": "Job", "Value": job_name}]
    now = utcnow()
    try:
        cloudwatch.put_metric_data(
            Namespace=namespace,
            MetricData=[
                {
                    "MetricName": "RunCompleted",
                    "Dimensions": dimensions,
                    "Timestamp": now,
                    "Value": 1.0,
                    "Unit": "Count",
                },
                {
                    "MetricName": "RunFailed",
                    "Dimensions": dimensions,
                    "Timestamp": now,
                    "Value": 1.0 if failed else 0.0,
                    "Unit": "Count",
                },
            ],
        )
    except (ClientError, BotoCoreError) as exc:
        raise aws_error("cloudwatch", f"PutMetricData {namespace}", exc) from None


def _credentials(value: Mapping[str, Any]) -> dict[str, Any]:
    """The values of a secret worth masking: everything but the account identifiers."""
    return {key: item for key, item in value.items() if key not in IDENTIFIER_FIELDS}
