"""End-to-end fixtures: a fresh in-process sandbox per test and helpers that run a whole job
against it, in-process (fast) or as a separate process (crashes, concurrent runs)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from integrations import cli
from integrations.identifiers import find_marker
from sandbox import DEFAULT_SCENARIO, Sandbox

REPO = Path(__file__).resolve().parents[2]


def default_scenario() -> dict[str, Any]:
    return json.loads(Path(DEFAULT_SCENARIO).read_text(encoding="utf-8"))


@dataclass
class JobRun:
    exit_code: int
    summary: dict[str, Any]
    logs: str
    stdout: str

    def rows(self, **match: str) -> list[dict[str, str]]:
        return [
            row for row in self.summary.get("table", []) if all(row.get(k) == v for k, v in match.items())
        ]


class Harness:
    """A sandbox plus ways to run the jobs against it."""

    def __init__(self, sandbox: Sandbox, tmp: Path, capsys: pytest.CaptureFixture[str]):
        self.sandbox, self.tmp, self.capsys = sandbox, tmp, capsys
        self._runs = 0

    def env(self, **extra: str) -> dict[str, str]:
        # Short leases and stop grace: a re-run right after a crash takes the dead run's claims over
        # within seconds (production: about a minute), and SIGTERM tests finish quickly. QBO's
        # throttle window scaled to 2 s (60 s in production): a stray 429 must not stall a test.
        fast = {"CLAIM_TTL_SECONDS": "3", "STOP_GRACE_SECONDS": "3", "QBO_THROTTLE_WINDOW_SECONDS": "2"}
        return {
            **self.sandbox.env,
            "LOG_FORMAT": "json",
            "HTTP_MAX_RETRY_AFTER_SECONDS": "2",
            **fast,
            **extra,
        }

    def run(self, *args: str, **extra_env: str) -> JobRun:
        """Run the entrypoint in this process, exactly as the container would, and collect its output."""
        self._runs += 1
        summary_path = self.tmp / f"summary-{self._runs}.json"
        env = self.env(SUMMARY_PATH=str(summary_path), **extra_env)
        self.capsys.readouterr()
        with self.sandbox.environ(), pytest.MonkeyPatch.context() as patch:
            for key, value in extra_env.items():
                patch.setenv(key, value)
            code = cli.run(list(args), env)
        out = self.capsys.readouterr()
        summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
        return JobRun(code, summary, out.err, out.out)

    def spawn(self, *args: str, crash_after: int | None = None, match: str | None = None, **extra_env: str):
        """Start the job as its own process (optionally killed after its N-th matching external call)."""
        if crash_after is None:
            command = [sys.executable, "-c", "from integrations.cli import main; main()", *args]
        else:
            command = [sys.executable, "-m", "sandbox.crash", "--after", str(crash_after)]
            command += ["--match", match] if match else []
            command += ["--", *args]
        env = {**os.environ, **self.env(**extra_env)}
        return subprocess.Popen(
            command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )

    def state(self) -> dict[str, Any]:
        return self.sandbox.state()

    def invoices(self, period: str = "2026-10") -> list[dict[str, Any]]:
        """The invoices the create job made for ``period`` (by the marker in their private note)."""
        return [
            i
            for i in self.state()["invoices"]
            if (marker := find_marker(i.get("PrivateNote"))) is not None and marker.period == period
        ]


def make_harness(tmp_path: Path, capsys: pytest.CaptureFixture[str], scenario: Mapping[str, Any] | None):
    sandbox = Sandbox(tmp_path / "sandbox", scenario=dict(scenario) if scenario else None)
    sandbox.start()
    return sandbox, Harness(sandbox, tmp_path, capsys)


@pytest.fixture
def harness(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], request: pytest.FixtureRequest
) -> Iterator[Harness]:
    """A fresh sandbox seeded with the default scenario (or ``@pytest.mark.parametrize('harness', [dict], indirect=True)``)."""
    sandbox, harness = make_harness(tmp_path, capsys, getattr(request, "param", None))
    try:
        yield harness
    finally:
        sandbox.stop()
