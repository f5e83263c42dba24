"""One scenario's private world: a sandbox in its own directory and the job runs made against it.

Every job run is its own process (crashes and SIGTERM need one), bounded in time, with its
stdout, stderr and summary kept as files in the scenario's directory (the secret scan reads them).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sandbox.bench import _child_env

REPO = Path(__file__).resolve().parents[2]
RUN_TIMEOUT = 150.0  # seconds; a run that takes longer is killed and reported
CRASH_EXIT = 137
# Left out when a sandbox is cloned: the copy gets its own lock, ports and request log.
NOT_CLONED = ("sandbox.lock", "env.json", "requests.log", "sandbox.log", "sandbox.pid")


@dataclass
class JobRun:
    """What one job process did, as files and facts."""

    label: str
    args: list[str]
    exit_code: int | str  # "timeout" when it was killed
    seconds: float
    stdout: Path
    stderr: Path
    summary_path: Path
    signal_time: float | None = None
    ended: float = 0.0
    calls: list[str] = field(default_factory=list)

    @property
    def summary(self) -> dict[str, Any]:
        try:
            return json.loads(self.summary_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}

    def output(self) -> str:
        return "\n".join(
            p.read_text(encoding="utf-8", errors="replace") for p in (self.stdout, self.stderr) if p.exists()
        )

    def last_line(self, marker: str) -> str:
        """The last stderr line containing ``marker`` (e.g. where the crash switch fired)."""
        lines = [line for line in self.output().splitlines() if marker in line]
        return lines[-1].strip() if lines else ""


# Short leases for every job run: a re-run right after a crash takes the dead run's claims (and
# the QBO refresh lock) over within seconds instead of a minute; the rule is the same, only faster.
# QBO's throttle window too: a re-run starting right after a killed run can meet the stand-in's
# per-second limit (it counts the dead run's last calls), and would then hold for a real minute.
FAST_LEASES = {
    "CLAIM_TTL_SECONDS": "4",
    "TOKEN_LOCK_TTL_SECONDS": "4",
    "STOP_GRACE_SECONDS": "3",
    "QBO_THROTTLE_WINDOW_SECONDS": "2",
}


def job_env_overrides() -> dict[str, str]:
    """``FAST_LEASES``, then ``FAULTS_JOB_ENV="NAME=value NAME2=value"``: settings every job run gets."""
    pairs = (item.partition("=") for item in os.environ.get("FAULTS_JOB_ENV", "").split())
    return {**FAST_LEASES, **{name: value for name, _, value in pairs if name}}


class Workspace:
    """A started sandbox in ``root / "sandbox"`` plus numbered job runs in ``root``."""

    def __init__(self, root: Path, scenario: dict[str, Any] | None = None, clone_of: Path | None = None):
        from sandbox.core import Sandbox  # servers load only in the processes that run scenarios

        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        state_dir = root / "sandbox"
        if clone_of is not None:
            shutil.copytree(clone_of, state_dir, ignore=shutil.ignore_patterns(*NOT_CLONED))
        self.sandbox = Sandbox(state_dir, scenario=scenario)
        self.runs: list[JobRun] = []
        self.extra_env: dict[str, str] = {}

    def __enter__(self) -> Workspace:
        self.sandbox.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.sandbox.stop()

    def env(self, summary_path: Path, **extra: str) -> dict[str, str]:
        return {
            **_child_env(self.sandbox.env, summary_path),
            "HTTP_MAX_RETRY_AFTER_SECONDS": "2",
            **job_env_overrides(),
            **self.extra_env,
            **extra,
        }

    def command(
        self,
        args: list[str],
        *,
        crash_after: int | None = None,
        sigterm_after: int | None = None,
        record: Path | None = None,
        signal_file: Path | None = None,
    ) -> list[str]:
        if crash_after is not None:
            return [
                sys.executable,
                "-m",
                "sandbox.crash",
                "--after",
                str(crash_after),
                "--target",
                "sandbox.campaign.driver:job_main",
                "--",
                *args,
            ]
        command = [sys.executable, "-m", "sandbox.campaign.driver"]
        if record is not None:
            command += ["--record", str(record)]
        if sigterm_after is not None:
            command += ["--sigterm-after", str(sigterm_after), "--signal-file", str(signal_file)]
        return [*command, "--", *args]

    def start(
        self,
        label: str,
        args: list[str],
        *,
        crash_after: int | None = None,
        sigterm_after: int | None = None,
        record: bool = False,
        **extra: str,
    ) -> tuple[subprocess.Popen, JobRun]:
        """Start one job process; ``finish`` waits for it."""
        number = len(self.runs) + 1
        stem = self.root / f"{number:02d}-{label}"
        run = JobRun(
            label,
            args,
            "running",
            0.0,
            stem.with_suffix(".stdout"),
            stem.with_suffix(".stderr"),
            stem.with_suffix(".summary.json"),
        )
        self.runs.append(run)
        calls_file = stem.with_suffix(".calls") if record else None
        signal_file = stem.with_suffix(".signal") if sigterm_after is not None else None
        command = self.command(
            args,
            crash_after=crash_after,
            sigterm_after=sigterm_after,
            record=calls_file,
            signal_file=signal_file,
        )
        process = subprocess.Popen(
            command,
            cwd=REPO,
            env=self.env(run.summary_path, **extra),
            stdout=open(run.stdout, "w", encoding="utf-8"),  # noqa: SIM115 - closed by the child's exit
            stderr=open(run.stderr, "w", encoding="utf-8"),  # noqa: SIM115
        )
        process.campaign_started = time.monotonic()  # type: ignore[attr-defined]
        process.campaign_files = (calls_file, signal_file)  # type: ignore[attr-defined]
        return process, run

    def finish(self, process: subprocess.Popen, run: JobRun, timeout: float = RUN_TIMEOUT) -> JobRun:
        try:
            run.exit_code = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            run.exit_code = "timeout"
        run.ended = time.time()
        run.seconds = round(time.monotonic() - process.campaign_started, 2)  # type: ignore[attr-defined]
        calls_file, signal_file = process.campaign_files  # type: ignore[attr-defined]
        if calls_file is not None and calls_file.exists():
            run.calls = [
                line.split("\t", 1)[1] for line in calls_file.read_text().splitlines() if "\t" in line
            ]
        if signal_file is not None and signal_file.exists():
            run.signal_time = float(signal_file.read_text().split("\t", 1)[0])
        return run

    def run(self, label: str, args: list[str], **options: Any) -> JobRun:
        process, run = self.start(label, args, **options)
        return self.finish(process, run)
