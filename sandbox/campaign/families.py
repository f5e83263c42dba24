"""The families of the campaign: clean reference runs first, then one Spec per scenario."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sandbox.campaign import bad_input, checks
from sandbox.campaign.scenarios import CREATE, ONE_WORKER, SEND, Spec
from sandbox.campaign.workspace import Workspace

FAMILIES = (
    "crash create",
    "crash send qbo",
    "crash send graph",
    "sigterm",
    "concurrency",
    "storms",
    "bad input",
    "secrets",
)
STORMS = {
    "5xx": {"error_rate": 0.2},
    "timeouts": {"timeout_rate": 0.2, "timeout_seconds": 3},
    "drops": {"drop_rate": 0.2},
}
CREATE_SERVICES = ("qbo", "qbo_auth", "graph", "graph_auth", "clickup", "robocorp")
SEND_SERVICES = ("qbo", "qbo_auth", "graph", "graph_auth")
SIGTERM_POINTS = {"create": 6, "qbo": 3, "graph": 3}
CONCURRENT = (("create", "qbo"), ("create", "qbo"), ("send", "qbo"), ("send", "graph"))
STORM_TARGETS = (
    *[("create", "qbo", s) for s in (*CREATE_SERVICES, "all")],
    *[("send", "qbo", s) for s in (*SEND_SERVICES, "all")],
    ("send", "graph", "all"),
)


class Prepared:
    """The clean runs every family is measured against, made once per campaign."""

    def __init__(self, root: Path, say: Callable[[str], None]):
        self.root = root
        self.template = root / "template" / "sandbox"
        self.create = self._reference("ref-create", "create", None)
        say(
            f"clean create run: {len(self.create.calls)} external calls, {len(self.create.invoices)} invoices"
        )
        self._template()
        self.send = {
            mode: self._reference(f"ref-send-{mode}", mode, self.template) for mode in ("qbo", "graph")
        }
        for mode, reference in self.send.items():
            say(
                f"clean send run ({mode}): {len(reference.calls)} external calls, {len(reference.delivered)} delivered"
            )

    def _template(self) -> None:
        """A sandbox after one clean create run, stopped: cloned by every send scenario."""
        with Workspace(self.template.parent) as space:
            run = space.run("create", CREATE)
        if run.exit_code != 0:
            raise RuntimeError(
                f"the clean create run for the send template exited {run.exit_code}: {run.stderr}"
            )

    def _reference(self, name: str, mode: str, clone: Path | None) -> checks.Reference:
        with Workspace(self.root / name, clone_of=clone) as space:
            space.extra_env["INVOICE_DELIVERY"] = "graph" if mode == "graph" else "qbo"
            run = space.run("clean", SEND if clone else CREATE, record=True, **ONE_WORKER)
            if run.exit_code != 0:
                raise RuntimeError(f"the clean run {name} exited {run.exit_code}: see {run.stderr}")
            state = space.sandbox.state()
            return checks.reference_from(
                state, space.sandbox.env["BOOKKEEPER_EMAIL"], run.calls, send=bool(clone)
            )


def spread(count: int, total: int) -> list[int]:
    """``count`` points from 1..total, evenly spread (all of them when count >= total)."""
    if count >= total:
        return list(range(1, total + 1))
    return sorted({max(1, round(total * (i + 1) / (count + 1))) for i in range(count)})


def build(prepared: Prepared) -> list[Spec]:
    """Every scenario of every family, in family order."""
    create, send = prepared.create, prepared.send
    specs: list[Spec] = []

    def add(family: str, name: str, kind: str, job: str, mode: str = "qbo", **more: Any) -> None:
        """A scenario; send scenarios clone the template and are held to their mode's reference."""
        folder = prepared.root / "scenarios" / f"{len(specs):04d}"
        send_job = job == "send"
        specs.append(
            Spec(
                family,
                name,
                kind,
                job,
                str(folder),
                delivery=mode,
                reference=more.pop("reference", send[mode] if send_job else create),
                template=str(prepared.template) if send_job else "",
                **more,
            )
        )

    for k, call in enumerate(create.calls, start=1):
        add("crash create", f"crash create after call {k}", "crash", "create", point=k, call=call)
    for mode in ("qbo", "graph"):
        for k, call in enumerate(send[mode].calls, start=1):
            add(
                f"crash send {mode}",
                f"crash send {mode} after call {k}",
                "crash",
                "send",
                mode,
                point=k,
                call=call,
            )
    for which, count in SIGTERM_POINTS.items():
        job, mode = ("create", "qbo") if which == "create" else ("send", which)
        calls = create.calls if job == "create" else send[mode].calls
        for k in spread(count, len(calls)):
            add(
                "sigterm", f"SIGTERM {which} after call {k}", "sigterm", job, mode, point=k, call=calls[k - 1]
            )
    for trial, (job, mode) in enumerate(CONCURRENT, start=1):
        for runs in (2, 3):
            add(
                "concurrency",
                f"{runs} {job} runs at once ({mode}, trial {trial})",
                "concurrent",
                job,
                mode,
                point=runs,
            )
    seed = 0
    for job, mode, service in STORM_TARGETS:
        services = (CREATE_SERVICES if job == "create" else SEND_SERVICES) if service == "all" else (service,)
        for fault, settings in STORMS.items():
            seed += 1
            storm = tuple((s, json.dumps({**settings, "seed": seed})) for s in services)
            add("storms", f"20% {fault} on {service} ({job} {mode})", "storm", job, mode, storm=storm)
    for kind in bad_input.KINDS:
        add("bad input", f"bad input: {kind.name}", "bad", "create", bad=kind.name)
    for mode in ("qbo", "graph"):
        name = f"secret scan, debug logs, expired tokens ({mode})"
        add("secrets", name, "secrets", "create", mode, reference=_merged(create, send[mode]))
    return specs


def _merged(create: checks.Reference, send: checks.Reference) -> checks.Reference:
    return checks.Reference(
        invoices=create.invoices, customers=create.customers, delivered=send.delivered, archives=send.archives
    )


def select(specs: list[Spec], families: list[str] | None, sample: int | None) -> list[Spec]:
    """The chosen families; ``sample``: that many scenarios of each, evenly spread."""
    chosen = []
    for family in FAMILIES:
        if families and family not in families:
            continue
        members = [spec for spec in specs if spec.family == family]
        if sample:
            members = [members[i - 1] for i in spread(sample, len(members))]
        chosen += members
    return chosen
