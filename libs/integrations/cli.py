"""The container entrypoint: ``invoice-processor --create-invoices|--send-invoices [options]``.

It owns what both jobs share: argument parsing, configuration, logging, exit codes, the final
summary line, the optional JSON summary file and the success metric. Jobs are found through the
``invoice_processor.jobs`` entry-point group, so this library does not import the jobs.

Exit codes: 0 all done; 1 at least one client/invoice failed (the others were processed);
2 the run could not start (bad configuration, unreadable secret, QBO re-authorisation needed).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from loguru import logger

from integrations import aws, errors
from integrations.config import Settings, load_settings
from integrations.identifiers import is_client_number
from integrations.lifecycle import signal_received, stop_on_signals
from integrations.logging import mask, setup_logging
from integrations.services import Services
from integrations.services import connect as connect_services

EXIT_OK, EXIT_PARTIAL, EXIT_CANNOT_START = 0, 1, 2
JOBS = {"--create-invoices": "create-invoices", "--send-invoices": "send-invoices", "--check": "check"}


@dataclass(frozen=True)
class JobOptions:
    dry_run: bool = False
    period: str | None = None  # YYYY-MM
    clients: tuple[str, ...] = ()
    resend: str | None = None  # send: deliver this invoice (doc number or id) again, on purpose


@dataclass
class JobOutcome:
    """What a job hands back: its exit code, a JSON-able summary and one table row per item."""

    exit_code: int
    summary: dict[str, Any] = field(default_factory=dict)
    table: list[dict[str, str]] = field(default_factory=list)


JobFunction = Callable[[Settings, JobOptions, "Services"], JobOutcome]


def _period(value: str) -> str:
    if not re.fullmatch(r"\d{4}-(0[1-9]|1[0-2])", value):
        raise argparse.ArgumentTypeError(f"--period must look like 2026-10 (got {value!r})")
    return value


def _client(value: str) -> str:
    if not is_client_number(value):
        raise argparse.ArgumentTypeError(f"--client takes a client number like 10002 (got {value!r})")
    return value


def parse_args(argv: Sequence[str]) -> tuple[str, JobOptions]:
    parser = argparse.ArgumentParser(prog="invoice-processor", description=__doc__.split("\n\n")[0])
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument(
        "--create-invoices", action="store_true", help="monthly: create one invoice per client"
    )
    which.add_argument(
        "--send-invoices", action="store_true", help="daily: deliver invoices waiting to be sent"
    )
    which.add_argument(
        "--check", action="store_true", help="read-only preflight of this deployment (make doctor)"
    )
    parser.add_argument("--dry-run", action="store_true", help="compute and print everything, write nothing")
    parser.add_argument("--period", type=_period, help="billing month YYYY-MM (create; default: last month)")
    parser.add_argument(
        "--client", type=_client, action="append", default=[], help="only this client (repeatable)"
    )
    parser.add_argument(
        "--resend",
        metavar="DOC_NUMBER",
        help="send: mail this invoice of this system again (doc number or QBO id), whatever its status",
    )
    args = parser.parse_args(list(argv))
    job = next(name for flag, name in JOBS.items() if getattr(args, flag[2:].replace("-", "_")))
    if args.resend is not None and job != "send-invoices":
        parser.error("--resend goes with --send-invoices")
    if args.resend is not None and not args.resend.strip():
        parser.error("--resend needs a doc number or invoice id")
    return job, JobOptions(
        dry_run=args.dry_run, period=args.period, clients=tuple(args.client), resend=args.resend
    )


def load_job(name: str) -> JobFunction:
    if name == "check":  # the preflight lives in this library; the jobs are found as plugins
        from integrations.doctor import run as check

        return check
    found = {ep.name: ep for ep in entry_points(group="invoice_processor.jobs")}
    if name not in found:
        raise errors.StartupError(
            f"job {name!r} is not installed (installed: {', '.join(sorted(found)) or 'none'})"
        )
    return found[name].load()


def format_table(rows: list[dict[str, str]]) -> str:
    """Render rows as a plain-text table (for people running the job locally)."""
    if not rows:
        return "(nothing to show)"
    columns = list(dict.fromkeys(key for row in rows for key in row))
    widths = {c: max(len(c), *(len(str(row.get(c, ""))) for row in rows)) for c in columns}
    line = "  ".join(c.ljust(widths[c]) for c in columns)
    rule = "  ".join("-" * widths[c] for c in columns)
    body = ["  ".join(str(row.get(c, "")).ljust(widths[c]) for c in columns) for row in rows]
    return "\n".join([line, rule, *body])


def run(
    argv: Sequence[str],
    env: Mapping[str, str],
    job_loader: Callable[[str], JobFunction] = load_job,
    connect: Callable[[Settings], Services] = connect_services,
) -> int:
    """Run one job; return the process exit code. Never raises."""
    started = time.monotonic()
    setup_logging(env.get("LOG_FORMAT", "json") if env.get("LOG_FORMAT") in ("json", "pretty") else "json")
    try:
        job_name, options = parse_args(argv)
    except SystemExit as exc:
        return EXIT_OK if exc.code == 0 else EXIT_CANNOT_START
    outcome: JobOutcome
    settings: Settings | None = None
    services: Services | None = None
    try:
        settings = load_settings(env)
        setup_logging(settings.log_format, settings.log_level)
        job = job_loader(job_name)
        logger.info(
            "starting {job}",
            job=job_name,
            dry_run=options.dry_run,
            period=options.period,
            clients=",".join(options.clients) or "all",
        )
        services = connect(settings)
        with stop_on_signals(services.stop):
            outcome = job(settings, options, services)
    except errors.ConfigError as exc:
        logger.error(str(exc))
        outcome = JobOutcome(EXIT_CANNOT_START, {"error": str(exc)})
    except errors.ReauthorizationRequired as exc:
        message = (
            f"{exc}. QuickBooks needs to be reconnected: run `make qbo-auth ENV=aws` (it stores the new "
            "refresh token in the QBO secret), then re-run this job."
        )
        logger.error(message)
        outcome = JobOutcome(EXIT_CANNOT_START, {"error": message})
    except errors.StartupError as exc:
        logger.error("cannot start: {error}", error=str(exc))
        outcome = JobOutcome(EXIT_CANNOT_START, {"error": str(exc)})
    except Exception as exc:  # noqa: BLE001 - the last line of defence: report, never crash silently
        logger.exception("run failed unexpectedly: {error}", error=str(exc))
        outcome = JobOutcome(EXIT_PARTIAL, {"error": f"{exc.__class__.__name__}: {exc}"})

    summary = {
        "job": job_name,
        "exit_code": outcome.exit_code,
        "dry_run": options.dry_run,
        "seconds": round(time.monotonic() - started, 2),
        **outcome.summary,
    }
    summary = json.loads(mask(json.dumps(summary, default=str)))
    logger.bind(summary=summary).info("run finished: {job} exit {code}", job=job_name, code=outcome.exit_code)
    if env.get("SUMMARY_PATH"):
        try:
            Path(env["SUMMARY_PATH"]).write_text(
                json.dumps(
                    {**summary, "table": json.loads(mask(json.dumps(outcome.table, default=str)))},
                    indent=2,
                    default=str,
                )
            )
        except OSError as exc:  # the run's outcome stands; a missing summary file must not hide it
            logger.error(
                "could not write the summary file {path}: {error}", path=env["SUMMARY_PATH"], error=str(exc)
            )
    if job_name == "check" and outcome.table:  # the preflight's answer is its table
        print(format_table(outcome.table))
    writes = not options.dry_run and job_name != "check"  # the preflight writes nothing
    if services is not None and writes and outcome.exit_code != EXIT_CANNOT_START:
        _publish_metric(services, job_name, outcome)
    return outcome.exit_code


def _publish_metric(services: Services, job_name: str, outcome: JobOutcome) -> None:
    """Tell CloudWatch the run completed; the missed-run alarm fires when this stops arriving."""
    namespace = services.settings.metrics_namespace
    if not namespace:
        return
    try:
        aws.publish_run_metric(
            services.aws.cloudwatch, namespace, job_name, failed=outcome.exit_code != EXIT_OK
        )
    except Exception as exc:  # noqa: BLE001 - a metric must not turn a good run into a failed one
        logger.warning("could not publish the run metric: {error}", error=str(exc))


def main() -> None:
    code = run(sys.argv[1:], os.environ)
    if signal_received():
        # Told to stop: the summary and mail are out; calls still in flight were abandoned on
        # purpose (the next run takes their claims over), so do not wait for their threads.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)
