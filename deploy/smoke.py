"""``make smoke``: one ``--create-invoices --dry-run`` of the deployed task, as the schedule runs it.

Everything comes from the root stack's Terraform outputs (``terraform output -json`` of
terraform/envs/prod): the cluster, the task definition (with its revision: what the schedules run),
the container to override, and the schedules' network configuration (subnets, security groups,
public IP). A task that reaches QBO, Graph, ClickUp and Robocorp from there will reach them on the
4th too; a dry run writes nothing (no invoice, no mail, no ledger item).

Then it waits (bounded) for the task to stop, prints its exit code and the end of its CloudWatch log
stream, and exits with the task's exit code: 0, 1 or 2 mean what they mean for a scheduled run
(docs/runbook.md). It exits 2 itself, with the reason, when the task could not start (RunTask
refused it, or it stopped before the container ran: image pull, network, role); a task still
running at the deadline is stopped (a dry run: nothing is lost) and gives exit 1.

The AWS clients are passed in (ECS and CloudWatch Logs); nothing here builds its own.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TextIO

from botocore.exceptions import ClientError

from deploy import DeployConfigError, DeployError

COMMAND = ("--create-invoices", "--dry-run")
STARTED_BY = "make-smoke"
# The root stack's outputs smoke reads (terraform/envs/prod/outputs.tf).
OUTPUTS = (
    "cluster_name",
    "task_definition_arn",
    "container_name",
    "subnet_ids",
    "security_group_ids",
    "assign_public_ip",
    "log_group_name",
)
DEFAULT_TIMEOUT_SECONDS = 900  # a dry run takes a minute or two; Fargate start-up adds about one
DEFAULT_POLL_SECONDS = 6.0
DEFAULT_TAIL_LINES = 40
EXIT_COULD_NOT_START = 2
EXIT_TIMED_OUT = 1


class TaskDidNotStart(DeployError):
    """RunTask refused the task, or it stopped before its container ran."""


@dataclass(frozen=True)
class SmokeTarget:
    """What the schedules run and where: read from the stack's outputs."""

    cluster: str
    task_definition_arn: str
    container: str
    subnets: tuple[str, ...]
    security_groups: tuple[str, ...]
    assign_public_ip: bool
    log_group: str

    @classmethod
    def from_outputs(cls, outputs: Mapping[str, Any]) -> SmokeTarget:
        missing = [name for name in OUTPUTS if outputs.get(name) in (None, "", [])]
        if missing:
            raise DeployConfigError(
                [
                    f"terraform/envs/prod has no output {name} (is the stack deployed? `make deploy`)"
                    for name in missing
                ]
            )
        return cls(
            cluster=str(outputs["cluster_name"]),
            task_definition_arn=str(outputs["task_definition_arn"]),
            container=str(outputs["container_name"]),
            subnets=tuple(outputs["subnet_ids"]),
            security_groups=tuple(outputs["security_group_ids"]),
            assign_public_ip=bool(outputs["assign_public_ip"]),
            log_group=str(outputs["log_group_name"]),
        )

    def run_task_request(self) -> dict[str, Any]:
        """The RunTask parameters: the schedule's (launch type, network), the smoke command."""
        return {
            "cluster": self.cluster,
            "taskDefinition": self.task_definition_arn,
            "launchType": "FARGATE",
            "count": 1,
            "startedBy": STARTED_BY,
            "networkConfiguration": {
                "awsvpcConfiguration": {
                    "subnets": list(self.subnets),
                    "securityGroups": list(self.security_groups),
                    "assignPublicIp": "ENABLED" if self.assign_public_ip else "DISABLED",
                }
            },
            "overrides": {"containerOverrides": [{"name": self.container, "command": list(COMMAND)}]},
        }


def start(ecs: Any, target: SmokeTarget) -> str:
    """RunTask; the new task's ARN, or TaskDidNotStart with ECS's reason."""
    try:
        reply = ecs.run_task(**target.run_task_request())
    except ClientError as exc:
        error = exc.response.get("Error", {})
        raise TaskDidNotStart(
            f"RunTask refused: {error.get('Code', '?')}: {error.get('Message', str(exc))}"
        ) from None
    tasks = reply.get("tasks") or []
    if not tasks:
        reasons = "; ".join(
            f"{f.get('reason', '?')} ({f.get('arn', '')})".replace(" ()", "")
            for f in reply.get("failures") or []
        )
        raise TaskDidNotStart(f"RunTask started no task: {reasons or 'no reason given'}")
    return str(tasks[0]["taskArn"])


def wait_stopped(
    ecs: Any,
    cluster: str,
    task_arn: str,
    *,
    timeout_seconds: float,
    poll_seconds: float,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> dict[str, Any] | None:
    """The task once STOPPED, or None when it is still not stopped after ``timeout_seconds``."""
    deadline = clock() + timeout_seconds
    while True:
        tasks = ecs.describe_tasks(cluster=cluster, tasks=[task_arn]).get("tasks") or []
        if tasks and tasks[0].get("lastStatus") == "STOPPED":
            return tasks[0]
        if clock() >= deadline:
            return None
        sleep(poll_seconds)


def log_location(ecs: Any, target: SmokeTarget, task_arn: str) -> tuple[str, str]:
    """(group, stream) of the container's awslogs stream: ``<prefix>/<container>/<task id>``,
    the prefix and group read from the task definition's log configuration."""
    definition = ecs.describe_task_definition(taskDefinition=target.task_definition_arn)["taskDefinition"]
    container = next(
        (c for c in definition.get("containerDefinitions", []) if c.get("name") == target.container), {}
    )
    options = (container.get("logConfiguration") or {}).get("options") or {}
    group = options.get("awslogs-group") or target.log_group
    prefix = options.get("awslogs-stream-prefix")
    task_id = task_arn.rsplit("/", 1)[-1]
    stream = f"{prefix}/{target.container}/{task_id}" if prefix else f"{target.container}/{task_id}"
    return group, stream


def log_tail(logs: Any, group: str, stream: str, lines: int) -> list[str]:
    """The last ``lines`` messages of the stream; empty when the stream does not exist."""
    try:
        reply = logs.get_log_events(
            logGroupName=group, logStreamName=stream, startFromHead=False, limit=lines
        )
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
            return []
        raise
    return [str(event.get("message", "")).rstrip("\n") for event in reply.get("events", [])]


def _container_exit(task: Mapping[str, Any], container: str) -> int | None:
    for item in task.get("containers") or []:
        if item.get("name") == container:
            code = item.get("exitCode")
            return int(code) if code is not None else None
    return None


def run(
    outputs: Mapping[str, Any],
    ecs: Any,
    logs: Any,
    *,
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
    poll_seconds: float = DEFAULT_POLL_SECONDS,
    tail_lines: int = DEFAULT_TAIL_LINES,
    sleep: Callable[[float], None] = time.sleep,
    out: TextIO | None = None,
) -> int:
    """Start the smoke run, wait, print the exit code and the log tail; the exit code for make."""
    out = out or sys.stdout
    target = SmokeTarget.from_outputs(outputs)
    try:
        task_arn = start(ecs, target)
    except TaskDidNotStart as exc:
        print(f"smoke: the task could not start: {exc}", file=out)
        return EXIT_COULD_NOT_START
    task_id = task_arn.rsplit("/", 1)[-1]
    print(
        f"smoke: started task {task_id} ({' '.join(COMMAND)}) on cluster {target.cluster}, "
        f"waiting up to {int(timeout_seconds)} s for it to stop",
        file=out,
    )
    task = wait_stopped(
        ecs, target.cluster, task_arn, timeout_seconds=timeout_seconds, poll_seconds=poll_seconds, sleep=sleep
    )
    if task is None:
        ecs.stop_task(
            cluster=target.cluster, task=task_arn, reason=f"make smoke: not stopped after {timeout_seconds} s"
        )
        exit_code, reason = EXIT_TIMED_OUT, f"still running after {int(timeout_seconds)} s: stopped by smoke"
    else:
        code = _container_exit(task, target.container)
        reason = str(task.get("stoppedReason") or "")
        exit_code = code if code is not None else EXIT_COULD_NOT_START
        if code is None:
            reason = f"the container did not run: {reason or task.get('stopCode') or 'no reason given'}"
    group, stream = log_location(ecs, target, task_arn)
    lines = log_tail(logs, group, stream, tail_lines)
    print(f"smoke: task {task_id} exit code {exit_code}" + (f" ({reason})" if reason else ""), file=out)
    if lines:
        print(f"--- last {len(lines)} log lines of {group} {stream} ---", file=out)
        for line in lines:
            print(line, file=out)
    else:
        print(f"--- no log events in {group} {stream} ---", file=out)
    return exit_code
