"""`python -m sandbox up|show|faults|reset|down` end to end (a real daemon in a temp state dir), and
`sandbox.run_local` with a stand-in for the job command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sandbox import run_local
from sandbox.common import REPO_ROOT

FAKE_JOB = """
import json, os, sys
import requests
assert sys.argv[1:] == ["--create-invoices", "--period", "2026-10"], sys.argv
assert os.environ["LOG_FORMAT"] == "pretty"
assert os.environ["AWS_ENDPOINT_URL"].startswith("http://127.0.0.1:")
assert "AWS_PROFILE" not in os.environ and os.environ["AWS_ACCESS_KEY_ID"] == "test"
answer = requests.get(os.environ["QBO_BASE_URL"] + "/v3/company/1/query")  # TLS through REQUESTS_CA_BUNDLE
assert answer.status_code == 401, answer.status_code
table = [{"client": "10002", "status": "created", "total": "1,306.65"}, {"client": "10007", "status": "nothing to bill", "total": ""}]
with open(os.environ["SUMMARY_PATH"], "w") as handle:
    json.dump({"job": "create-invoices", "exit_code": 1, "created": 1, "table": table}, handle)
print("fake job ran", flush=True)
sys.exit(1)
"""


def _cli(state_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("SANDBOX_DIR", "SANDBOX_SCENARIO")}
    return subprocess.run(
        [sys.executable, "-m", "sandbox", "--state-dir", str(state_dir), *args],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env=env,
        timeout=120,
    )


@pytest.mark.xdist_group("sandbox-cli")
def test_up_show_faults_reset_down(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "state"
    up = _cli(state, "up")
    try:
        assert up.returncode == 0, up.stderr
        assert "Sandbox running" in up.stdout and "QBO_BASE_URL" in up.stdout
        env = json.loads((state / "env.json").read_text())
        again = _cli(state, "up")
        assert again.returncode == 0 and env["QBO_BASE_URL"] in again.stdout
        pid = int((state / "sandbox.pid").read_text())

        faults = _cli(state, "faults", "qbo", "--fail-next", "2", "--status", "500", "--match", "POST")
        assert faults.returncode == 0, faults.stderr
        assert json.loads(faults.stdout)["qbo"]["fail_next"] == [
            {"remaining": 2, "status": 500, "match": "POST"}
        ]
        assert _cli(state, "faults", "clickup", "--rate-limit-per-min", "100").returncode == 0

        show = _cli(state, "show")
        assert show.returncode == 0, show.stderr
        for expected in (
            "Sandbox running",
            "QBO invoices (2)",
            "10002-202609",
            "AICPA-1120",
            "Client registry (8 items)",
            "QBO/10000",
            "Faults:",
            "qbo: -; next 2 -> 500 matching POST",
        ):
            assert expected in show.stdout, expected
        assert "sbxQboSecret" not in show.stdout and "AB11800726450" not in show.stdout
        exports = _cli(state, "env").stdout
        assert f"export QBO_BASE_URL={env['QBO_BASE_URL']}" in exports

        fake = tmp_path / "fake_job.py"
        fake.write_text(FAKE_JOB)
        environ = {**os.environ, "AWS_PROFILE": "production", "SUMMARY_PATH": str(tmp_path / "summary.json")}
        code = run_local.run(
            "create",
            "sandbox",
            ["--period", "2026-10"],
            state_dir=state,
            command=[sys.executable, str(fake)],
            environ=environ,
        )
        printed = capfd.readouterr().out
        assert code == 1
        assert "fake job ran" in printed and "nothing to bill" in printed and "1,306.65" in printed
        assert "make sandbox-show" in printed and "Exit code 1" in printed

        reset = _cli(state, "reset")
        assert reset.returncode == 0, reset.stderr
        assert int((state / "sandbox.pid").read_text()) == pid  # reset in place, same daemon
        shown = json.loads(_cli(state, "show", "--json").stdout)
        assert shown["running"] and len(shown["registry"]) == 8 and shown["faults"] == {}
    finally:
        down = _cli(state, "down")
    assert down.returncode == 0 and "Sandbox stopped" in down.stdout
    assert not (state / "sandbox.pid").exists()
    offline = _cli(state, "show")
    assert "stopped" in offline.stdout and "QBO invoices (2)" in offline.stdout
    assert "was not running" in _cli(state, "down").stdout


def test_run_local_aws_passes_the_callers_environment(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    script = tmp_path / "job.py"
    script.write_text(
        "import os, sys; print('profile', os.environ.get('AWS_PROFILE'), os.environ['LOG_FORMAT'], sys.argv[1:]); sys.exit(0)\n"
    )
    environ = {
        "PATH": os.environ["PATH"],
        "AWS_PROFILE": "billing-prod",
        "AWS_REGION": "us-west-2",
        "SUMMARY_PATH": str(tmp_path / "s.json"),
    }
    code = run_local.run("send", "aws", ["--dry-run"], command=[sys.executable, str(script)], environ=environ)
    printed = capfd.readouterr().out
    assert code == 0
    assert "profile billing-prod pretty ['--send-invoices', '--dry-run']" in printed
    assert "The job wrote no summary" in printed
