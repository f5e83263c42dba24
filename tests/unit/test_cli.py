"""The container entrypoint: arguments, exit codes, the summary line and file, and no leaked secret."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from loguru import logger

import integrations.aws
from integrations import errors
from integrations.cli import JobOptions, JobOutcome, format_table, parse_args, run
from integrations.config import Settings
from integrations.errors import StartupError
from integrations.logging import register_secret
from tests.settings import VALID_ENV

ENV = VALID_ENV
SECRET = "sk-live-refresh-token-42"


@pytest.fixture(autouse=True)
def _restore_loguru() -> Iterator[None]:
    yield
    logger.remove()
    logger.add(sys.stderr)


@pytest.fixture(autouse=True)
def _fake_aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """The entrypoint wires the AWS clients (no call is made): give boto3 something to find."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")


@pytest.fixture(autouse=True)
def metrics(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, bool]]:
    """Record the success metric instead of calling CloudWatch."""
    published: list[tuple[str, bool]] = []

    def fake(cloudwatch: Any, namespace: str, job_name: str, failed: bool) -> None:
        published.append((job_name, failed))

    monkeypatch.setattr(integrations.aws, "publish_run_metric", fake)
    return published


class FakeJob:
    """Stands in for a job entry point: records its call, then returns or raises what it is told."""

    def __init__(self, result: JobOutcome | Exception | Callable[[], JobOutcome]):
        self.result = result
        self.calls: list[tuple[Settings, JobOptions]] = []
        self.loaded: list[str] = []

    def load(self, name: str) -> Callable[[Settings, JobOptions], JobOutcome]:
        self.loaded.append(name)
        return self

    def __call__(self, settings: Settings, options: JobOptions, services: Any) -> JobOutcome:
        self.calls.append((settings, options))
        if isinstance(self.result, Exception):
            raise self.result
        if callable(self.result):
            return self.result()
        return self.result


def log_lines(err: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in err.splitlines() if line.startswith("{")]


# --------------------------------------------------------------------------- arguments


def test_arguments_are_parsed_into_job_options() -> None:
    job, options = parse_args(
        ["--create-invoices", "--dry-run", "--period", "2026-10", "--client", "10002", "--client", "10003"]
    )
    assert job == "create-invoices"
    assert options == JobOptions(dry_run=True, period="2026-10", clients=("10002", "10003"))
    assert parse_args(["--send-invoices"]) == ("send-invoices", JobOptions())


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["--create-invoices", "--send-invoices"],
        ["--create-invoices", "--period", "2026-13"],
        ["--create-invoices", "--period", "10/2026"],
        ["--send-invoices", "--client", "Acme"],
        ["--create-invoices", "--unknown"],
    ],
)
def test_bad_arguments_exit_2_before_anything_runs(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    job = FakeJob(JobOutcome(0))
    assert run(argv, ENV, job_loader=job.load) == 2
    assert job.calls == []
    assert "usage: invoice-processor" in capsys.readouterr().err


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["--help"], ENV, job_loader=FakeJob(JobOutcome(0)).load) == 0
    assert "--create-invoices" in capsys.readouterr().out


# --------------------------------------------------------------------------- exit codes


@pytest.mark.parametrize("code", [0, 1])
def test_job_exit_code_is_passed_through(code: int, capsys: pytest.CaptureFixture[str]) -> None:
    job = FakeJob(JobOutcome(code, {"created": 3}))
    assert (
        run(["--create-invoices", "--period", "2026-10", "--client", "10002"], ENV, job_loader=job.load)
        == code
    )
    assert job.loaded == ["create-invoices"]
    ((settings, options),) = job.calls
    assert settings.ledger_table == "qbo-invoice-processor-ledger"
    assert options == JobOptions(dry_run=False, period="2026-10", clients=("10002",))


def test_bad_configuration_exits_2_naming_every_problem(capsys: pytest.CaptureFixture[str]) -> None:
    env = {**ENV, "LEDGER_TABLE": "", "SENDER_EMAIL": "nobody", "LOG_FORMAT": "xml"}
    job = FakeJob(JobOutcome(0))

    assert run(["--send-invoices"], env, job_loader=job.load) == 2

    assert job.calls == []
    messages = " ".join(line["record"]["message"] for line in log_lines(capsys.readouterr().err))
    assert "LEDGER_TABLE is required but not set" in messages
    assert "SENDER_EMAIL must be one email address (got 'nobody')" in messages
    assert "LOG_FORMAT must be one of json, pretty (got 'xml')" in messages


def test_reauthorization_exits_2_with_instructions(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    job = FakeJob(errors.ReauthorizationRequired("qbo", "refresh token", "invalid_grant"))
    summary_path = tmp_path / "summary.json"

    assert run(["--create-invoices"], {**ENV, "SUMMARY_PATH": str(summary_path)}, job_loader=job.load) == 2

    err = capsys.readouterr().err
    (error_line,) = [line for line in log_lines(err) if line["record"]["level"]["name"] == "ERROR"]
    message = error_line["record"]["message"]
    assert "invalid_grant" in message
    assert "reconnected" in message and "make qbo-auth" in message and "refresh token" in message
    assert "reconnected" in json.loads(summary_path.read_text())["error"]


def test_startup_error_exits_2(capsys: pytest.CaptureFixture[str], metrics: list) -> None:
    job = FakeJob(StartupError("secret QBO/10000 cannot be read"))
    assert run(["--send-invoices"], ENV, job_loader=job.load) == 2
    assert "cannot start: secret QBO/10000 cannot be read" in capsys.readouterr().err
    assert metrics == []  # a run that could not start is not a completed run


def test_unexpected_exception_exits_1_and_is_logged(capsys: pytest.CaptureFixture[str]) -> None:
    job = FakeJob(ZeroDivisionError("division by zero in pricing"))

    assert run(["--create-invoices"], ENV, job_loader=job.load) == 1

    lines = log_lines(capsys.readouterr().err)
    (error_line,) = [line for line in lines if line["record"]["level"]["name"] == "ERROR"]
    assert "run failed unexpectedly: division by zero in pricing" in error_line["record"]["message"]
    assert error_line["record"]["exception"]["type"] == "ZeroDivisionError"
    assert (
        lines[-1]["record"]["extra"]["summary"]["error"] == "ZeroDivisionError: division by zero in pricing"
    )


# --------------------------------------------------------------------------- summary


def test_summary_file_is_written_as_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "out" / "summary.json"
    path.parent.mkdir()
    table = [{"client": "10002", "invoice": "10002-202610", "total": "1234.50"}]
    job = FakeJob(JobOutcome(1, {"created": 1, "failed": ["10003"]}, table))

    assert (
        run(["--create-invoices", "--dry-run"], {**ENV, "SUMMARY_PATH": str(path)}, job_loader=job.load) == 1
    )

    written = json.loads(path.read_text())
    assert written["job"] == "create-invoices"
    assert written["exit_code"] == 1
    assert written["dry_run"] is True
    assert written["created"] == 1 and written["failed"] == ["10003"]
    assert written["table"] == table
    assert isinstance(written["seconds"], int | float)


def test_final_summary_is_one_json_line(capsys: pytest.CaptureFixture[str]) -> None:
    job = FakeJob(JobOutcome(0, {"sent": 2, "note": "multi\nline"}))

    assert run(["--send-invoices"], ENV, job_loader=job.load) == 0

    last = capsys.readouterr().err.splitlines()[-1]
    record = json.loads(last)["record"]
    assert record["message"] == "run finished: send-invoices exit 0"
    summary = record["extra"]["summary"]
    assert summary["job"] == "send-invoices" and summary["exit_code"] == 0 and summary["sent"] == 2
    assert summary["note"] == "multi\nline"


def test_a_secret_registered_by_the_job_never_leaves_the_process(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "summary.json"

    def leaky_job() -> JobOutcome:
        register_secret(SECRET)
        logger.info("got token {token}", token=SECRET, header=f"Bearer {SECRET}")
        return JobOutcome(
            1, {"error": f"refresh with {SECRET} failed", "tokens": [SECRET]}, [{"token": SECRET}]
        )

    assert (
        run(["--create-invoices"], {**ENV, "SUMMARY_PATH": str(path)}, job_loader=FakeJob(leaky_job).load)
        == 1
    )

    captured = capsys.readouterr()
    assert SECRET not in captured.err and SECRET not in captured.out
    assert SECRET not in path.read_text()
    assert json.loads(path.read_text())["table"] == [{"token": "***"}]


def test_a_secret_in_an_unexpected_exception_is_masked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "summary.json"

    def crashing_job() -> JobOutcome:
        register_secret(SECRET)
        raise RuntimeError(f"token {SECRET} rejected")

    assert (
        run(["--send-invoices"], {**ENV, "SUMMARY_PATH": str(path)}, job_loader=FakeJob(crashing_job).load)
        == 1
    )
    assert SECRET not in capsys.readouterr().err
    assert SECRET not in path.read_text()


def test_an_unwritable_summary_path_does_not_change_the_exit_code(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env = {**ENV, "SUMMARY_PATH": str(tmp_path / "missing-dir" / "summary.json")}
    assert run(["--send-invoices"], env, job_loader=FakeJob(JobOutcome(0)).load) == 0
    assert "summary" in capsys.readouterr().err


# --------------------------------------------------------------------------- run metric


def test_metric_is_published_after_real_runs_only(metrics: list[tuple[str, bool]]) -> None:
    run(["--create-invoices"], ENV, job_loader=FakeJob(JobOutcome(0)).load)
    run(["--send-invoices"], ENV, job_loader=FakeJob(JobOutcome(1)).load)
    run(["--send-invoices", "--dry-run"], ENV, job_loader=FakeJob(JobOutcome(0)).load)
    run(["--send-invoices"], {**ENV, "METRICS_NAMESPACE": ""}, job_loader=FakeJob(JobOutcome(0)).load)
    assert metrics == [("create-invoices", False), ("send-invoices", True)]


def test_a_failing_metric_does_not_fail_a_good_run(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken(settings: Settings, job_name: str, failed: bool) -> None:
        raise errors.ServiceError("cloudwatch", "PutMetricData", "AccessDenied")

    monkeypatch.setattr(integrations.aws, "publish_run_metric", broken)
    assert run(["--create-invoices"], ENV, job_loader=FakeJob(JobOutcome(0)).load) == 0
    assert "could not publish the run metric" in capsys.readouterr().err


def test_format_table_aligns_columns() -> None:
    assert format_table([]) == "(nothing to show)"
    assert format_table([{"a": "1", "bb": "22"}, {"a": "333"}]).splitlines() == [
        "a    bb",
        "---  --",
        "1    22",
        "333    ",
    ]
