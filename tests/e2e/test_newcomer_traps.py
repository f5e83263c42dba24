"""The traps a newcomer hit (issue 14.13): each one now ends in one readable line and exit 2 (or 1
for the sandbox tool), with nothing written, mailed or wiped."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import Harness
from tests.settings import VALID_ENV

REPO = Path(__file__).resolve().parents[2]
ENTRYPOINT = Path(sys.executable).with_name("invoice-processor")


def _no_aws_credentials_env(tmp_path: Path) -> dict[str, str]:
    """A shell with the job's settings but no way for boto3 to find credentials."""
    keep = {k: v for k, v in os.environ.items() if not k.startswith("AWS_") and k != "SUMMARY_PATH"}
    return {
        **keep,
        **VALID_ENV,
        "LOG_FORMAT": "pretty",
        "HOME": str(tmp_path),
        "AWS_CONFIG_FILE": str(tmp_path / "no-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
        "METRICS_NAMESPACE": "",
    }


@pytest.mark.parametrize("job", ["--create-invoices", "--send-invoices"])
def test_without_aws_credentials_both_jobs_exit_2_with_one_line(tmp_path: Path, job: str) -> None:
    done = subprocess.run(
        [str(ENTRYPOINT), job],
        env=_no_aws_credentials_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if "ERROR" in line]
    assert len(errors) == 1 and "no AWS credentials found" in errors[0], done.stderr


def test_an_unknown_client_is_a_usage_error_and_mails_nobody(harness: Harness) -> None:
    before = len(harness.state()["mails"])

    run = harness.run("--create-invoices", "--period", "2026-10", "--client", "99999")

    assert run.exit_code == 2
    assert "99999" in run.summary["error"] and "not in the client registry" in run.summary["error"]
    assert len(harness.state()["mails"]) == before
    assert harness.invoices() == [i for i in harness.invoices() if "99999" not in json.dumps(i)]


def _sandbox_cli(*args: str, python: str = sys.executable) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [python, *(["-S"] if python != sys.executable else []), "-m", "sandbox", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("problem", ["missing", "invalid"])
def test_sandbox_reset_with_a_bad_scenario_says_so_in_one_line_and_keeps_the_state(
    tmp_path: Path, problem: str
) -> None:
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    seed = state_dir / "seed.json"
    seed.write_text('{"scenario": "default"}')
    scenario = tmp_path / "scenario.json"
    if problem == "invalid":
        scenario.write_text('{"qbo": {"realm_id": ')

    done = _sandbox_cli("reset", "--state-dir", str(state_dir), "--scenario", str(scenario))

    assert done.returncode == 1
    assert len(done.stderr.strip().splitlines()) == 1 and "scenario file" in done.stderr, done.stderr
    assert seed.read_text() == '{"scenario": "default"}'  # the seed is still there
    assert not (state_dir / "sandbox.pid").exists()  # and no daemon was started


def test_sandbox_env_runs_on_a_bare_python_outside_the_virtualenv(tmp_path: Path) -> None:
    # -S: no site-packages at all, so an import of requests, flask or boto3 would fail here.
    done = _sandbox_cli("env", "--state-dir", str(tmp_path), python="/usr/bin/python3")

    assert "ModuleNotFoundError" not in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 1
    assert done.stderr.strip() == (
        f"sandbox: the sandbox in {tmp_path.resolve()} is not running (start it with `make sandbox-up`)"
    )
