"""AWS for the sandbox: a moto server (Secrets Manager, DynamoDB, CloudWatch) plus snapshots.

moto keeps everything in memory, so the state is written to ``aws-snapshot.json`` after seeding,
shortly after every change (a background thread) and on stop, and restored on start: the registry,
the ledger and every secret version survive ``sandbox down``/``up``.

moto's backends are process-wide; each sandbox gets its own random AWS account (a header added in
front of moto), so several sandboxes in one test process never see each other's tables.
"""

from __future__ import annotations

import json
import random
import threading
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from boto3.dynamodb.types import Binary
from loguru import logger

from sandbox.store import read_json, write_atomic

SNAPSHOT_FILE = "aws-snapshot.json"
SNAPSHOT_MIN_PAUSE = 0.5  # seconds between snapshots at the least (see AwsSandbox._save_loop)
READ_ACTIONS = (".Get", ".Describe", ".List", ".Scan", ".Query", ".BatchGet")
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"}


class _AccountMiddleware:
    """Routes every call into this sandbox's account and notes when something was written."""

    def __init__(self, app: Any, owner: AwsSandbox) -> None:
        self.app = app
        self.owner = owner

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        environ["HTTP_X_MOTO_ACCOUNT_ID"] = self.owner.account_id
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        if environ.get("REQUEST_METHOD") == "POST" and not any(action in target for action in READ_ACTIONS):
            self.owner.dirty.set()
        return self.app(environ, start_response)


def _plain(value: Any) -> Any:
    """DynamoDB values (Decimal, sets) as JSON-friendly values."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else str(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, set):
        return sorted(_plain(v) for v in value)
    if isinstance(value, Binary):  # ledger trace chunks are compressed: show their size only
        return f"<{len(value.value)} bytes>"
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


def _to_dynamo(value: Any) -> Any:
    """Scenario JSON (floats parsed as Decimal already) to what boto3's serializer accepts."""
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, dict):
        return {k: _to_dynamo(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_to_dynamo(v) for v in value]
    return value


class AwsSandbox:
    def __init__(self, state_dir: Path, region: str) -> None:
        self.state_dir = state_dir
        self.region = region
        self.account_id = self._new_account()
        self.dirty = threading.Event()
        self.server: Any = None
        self._clients: dict[str, Any] = {}
        self._stop = threading.Event()
        self._saver: threading.Thread | None = None
        self._snapshot_lock = threading.Lock()
        self.version_dates: dict[str, str] = {}

    @staticmethod
    def _new_account() -> str:
        return str(random.SystemRandom().randrange(10**11, 10**12))

    # --- lifecycle ------------------------------------------------------------------------------

    def start(self, port: int = 0) -> str:
        from moto.moto_server.werkzeug_app import (
            DomainDispatcherApplication,
            MotoRequestHandler,
            create_backend_app,
        )

        from sandbox.serving import QuietHandler, ServedApp

        class Handler(MotoRequestHandler):
            log_request = QuietHandler.log_request
            log = QuietHandler.log
            finish = QuietHandler.finish

        app = _AccountMiddleware(DomainDispatcherApplication(create_backend_app), self)
        self.server = ServedApp("moto", app, port=port, handler=Handler).start()
        self._saver = threading.Thread(target=self._save_loop, name="sandbox-aws-snapshots", daemon=True)
        self._saver.start()
        return self.server.url

    def stop(self) -> None:
        self._stop.set()
        if self._saver is not None:
            self._saver.join(timeout=5)
        if self.server is not None:
            try:
                self.save_snapshot()
            finally:
                self.server.stop()
                self.server = None

    @property
    def endpoint(self) -> str:
        assert self.server is not None, "start() first"
        return self.server.url

    def client(self, name: str) -> Any:
        if name not in self._clients:
            import boto3
            from botocore.config import Config

            self._clients[name] = boto3.session.Session().client(
                name,
                region_name=self.region,
                endpoint_url=self.endpoint,
                aws_access_key_id="test",
                aws_secret_access_key="test",
                config=Config(
                    retries={"max_attempts": 2, "mode": "standard"}, connect_timeout=5, read_timeout=30
                ),
            )
        return self._clients[name]

    def wipe(self) -> None:
        """Forget everything: a fresh account is an empty one."""
        self.account_id = self._new_account()
        self.version_dates = {}
        (self.state_dir / SNAPSHOT_FILE).unlink(missing_ok=True)

    # --- seeding --------------------------------------------------------------------------------

    def create_table(self, name: str, key: str, ttl_attribute: str | None = None) -> None:
        dynamodb = self.client("dynamodb")
        dynamodb.create_table(
            TableName=name,
            KeySchema=[{"AttributeName": key, "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": key, "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        if ttl_attribute:
            dynamodb.update_time_to_live(
                TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl_attribute}
            )

    def put_items(self, table: str, items: list[dict[str, Any]]) -> None:
        from boto3.dynamodb.types import TypeSerializer

        serializer = TypeSerializer()
        typed = [{k: serializer.serialize(_to_dynamo(v)) for k, v in item.items()} for item in items]
        self._write_typed(table, typed)

    def _write_typed(self, table: str, items: list[dict[str, Any]]) -> None:
        dynamodb = self.client("dynamodb")
        for start in range(0, len(items), 25):
            batch = [{"PutRequest": {"Item": item}} for item in items[start : start + 25]]
            dynamodb.batch_write_item(RequestItems={table: batch})

    def put_secret(self, name: str, value: dict[str, Any], version_id: str | None = None) -> str:
        secrets = self.client("secretsmanager")
        text = json.dumps(value)
        extra = {"ClientRequestToken": version_id} if version_id else {}
        try:
            return secrets.put_secret_value(SecretId=name, SecretString=text, **extra)["VersionId"]
        except secrets.exceptions.ResourceNotFoundException:
            return secrets.create_secret(Name=name, SecretString=text, **extra)["VersionId"]

    # --- snapshots ------------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        dynamodb, secrets = self.client("dynamodb"), self.client("secretsmanager")
        tables = []
        for name in (
            dynamodb.get_paginator("list_tables").paginate().build_full_result().get("TableNames", [])
        ):
            described = dynamodb.describe_table(TableName=name)["Table"]
            ttl = dynamodb.describe_time_to_live(TableName=name).get("TimeToLiveDescription", {})
            items = (
                dynamodb.get_paginator("scan").paginate(TableName=name).build_full_result().get("Items", [])
            )
            tables.append(
                {
                    "TableName": name,
                    "KeySchema": described["KeySchema"],
                    "AttributeDefinitions": described["AttributeDefinitions"],
                    "TtlAttribute": ttl.get("AttributeName")
                    if ttl.get("TimeToLiveStatus") == "ENABLED"
                    else None,
                    "Items": items,
                }
            )
        out_secrets = []
        for entry in (
            secrets.get_paginator("list_secrets").paginate().build_full_result().get("SecretList", [])
        ):
            versions = []
            for version in self._versions(entry["Name"]):
                value = secrets.get_secret_value(SecretId=entry["Name"], VersionId=version["VersionId"])
                created = self.version_dates.setdefault(version["VersionId"], version["CreatedDate"])
                versions.append(
                    {
                        "VersionId": version["VersionId"],
                        "CreatedDate": created,
                        "Stages": version["Stages"],
                        "SecretString": value.get("SecretString"),
                    }
                )
            out_secrets.append({"Name": entry["Name"], "Versions": versions})
        return {
            "version": 1,
            "taken_at": datetime.now(UTC).isoformat(),
            "tables": tables,
            "secrets": out_secrets,
        }

    def _versions(self, name: str) -> list[dict[str, Any]]:
        """Every version of a secret, oldest first."""
        listed = self.client("secretsmanager").list_secret_version_ids(SecretId=name, IncludeDeprecated=True)[
            "Versions"
        ]
        out = []
        for position, version in enumerate(listed):
            created = version.get("CreatedDate")
            stamp = created.astimezone(UTC).isoformat() if isinstance(created, datetime) else str(created)
            out.append(
                {
                    "VersionId": version["VersionId"],
                    "Stages": version.get("VersionStages", []),
                    "CreatedDate": stamp,
                    "_n": position,
                }
            )
        out.sort(key=lambda v: (self.version_dates.get(v["VersionId"], v["CreatedDate"]), v["_n"]))
        for version in out:
            version.pop("_n")
        return out

    def save_snapshot(self) -> None:
        with self._snapshot_lock:
            self.dirty.clear()
            data = self.snapshot()
            write_atomic(self.state_dir / SNAPSHOT_FILE, json.dumps(data, indent=1, default=str), mode=0o600)

    def restore(self) -> bool:
        data = read_json(self.state_dir / SNAPSHOT_FILE)
        if not data:
            return False
        dynamodb, secrets = self.client("dynamodb"), self.client("secretsmanager")
        for table in data["tables"]:
            dynamodb.create_table(
                TableName=table["TableName"],
                KeySchema=table["KeySchema"],
                AttributeDefinitions=table["AttributeDefinitions"],
                BillingMode="PAY_PER_REQUEST",
            )
            if table.get("TtlAttribute"):
                dynamodb.update_time_to_live(
                    TableName=table["TableName"],
                    TimeToLiveSpecification={"Enabled": True, "AttributeName": table["TtlAttribute"]},
                )
            self._write_typed(table["TableName"], table["Items"])
        for secret in data["secrets"]:
            for index, version in enumerate(secret["Versions"]):
                self.version_dates[version["VersionId"]] = version["CreatedDate"]
                if index == 0:
                    secrets.create_secret(
                        Name=secret["Name"],
                        SecretString=version["SecretString"],
                        ClientRequestToken=version["VersionId"],
                    )
                else:
                    secrets.put_secret_value(
                        SecretId=secret["Name"],
                        SecretString=version["SecretString"],
                        ClientRequestToken=version["VersionId"],
                    )
        self.dirty.clear()
        return True

    def _save_loop(self) -> None:
        """Snapshot after changes, but spend at most a tenth of the time on it: a snapshot reads
        every table whole, and at a 2,000-client bench's size (8,000 ledger rows, usage CSVs
        included) doing that every 0.7 s took a third of the sandbox's CPU, so moto, not the
        services' limits, set the pace. ``stop`` always saves a last one."""
        pause = SNAPSHOT_MIN_PAUSE
        while not self._stop.wait(pause):
            if self.dirty.is_set():
                started = time.monotonic()
                try:
                    time.sleep(0.2)  # let a burst of writes finish first
                    self.save_snapshot()
                except Exception as exc:  # noqa: BLE001 - keep serving; the next change retries
                    logger.warning("aws snapshot failed: {error}", error=str(exc))
                    self.dirty.set()
                pause = max(SNAPSHOT_MIN_PAUSE, 9 * (time.monotonic() - started))


# --- reading state (live or from a snapshot) ----------------------------------------------------


def _typed_to_plain(item: dict[str, Any]) -> dict[str, Any]:
    from boto3.dynamodb.types import TypeDeserializer

    deserializer = TypeDeserializer()
    return {k: _plain(deserializer.deserialize(v)) for k, v in item.items()}


def describe(data: dict[str, Any]) -> dict[str, Any]:
    """Tables (plain items) and secret versions (ids, stages, changed field names; never values)."""
    tables = {
        t["TableName"]: sorted(
            (_typed_to_plain(i) for i in t["Items"]), key=lambda i: json.dumps(i, sort_keys=True, default=str)
        )
        for t in data.get("tables", [])
    }
    secrets: dict[str, list[dict[str, Any]]] = {}
    for secret in data.get("secrets", []):
        history, previous = [], None
        for version in secret["Versions"]:
            try:
                value = json.loads(version.get("SecretString") or "null")
            except ValueError:
                value = None
            fields = sorted(value) if isinstance(value, dict) else []
            if previous is None:
                changed = ["(created)"]
            elif isinstance(value, dict) and isinstance(previous, dict):
                changed = sorted(k for k in set(value) | set(previous) if value.get(k) != previous.get(k))
            else:
                changed = ["(not JSON)"]
            history.append(
                {
                    "version_id": version["VersionId"],
                    "created": version["CreatedDate"],
                    "stages": version.get("Stages", []),
                    "fields": fields,
                    "changed": changed,
                }
            )
            previous = value
        secrets[secret["Name"]] = history
    return {"tables": tables, "secrets": secrets}
