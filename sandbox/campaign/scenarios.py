"""One scenario of the campaign, from a fresh sandbox to its counts (runs in a worker process)."""

from __future__ import annotations

import json
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sandbox import DEFAULT_SCENARIO
from sandbox.campaign import bad_input, checks, secrets_scan, tokens
from sandbox.campaign.counts import Outcome
from sandbox.campaign.workspace import CRASH_EXIT, JobRun, Workspace
from sandbox.store import read_json

CREATE = ["--create-invoices", "--period", "2026-10"]
SEND = ["--send-invoices"]
ONE_WORKER = {"CREATE_WORKERS": "1", "SEND_WORKERS": "1"}
STOP_DEADLINE = 20.0  # seconds from SIGTERM to exit (DESIGN §2; ECS waits 30 s by default)
STOPPED_EARLY = re.compile(r"stopped early", re.IGNORECASE)
# Evidence that concurrent runs met on the same claims (on a fresh state nothing was invoiced or
# sent before, so "already ..." means a run saw the work of a run that started with it).
CONTENDED = re.compile(
    r"another run|took over|taken over|waited|waiting for|already invoiced|already sent", re.IGNORECASE
)


@dataclass(frozen=True)
class Spec:
    """What to do; plain data so it crosses to a worker process."""

    family: str
    name: str
    kind: str  # crash | sigterm | concurrent | storm | bad | secrets
    job: str  # create | send
    root: str
    delivery: str = "qbo"
    point: int = 0  # crash/SIGTERM: after call k; concurrent: number of runs
    call: str = ""  # the clean run's call k
    storm: tuple[tuple[str, str], ...] = ()  # (service, JSON of its fault settings)
    bad: str = ""
    template: str = ""  # a stopped sandbox to clone (send families)
    reference: checks.Reference = field(default_factory=checks.Reference)


def default_scenario() -> dict[str, Any]:
    return json.loads(Path(DEFAULT_SCENARIO).read_text(encoding="utf-8"))


def short_call(text: str) -> str:
    """ "METHOD https://127.0.0.1:port/path?query [Op]" -> "METHOD /path [Op]" (ports differ per
    sandbox); also takes the crash switch's "exiting ... right after call k (METHOD URL)" line."""
    text = re.sub(r"^sandbox\.crash: exiting with \d+ right after call \d+ \((.*)\)$", r"\1", text.strip())
    return re.sub(r"\?\S*", "", re.sub(r"https?://[^/\s]+", "", text))


def job_args(spec: Spec) -> list[str]:
    return CREATE if spec.job == "create" else SEND


def execute(spec: Spec) -> Outcome:
    """Run one scenario and count; any error of the campaign itself is reported, not raised."""
    started = time.monotonic()
    outcome = Outcome(spec.family, spec.name)
    root = Path(spec.root)
    try:
        scenario = (
            bad_input.scenario_for(bad_input.by_name(spec.bad), default_scenario()) if spec.bad else None
        )
        clone = Path(spec.template) if spec.template else None
        with Workspace(root, scenario=scenario, clone_of=clone) as space:
            space.extra_env["INVOICE_DELIVERY"] = spec.delivery
            runs = RUNNERS[spec.kind](spec, space, outcome)
            judge(spec, space, runs, outcome)
    except Exception as exc:  # noqa: BLE001 - a broken scenario is a finding, not the end of the campaign
        outcome.problem(
            "unrecovered", f"the campaign could not run this scenario: {exc.__class__.__name__}: {exc}"
        )
    finally:
        outcome.seconds = round(time.monotonic() - started, 1)
        shutil.rmtree(root / "sandbox", ignore_errors=True)
    return outcome


# --- the runs of each kind ---------------------------------------------------------------------


def _crash(spec: Spec, space: Workspace, outcome: Outcome) -> list[JobRun]:
    crashed = space.run("crash", job_args(spec), crash_after=spec.point, **ONE_WORKER)
    outcome.name = f"{spec.name} ({short_call(spec.call)})"
    where = short_call(crashed.last_line("sandbox.crash:"))
    if crashed.exit_code != CRASH_EXIT:
        outcome.notes.append(
            f"{outcome.name}: the run ended with {crashed.exit_code} before call {spec.point}"
        )
    elif not short_call(spec.call).startswith(where.split(" [")[0]):
        outcome.notes.append(f"{outcome.name}: crashed after {where} instead (the call order varies)")
    return [crashed, space.run("rerun", job_args(spec))]


def _sigterm(spec: Spec, space: Workspace, outcome: Outcome) -> list[JobRun]:
    outcome.name = f"{spec.name} ({short_call(spec.call)})"
    stopped = space.run("sigterm", job_args(spec), sigterm_after=spec.point, **ONE_WORKER)
    _check_stop(spec, space, stopped, outcome)
    return [stopped, space.run("rerun", job_args(spec))]


def _check_stop(spec: Spec, space: Workspace, stopped: JobRun, outcome: Outcome) -> None:
    """Exit 1 within the deadline, with its summary written and the "stopped early" mail sent."""
    if stopped.signal_time is None:
        outcome.notes.append(
            f"{spec.name}: the run ended before call {spec.point} (exit {stopped.exit_code})"
        )
        return
    wrong = []
    if stopped.exit_code != 1:
        wrong.append(f"exit {stopped.exit_code} instead of 1")
    if stopped.ended - stopped.signal_time > STOP_DEADLINE:
        wrong.append(f"took {stopped.ended - stopped.signal_time:.0f} s to stop")
    if not stopped.summary:
        wrong.append("no summary written")
    bookkeeper = space.sandbox.env["BOOKKEEPER_EMAIL"].lower()
    mailed = [
        m
        for m in space.sandbox.state()["mails"]
        if bookkeeper in [a.lower() for a in m["to"]] and STOPPED_EARLY.search(f"{m['subject']} {m['text']}")
    ]
    if not mailed:
        wrong.append('no "stopped early" mail to the bookkeeper')
    if wrong:
        outcome.problem("unrecovered", "stop not graceful: " + ", ".join(wrong))


def _concurrent(spec: Spec, space: Workspace, outcome: Outcome) -> list[JobRun]:
    space.sandbox.set_faults("qbo", latency_ms=30)
    started = [space.start(f"run{n}", job_args(spec)) for n in range(1, spec.point + 1)]
    runs = [space.finish(process, run) for process, run in started]
    space.sandbox.clear_faults()
    ledger = space.sandbox.state()["ledger"]
    contended = any(CONTENDED.search(run.output() + json.dumps(run.summary)) for run in runs) or any(
        row.get("previous_run_id") for row in ledger
    )
    if not contended:
        outcome.problem(None, f"{spec.point} runs did not contend (no claim seen by two runs): not proven")
    outcome.notes.append(f"{spec.name}: exits {[r.exit_code for r in runs]}, contended: {contended}")
    return runs


def _storm(spec: Spec, space: Workspace, outcome: Outcome) -> list[JobRun]:
    for service, settings in spec.storm:
        space.sandbox.set_faults(service, **json.loads(settings))
    stormy = space.run("storm", job_args(spec), HTTP_TIMEOUT_SECONDS="2")
    space.sandbox.clear_faults()
    outcome.notes.append(f"{spec.name}: storm run exit {stormy.exit_code}")
    return [stormy, space.run("rerun", job_args(spec))]


def _bad(spec: Spec, space: Workspace, outcome: Outcome) -> list[JobRun]:
    bad_input.plant(bad_input.by_name(spec.bad), space.sandbox)
    return [space.run("bad", job_args(spec))]


def _secrets(spec: Spec, space: Workspace, outcome: Outcome) -> list[JobRun]:
    debug = {"LOG_LEVEL": "debug"}
    runs = [space.run("create", CREATE, **debug)]
    space.sandbox.expire_tokens("qbo")
    space.sandbox.expire_tokens("graph")
    runs.append(space.run("send", SEND, **debug))
    runs.append(space.run("dry-run", [*CREATE, "--dry-run"], **debug))
    return runs


RUNNERS = {
    "crash": _crash,
    "sigterm": _sigterm,
    "concurrent": _concurrent,
    "storm": _storm,
    "bad": _bad,
    "secrets": _secrets,
}


# --- the verdict -------------------------------------------------------------------------------


def judge(spec: Spec, space: Workspace, runs: list[JobRun], outcome: Outcome) -> None:
    """Count against the reference, scan every output for secrets, then test the stored token."""
    state = space.sandbox.state()
    bookkeeper = space.sandbox.env["BOOKKEEPER_EMAIL"]
    (space.root / "ledger.json").write_text(json.dumps(state["ledger"], indent=1, default=str))
    reauth = bool(runs) and tokens.honest_exit_2(runs[-1])
    if reauth:
        # The re-run stopped at once with exit 2 and the `make qbo-auth` steps (e.g. the crash hit
        # the moment Intuit rotated the refresh token, whose old value dies at once: qbo-api.md).
        # Nothing can be billed or sent until a person re-authorises: counted as "re-auth needed"
        # (DESIGN §7), not as lost work; the token check below still applies.
        outcome.notes.append(f"{outcome.name}: work waits for re-authorisation (exit 2 with the steps)")
    elif spec.kind == "bad":
        _judge_bad(spec, state, runs[-1], outcome)
    else:
        checks.count_invoices(state, spec.reference, outcome, rerun=True)
        checks.count_archives(state, spec.reference, outcome)
    if not reauth and (spec.job == "send" or spec.kind == "secrets"):
        attempts = checks.failed_mail_attempts(space.sandbox.requests(), len(state["mails"]))
        checks.count_deliveries(state, spec.reference, bookkeeper, outcome, attempts)
    files = secrets_scan.output_files(space.root, space.sandbox.state_dir)
    scenario = read_json(space.sandbox.state_dir / "scenario.json", {}) or {}
    current = _stored_secrets(space)
    leaks = secrets_scan.scan(files, secrets_scan.secret_values(space.sandbox.state_dir, scenario, current))
    outcome.files_scanned = len(files)
    for path, label in leaks:
        outcome.problem("leaks", f"{label} found in {path.name}")
    tokens.count_token(space.sandbox, runs, outcome)


def _stored_secrets(space: Workspace) -> dict[str, dict[str, Any]]:
    client = space.sandbox.aws_client("secretsmanager")
    found = {}
    for entry in client.list_secrets()["SecretList"]:
        try:
            found[entry["Name"]] = json.loads(client.get_secret_value(SecretId=entry["Name"])["SecretString"])
        except (ValueError, client.exceptions.ResourceNotFoundException):
            continue
    return found


def _judge_bad(spec: Spec, state: dict[str, Any], run: JobRun, outcome: Outcome) -> None:
    """Others billed exactly; the touched client failed or named, never dropped silently."""
    kind = bad_input.by_name(spec.bad)
    touched = f"invoice-processor:{kind.client}:2026-10" if kind.client else None
    kept = {m for m in spec.reference.invoices if m != touched or kind.expect == "exact"}
    reference = checks.Reference(
        invoices={m: spec.reference.invoices[m] for m in kept},
        customers={m: c for m, c in spec.reference.customers.items() if m in kept},
    )
    checks.count_invoices(state, reference, outcome, rerun=False)
    if kind.client is None and kind.expect != "named":
        return
    rows = {row.get("client"): row for row in run.summary.get("table", [])}
    row = rows.get(kind.client or "", {})
    failed_named = row.get("outcome") == "failed" and bool(row.get("reason"))
    mails = " ".join(f"{m['subject']} {m['text']}" for m in state["mails"])
    said = json.dumps(run.summary, ensure_ascii=False) + mails
    named = bool(kind.item_id) and (
        kind.item_id in said or (kind.entry is not None and bad_input.PLANTED in said)
    )
    found = checks.marked_invoices(state).get(touched or "", [])
    billed = bool(found) and str(found[0]["TotalAmt"]) != spec.reference.invoices.get(touched or "")
    fine = {
        "failed": failed_named,
        "named": failed_named or named,
        "counted": failed_named or named or billed,
        "exact": True,
    }[kind.expect]
    if not fine:
        what = f"client {kind.client}" if kind.client else "the entry"
        outcome.problem(
            "lost",
            f"{what}: the bad datum was dropped without a word (row: {row.get('outcome')} {row.get('reason', '')!r}, exit {run.exit_code})",
        )
    if failed_named and run.exit_code == 0:
        outcome.problem("unrecovered", f"client {kind.client} failed but the run exited 0")
    others = [r for c, r in rows.items() if c != kind.client and r.get("outcome") == "failed"]
    for other in others:
        outcome.problem(None, f"client {other.get('client')} failed too: {other.get('reason')}")
