"""``make run-local``: run a job from the local virtualenv against the sandbox (default) or AWS.

    python -m sandbox.run_local --job create|send --env sandbox|aws -- [--dry-run] [--period 2026-10] ...

sandbox: starts the sandbox if needed (seeding the default scenario, or $SANDBOX_SCENARIO, on first
use), runs ``invoice-processor`` with the sandbox's environment and readable logs, prints the run
summary as a table and says where to look. aws: runs with the caller's environment and AWS profile
(the job reports any missing DESIGN §3 variable). Exits with the job's exit code.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from integrations.cli import format_table
from sandbox import daemon
from sandbox.common import SandboxError, default_state_dir

JOB_FLAGS = {"create": "--create-invoices", "send": "--send-invoices", "check": "--check"}
TOOLS = {"qbo-auth": "integrations.qbo_auth"}  # interactive operator tools: same env, no run summary
# Caller settings that must not leak into a sandbox run (they would point boto3 at real AWS).
DROPPED_IN_SANDBOX = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_CA_BUNDLE",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "CURL_CA_BUNDLE",
)


def job_command() -> list[str]:
    """``invoice-processor`` from the virtualenv this Python belongs to."""
    script = Path(sys.executable).parent / "invoice-processor"
    if script.exists():
        return [str(script)]
    found = shutil.which("invoice-processor")
    if found:
        return [found]
    return [sys.executable, "-c", "from integrations.cli import main; main()"]


def print_summary(path: Path, job: str) -> None:
    try:
        summary = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        print(f"\nThe job wrote no summary ({path}).")
        return
    table = summary.pop("table", []) or []
    print(f"\nRun summary ({job})")
    scalars = [
        {"field": k, "value": json.dumps(v, ensure_ascii=False) if isinstance(v, dict | list) else str(v)}
        for k, v in summary.items()
    ]
    print(textwrap.indent(format_table(scalars), "  "))
    if table:
        print()
        print(textwrap.indent(format_table(table), "  "))
    print(f"\nSummary JSON: {path}")


def run(
    job: str,
    env_kind: str,
    job_args: Sequence[str],
    *,
    state_dir: Path | None = None,
    command: Sequence[str] | None = None,
    environ: dict[str, str] | None = None,
) -> int:
    base = dict(os.environ if environ is None else environ)
    argv = [*(command or job_command()), JOB_FLAGS.get(job, ""), *job_args]
    if env_kind == "sandbox":
        state = (state_dir or Path(base.get("SANDBOX_DIR") or default_state_dir())).resolve()
        scenario = base.get("SANDBOX_SCENARIO")
        env_map = daemon.up(
            state, scenario=str(Path(scenario).resolve()) if scenario and scenario != "default" else None
        )
        child = {k: v for k, v in base.items() if k not in DROPPED_IN_SANDBOX and not k.startswith("AWS_")}
        child.update(env_map)
        child["LOG_FORMAT"] = "pretty"
        summary_path = (
            Path(base["SUMMARY_PATH"])
            if base.get("SUMMARY_PATH")
            else state / "runs" / f"{job}-{datetime.now(UTC):%Y%m%dT%H%M%S}.json"
        )
        seed = json.loads((state / "seed.json").read_text()) if (state / "seed.json").exists() else {}
        print(
            f"Running the {job} job against the sandbox (scenario {seed.get('scenario', '?')}, state {state})"
        )
    else:
        state = None
        child = dict(base)
        child.setdefault("LOG_FORMAT", "pretty")
        summary_path = (
            Path(base["SUMMARY_PATH"])
            if base.get("SUMMARY_PATH")
            else Path(tempfile.mkdtemp(prefix="invoice-run-")) / f"{job}.json"
        )
        profile = base.get("AWS_PROFILE") or "default credentials"
        print(f"Running the {job} job against AWS ({profile}, region {base.get('AWS_REGION', 'not set')})")
    if job in TOOLS:
        return subprocess.call([sys.executable, "-m", TOOLS[job], *job_args], env=child)
    summary_path.parent.mkdir(parents=True, exist_ok=True)
    child["SUMMARY_PATH"] = str(summary_path)
    print("$ invoice-processor " + " ".join([JOB_FLAGS[job], *job_args]), flush=True)
    try:
        code = subprocess.call(argv, env=child)
    except KeyboardInterrupt:
        code = 130
    print_summary(summary_path, job)
    if state is not None:
        print(
            f"Look at the results: make sandbox-show   (mails in {state / 'mail'}, SharePoint files in {state / 'sharepoint'})"
        )
    print(f"Exit code {code}")
    return code


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox.run_local", description=__doc__.split("\n\n")[0])
    parser.add_argument("--job", choices=sorted([*JOB_FLAGS, *TOOLS]), required=True)
    parser.add_argument("--env", choices=("sandbox", "aws"), default="sandbox")
    parser.add_argument(
        "--state-dir", type=Path, help="sandbox state directory (default .sandbox/ or $SANDBOX_DIR)"
    )
    parser.add_argument(
        "job_args",
        nargs=argparse.REMAINDER,
        help="-- then options for the job, e.g. --dry-run --period 2026-10",
    )
    args = parser.parse_args(argv)
    job_args = args.job_args[1:] if args.job_args[:1] == ["--"] else args.job_args
    try:
        return run(args.job, args.env, job_args, state_dir=args.state_dir)
    except SandboxError as exc:
        print(f"run-local: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
