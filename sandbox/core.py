"""The sandbox: moto + the four stand-ins + a control endpoint, started in threads of one process.

Tests use it in-process (``with Sandbox(tmp_path) as sandbox: env = sandbox.env``); ``python -m sandbox
up`` runs the very same object in a detached daemon. Everything it knows lives in the state dir.
"""

from __future__ import annotations

import fcntl
import os
import secrets
import shutil
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from flask import Flask, Response, jsonify, request
from loguru import logger

from sandbox import report, tls
from sandbox import scenario as scenarios
from sandbox.aws import AwsSandbox
from sandbox.clickup import ClickUpStandIn
from sandbox.common import SandboxError, default_state_dir
from sandbox.faults import SERVICES, FaultInjector, FaultMiddleware, RequestRecorder
from sandbox.graph import GraphStandIn, graph_headers
from sandbox.qbo import QboStandIn, intuit_headers
from sandbox.robocorp import RobocorpStandIn
from sandbox.serving import ServedApp
from sandbox.store import JsonStore, dumps, read_json, write_atomic

WIPED = (
    "qbo",
    "graph",
    "clickup",
    "robocorp",
    "mail",
    "sharepoint",
    "runs",
    "requests.log",
    "faults.json",
    "seed.json",
    "scenario.json",
    "aws-snapshot.json",
)
SERVER_NAMES = ("qbo", "identity", "graph", "clickup", "robocorp", "control")
ENV_FOR_SERVER = {
    "qbo": "QBO_BASE_URL",
    "identity": "MSGRAPH_AUTHORITY_URL",
    "graph": "MSGRAPH_BASE_URL",
    "clickup": "CLICKUP_BASE_URL",
    "robocorp": "ROBOCORP_BASE_URL",
    "control": "SANDBOX_CONTROL_URL",
    "moto": "AWS_ENDPOINT_URL",
}


class Sandbox:
    """One sandbox on one state dir. ``scenario`` (path, dict or None = default) seeds an unseeded dir."""

    def __init__(
        self, state_dir: str | Path | None = None, scenario: str | Path | dict[str, Any] | None = None
    ) -> None:
        self.state_dir = Path(state_dir).resolve() if state_dir else default_state_dir()
        self.scenario_source = scenario
        self.store = JsonStore(self.state_dir)
        self.mail_dir = self.state_dir / "mail"
        self.sharepoint_dir = self.state_dir / "sharepoint"
        self.qbo = QboStandIn(self.store, self.mail_dir)
        self.graph = GraphStandIn(self.store, self.mail_dir, self.sharepoint_dir)
        self.clickup = ClickUpStandIn(self.store)
        self.robocorp = RobocorpStandIn(self.store)
        self.faults = FaultInjector(on_change=self._save_faults)
        self.recorder = RequestRecorder(self.state_dir / "requests.log")
        self.aws: AwsSandbox | None = None
        self.servers: dict[str, ServedApp] = {}
        self._stop = threading.Event()
        self._lock_handle: Any = None
        self._env: dict[str, str] = {}
        self._mutex = threading.RLock()
        self.on_shutdown: Callable[[], None] | None = None
        self.control_token = ""

    # --- lifecycle ------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return bool(self.servers)

    @property
    def env(self) -> dict[str, str]:
        """The environment a job needs to run against this sandbox (see CONTRACTS "Sandbox")."""
        if not self.running:
            raise SandboxError("the sandbox is not running; call start() first")
        return dict(self._env)

    def start(self) -> dict[str, str]:
        """Start everything (seeding the scenario when the state dir was never seeded); return the env."""
        with self._mutex:
            if self.running:
                return self.env
            self.state_dir.mkdir(parents=True, exist_ok=True)
            self._take_lock()
            try:
                return self._start()
            except BaseException:
                self._shutdown_servers()
                self._release_lock()
                raise

    def _start(self) -> dict[str, str]:
        ca = tls.ensure_certificates(self.state_dir)
        context = tls.server_context(self.state_dir)
        self.control_token = self._token()
        previous = read_json(self.state_dir / "env.json", {}) or {}
        ports = {name: urlsplit(previous.get(var, "")).port or 0 for name, var in ENV_FOR_SERVER.items()}
        seeded = (self.state_dir / "seed.json").exists()
        chosen = scenarios.load(self.scenario_source) if not seeded else None
        settings = (chosen or read_json(self.state_dir / "scenario.json", {}) or scenarios.load(None))[
            "settings"
        ]
        self._stop.clear()
        self.aws = AwsSandbox(self.state_dir, settings["AWS_REGION"])
        moto_url = self.aws.start(ports["moto"])
        apps = {
            "qbo": (
                self.qbo.app(),
                lambda path: "qbo_auth" if path.startswith("/oauth2/") else "qbo",
                intuit_headers,
            ),
            "identity": (self.graph.identity_app(), lambda path: "graph_auth", graph_headers),
            "graph": (self.graph.graph_app(), lambda path: "graph", graph_headers),
            "clickup": (self.clickup.app(), lambda path: "clickup", None),
            "robocorp": (self.robocorp.app(), lambda path: "robocorp", None),
        }
        for name, (app, service_for, headers) in apps.items():
            wrapped = FaultMiddleware(app, service_for, self.faults, self.recorder, self._stop, headers)
            self.servers[name] = ServedApp(name, wrapped, port=ports[name], ssl_context=context).start()
        self.servers["control"] = ServedApp(
            "control", self._control_app(), port=ports["control"], ssl_context=context
        ).start()
        if chosen is not None:
            self._seed(chosen)
        else:
            self.aws.restore()
            self.faults.load(read_json(self.state_dir / "faults.json", {}))
        urls = {name: server.url for name, server in self.servers.items()}
        self._env = {
            **settings,
            "AWS_ENDPOINT_URL": moto_url,
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_REGION": settings["AWS_REGION"],
            "AWS_DEFAULT_REGION": settings["AWS_REGION"],
            "AWS_EC2_METADATA_DISABLED": "true",
            "QBO_BASE_URL": urls["qbo"],
            "QBO_TOKEN_URL": f"{urls['qbo']}/oauth2/v1/tokens/bearer",
            "QBO_AUTHORIZE_URL": f"{urls['qbo']}/connect/oauth2",
            "MSGRAPH_BASE_URL": f"{urls['graph']}/v1.0",
            "MSGRAPH_AUTHORITY_URL": urls["identity"],
            "CLICKUP_BASE_URL": f"{urls['clickup']}/api/v2",
            "ROBOCORP_BASE_URL": f"{urls['robocorp']}/api/v1",
            "REQUESTS_CA_BUNDLE": str(ca),
            "SANDBOX_DIR": str(self.state_dir),
            "SANDBOX_CONTROL_URL": urls["control"],
        }
        write_atomic(self.state_dir / "env.json", dumps(self._env, indent=1))
        logger.info("sandbox started in {dir}", dir=self.state_dir)
        return dict(self._env)

    def stop(self) -> None:
        """Stop everything; the AWS state is snapshotted first, the rest is written to files."""
        with self._mutex:
            if not self.running:
                return
            self._stop.set()
            self._shutdown_servers()
            self.store.flush()  # the documents written behind (store.DEFERRED)
            self._release_lock()

    def _shutdown_servers(self) -> None:
        stoppers = [threading.Thread(target=server.stop) for server in self.servers.values()]
        for thread in stoppers:
            thread.start()
        if self.aws is not None:
            try:
                self.aws.stop()
            finally:
                self.aws = None
        for thread in stoppers:
            thread.join()
        self.servers.clear()

    @contextmanager
    def environ(self) -> Iterator[dict[str, str]]:
        """Put the env into ``os.environ`` for the block (requests lets REQUESTS_CA_BUNDLE from the
        environment override ``Session.verify``, so in-process callers need it there)."""
        env = self.env
        saved = {key: os.environ.get(key) for key in env}
        os.environ.update(env)
        try:
            yield env
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value

    def __enter__(self) -> Sandbox:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _take_lock(self) -> None:
        handle = open(self.state_dir / "sandbox.lock", "w")  # noqa: SIM115 - held for the sandbox's lifetime
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            raise SandboxError(
                f"another sandbox is running on {self.state_dir} (stop it with `python -m sandbox down`)"
            ) from None
        self._lock_handle = handle

    def _release_lock(self) -> None:
        if self._lock_handle is not None:
            fcntl.flock(self._lock_handle, fcntl.LOCK_UN)
            self._lock_handle.close()
            self._lock_handle = None

    def _token(self) -> str:
        path = self.state_dir / "control.token"
        if not path.exists():
            write_atomic(path, secrets.token_urlsafe(24), mode=0o600)
        return path.read_text().strip()

    # --- seeding --------------------------------------------------------------------------------

    def _seed(self, chosen: dict[str, Any]) -> None:
        assert self.aws is not None
        with self.store.lock:
            self.store.forget()
            for name in WIPED:
                path = self.state_dir / name
                if path.is_dir():
                    shutil.rmtree(path)
                else:
                    path.unlink(missing_ok=True)
            self.faults.clear()
            self.recorder.reset()
            self.aws.wipe()
            settings = chosen["settings"]
            self.qbo.seed(chosen["qbo"])
            self.graph.seed(chosen["graph"])
            self.clickup.seed(chosen["clickup"])
            self.robocorp.seed(chosen["robocorp"])
            self.mail_dir.mkdir(parents=True, exist_ok=True)
            self.sharepoint_dir.mkdir(parents=True, exist_ok=True)
            self.aws.create_table(settings["DYNAMODB_TABLE_ROBOCORP_CLIENTS"], "client_id")
            self.aws.create_table(settings["LEDGER_TABLE"], "pk", ttl_attribute="expires_at")
            self.aws.put_items(settings["DYNAMODB_TABLE_ROBOCORP_CLIENTS"], chosen.get("registry", []))
            self.aws.put_items(settings["LEDGER_TABLE"], chosen.get("ledger", []))
            for name, value in scenarios.secrets(chosen).items():
                self.aws.put_secret(name, value)
            self.aws.save_snapshot()
            write_atomic(self.state_dir / "scenario.json", dumps(chosen, indent=1))
            write_atomic(
                self.state_dir / "seed.json",
                dumps(
                    {
                        "scenario": chosen.get("name", "custom"),
                        "seeded_at": datetime.now(UTC).isoformat(timespec="seconds"),
                    }
                ),
            )

    def reset(self, scenario: str | Path | dict[str, Any] | None = None) -> dict[str, str]:
        """Wipe the state and seed ``scenario`` (default: the one given to the constructor)."""
        if scenario is not None:
            self.scenario_source = scenario
        chosen = scenarios.load(self.scenario_source)
        with self._mutex:
            if not self.running:
                (self.state_dir / "seed.json").unlink(missing_ok=True)
                return self.start()
            self._seed(chosen)
            self._env.update(chosen["settings"])
            write_atomic(self.state_dir / "env.json", dumps(self._env, indent=1))
            return self.env

    # --- runtime switches -----------------------------------------------------------------------

    def set_faults(self, service: str, **faults: Any) -> dict[str, Any]:
        """Replace a service's random faults/latency/rate limits (see faults.FaultConfig)."""
        self.faults.set(service, **faults)
        return self.faults.describe()

    def fail_next(self, service: str, count: int, status: int | str = 503, match: str | None = None) -> None:
        """The next ``count`` calls (matching regex ``match`` on "METHOD /path?query") get ``status``
        (an HTTP status, or "timeout", "timeout-before", "drop", "drop-after")."""
        self.faults.fail_next(service, count, status, match)

    def clear_faults(self, service: str | None = None) -> None:
        self.faults.clear(service)

    def expire_tokens(self, service: str = "qbo") -> None:
        """Invalidate every access token the stand-in issued (the next call gets 401)."""
        if service == "qbo":
            self.qbo.expire_access_tokens()
        elif service == "graph":
            self.graph.expire_access_tokens()
        else:
            raise ValueError("service must be 'qbo' or 'graph'")

    def set_qbo_options(self, **options: Any) -> None:
        """access_token_ttl_seconds, requestid_replay ("replay" | "error600"), strict_query_fields."""
        self.qbo.set_options(**options)

    def requests(self, service: str | None = None) -> list[dict[str, Any]]:
        """Calls served so far (method, path, query, status, fault), oldest first."""
        return self.recorder.calls(service)

    def aws_client(self, name: str) -> Any:
        if self.aws is None:
            raise SandboxError("the sandbox is not running")
        return self.aws.client(name)

    def snapshot_aws(self) -> None:
        if self.aws is not None:
            self.aws.save_snapshot()

    def _save_faults(self, described: dict[str, Any]) -> None:
        write_atomic(self.state_dir / "faults.json", dumps(described, indent=1))

    # --- state ----------------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """Invoices, mails (parsed), SharePoint files, ledger rows, registry, secret versions, faults,
        metrics and request counts per service."""
        self.store.flush()  # it reads the files
        if self.aws is None:
            data = read_json(self.state_dir / "aws-snapshot.json", {})
            return report.collect_state(self.state_dir, aws_data=data, running=False)
        data = self.aws.snapshot()
        return report.collect_state(
            self.state_dir,
            aws_data=data,
            requests=self.recorder.summary(),
            faults=self.faults.describe(),
            metrics=self._metrics(),
            running=True,
        )

    def _metrics(self) -> list[dict[str, Any]]:
        assert self.aws is not None
        cloudwatch = self.aws.client("cloudwatch")
        out = []
        try:
            for metric in cloudwatch.list_metrics().get("Metrics", []):
                stats = cloudwatch.get_metric_statistics(
                    Namespace=metric["Namespace"],
                    MetricName=metric["MetricName"],
                    Dimensions=metric.get("Dimensions", []),
                    StartTime=datetime(2000, 1, 1, tzinfo=UTC),
                    EndTime=datetime(2100, 1, 1, tzinfo=UTC),
                    Period=86400 * 365,
                    Statistics=["SampleCount", "Sum"],
                )
                samples = sum(int(point.get("SampleCount", 0)) for point in stats.get("Datapoints", []))
                dimensions = ",".join(f"{d['Name']}={d['Value']}" for d in metric.get("Dimensions", []))
                out.append(
                    {
                        "namespace": metric["Namespace"],
                        "name": metric["MetricName"],
                        "dimensions": dimensions,
                        "samples": samples,
                    }
                )
        except Exception as exc:  # noqa: BLE001 - metrics are informative only
            logger.debug("metrics unavailable: {error}", error=str(exc))
        return out

    # --- control endpoint -----------------------------------------------------------------------

    def _control_app(self) -> Flask:
        app = Flask("sandbox-control")

        @app.before_request
        def authenticate() -> Response | None:
            if request.path != "/health" and request.headers.get("X-Sandbox-Token") != self.control_token:
                return Response("forbidden\n", status=403)
            return None

        @app.errorhandler(ValueError)
        def bad_request(exc: ValueError) -> Response:
            return Response(dumps({"error": str(exc)}), status=400, content_type="application/json")

        @app.get("/health")
        def health() -> Response:
            return jsonify({"ok": True, "pid": os.getpid(), "state_dir": str(self.state_dir)})

        @app.get("/env")
        def env() -> Response:
            return jsonify(self._env)

        @app.get("/state")
        def state() -> Response:
            return Response(dumps(self.state()), content_type="application/json")

        @app.get("/faults")
        def get_faults() -> Response:
            return jsonify(self.faults.describe())

        @app.post("/faults/<service>")
        def set_faults(service: str) -> Response:
            body = request.get_json(force=True) or {}
            if "fail_next" in body:
                self.fail_next(service, int(body["fail_next"]), body.get("status", 503), body.get("match"))
                settings = {k: v for k, v in body.items() if k not in ("fail_next", "status", "match")}
                if settings:
                    self.set_faults(service, **settings)
            else:
                self.set_faults(service, **body)
            return jsonify(self.faults.describe())

        @app.delete("/faults")
        @app.delete("/faults/<service>")
        def clear_faults(service: str | None = None) -> Response:
            if service is not None and service not in SERVICES:
                raise ValueError(f"unknown service {service!r}")
            self.clear_faults(service)
            return jsonify(self.faults.describe())

        @app.post("/expire-tokens/<service>")
        def expire(service: str) -> Response:
            self.expire_tokens(service)
            return jsonify({"ok": True})

        @app.post("/qbo-options")
        def qbo_options() -> Response:
            self.set_qbo_options(**(request.get_json(force=True) or {}))
            return jsonify({"ok": True})

        @app.post("/reset")
        def reset() -> Response:
            body = request.get_json(force=True) or {}
            source = body.get("scenario_path") or body.get("scenario")
            self.reset(source if source else scenarios.DEFAULT_SCENARIO)
            return jsonify({"ok": True, "seed": read_json(self.state_dir / "seed.json")})

        @app.post("/snapshot")
        def snapshot() -> Response:
            self.snapshot_aws()
            return jsonify({"ok": True})

        @app.post("/shutdown")
        def shutdown() -> Response:
            if self.on_shutdown is not None:
                self.on_shutdown()
            return jsonify({"ok": True, "pid": os.getpid()})

        return app
