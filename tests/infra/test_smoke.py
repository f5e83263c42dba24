"""`make smoke` against a moto server, as far as moto goes.

moto registers the cluster and a task definition with the ecs module's log configuration (awslogs,
stream prefix ``ecs``), accepts RunTask with a Fargate network configuration, and moves the task
to STOPPED on its own over a few DescribeTasks (its state manager); its container's exit code is
always 0. CloudWatch Logs takes a stream under the awslogs name for the smoke to read back. The
Terraform outputs are a small fake in the shape of terraform/envs/prod's (a test below checks that
prod declares each one). The RunTask request is recorded from the boto3 client's own parameters.

What moto cannot show (a task that fails to pull its image, a container's non-zero exit) is driven
through the same code with the replies ECS documents.
"""

from __future__ import annotations

import io
import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from deploy import DeployConfigError, smoke
from tests.infra.conftest import ACCOUNT_ID, REGION, moto_client

pytestmark = [pytest.mark.infra, pytest.mark.xdist_group("smoke")]

REPO_ROOT = Path(__file__).resolve().parents[2]
CLUSTER = "qbo-invoice-processor"
CONTAINER = "invoice-processor"
LOG_GROUP = "/ecs/qbo-invoice-processor"
PREFIX = "ecs"  # terraform/modules/ecs: "awslogs-stream-prefix"


@pytest.fixture
def moto(moto_endpoint: str) -> str:
    requests.post(f"{moto_endpoint}/moto-api/reset", timeout=10)
    return moto_endpoint


def deployed(endpoint: str) -> dict[str, Any]:
    """A network, cluster, task definition and log group like the stack's; its outputs as Terraform
    gives them (moto places the task's network interface in the subnet, so it must exist)."""
    ec2 = moto_client(endpoint, "ec2")
    vpc = ec2.create_vpc(CidrBlock="10.20.0.0/16")["Vpc"]["VpcId"]
    # moto names the task's network interface by its private DNS name, which needs DNS hostnames.
    ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.20.1.0/24")["Subnet"]["SubnetId"]
    groups = [
        ec2.create_security_group(GroupName=name, Description=name, VpcId=vpc)["GroupId"]
        for name in ("task", "extra")
    ]
    ecs = moto_client(endpoint, "ecs")
    ecs.create_cluster(clusterName=CLUSTER)
    definition = ecs.register_task_definition(
        family="qbo-invoice-processor",
        networkMode="awsvpc",
        requiresCompatibilities=["FARGATE"],
        cpu="512",
        memory="1024",
        containerDefinitions=[
            {
                "name": CONTAINER,
                "image": f"{ACCOUNT_ID}.dkr.ecr.{REGION}.amazonaws.com/qbo-invoice-processor@sha256:{'0' * 64}",
                "essential": True,
                # moto sums container-level memory when placing a task (the stack sets it on the
                # task only, which ECS accepts for Fargate).
                "memory": 1024,
                "logConfiguration": {
                    "logDriver": "awslogs",
                    "options": {
                        "awslogs-group": LOG_GROUP,
                        "awslogs-region": REGION,
                        "awslogs-stream-prefix": PREFIX,
                    },
                },
            }
        ],
    )["taskDefinition"]
    moto_client(endpoint, "logs").create_log_group(logGroupName=LOG_GROUP)
    return {
        "cluster_name": CLUSTER,
        "task_definition_arn": definition["taskDefinitionArn"],
        "container_name": CONTAINER,
        "subnet_ids": [subnet],
        "security_group_ids": groups,
        "assign_public_ip": True,
        "log_group_name": LOG_GROUP,
    }


def recording(client: Any, operation: str) -> list[dict[str, Any]]:
    """The parameters of every ``operation`` call the boto3 client makes."""
    calls: list[dict[str, Any]] = []
    client.meta.events.register(
        f"provide-client-params.{client.meta.service_model.service_name}.{operation}",
        lambda params, **_: calls.append(json.loads(json.dumps(params))),
    )
    return calls


class TaskLogs:
    """Writes the task's log lines into moto as the awslogs driver would, once the task exists."""

    def __init__(self, logs: Any, ecs: Any, lines: list[str]) -> None:
        self.logs, self.ecs, self.lines, self.written = logs, ecs, lines, ""

    def sleep(self, _seconds: float) -> None:
        if self.written:
            return
        task_arn = self.ecs.list_tasks(cluster=CLUSTER)["taskArns"][0]
        self.written = f"{PREFIX}/{CONTAINER}/{task_arn.rsplit('/', 1)[-1]}"
        self.logs.create_log_stream(logGroupName=LOG_GROUP, logStreamName=self.written)
        now = int(time.time() * 1000)  # CloudWatch Logs rejects events older than 14 days
        self.logs.put_log_events(
            logGroupName=LOG_GROUP,
            logStreamName=self.written,
            logEvents=[{"timestamp": now + i, "message": m} for i, m in enumerate(self.lines)],
        )


def test_smoke_runs_the_task_definition_dry_on_the_schedules_network_and_prints_exit_code_and_log_tail(moto):
    outputs = deployed(moto)
    ecs, logs = moto_client(moto, "ecs"), moto_client(moto, "logs")
    run_task = recording(ecs, "RunTask")
    lines = [f'{{"message": "client 1000{i}: would create"}}' for i in range(50)]
    lines.append('{"message": "run finished", "exit_code": 0}')
    task_logs = TaskLogs(logs, ecs, lines)
    printed = io.StringIO()

    code = smoke.run(outputs, ecs, logs, poll_seconds=0, tail_lines=5, sleep=task_logs.sleep, out=printed)

    assert code == 0, printed.getvalue()
    assert run_task == [
        {
            "cluster": CLUSTER,
            "taskDefinition": outputs["task_definition_arn"],
            "launchType": "FARGATE",
            "count": 1,
            "startedBy": "make-smoke",
            "networkConfiguration": {
                "awsvpcConfiguration": {
                    "subnets": outputs["subnet_ids"],
                    "securityGroups": outputs["security_group_ids"],
                    "assignPublicIp": "ENABLED",
                }
            },
            "overrides": {
                "containerOverrides": [{"name": CONTAINER, "command": ["--create-invoices", "--dry-run"]}]
            },
        }
    ]
    text = printed.getvalue()
    task_id = task_logs.written.rsplit("/", 1)[-1]
    assert f"task {task_id} exit code 0" in text
    assert f"last 5 log lines of {LOG_GROUP} {PREFIX}/{CONTAINER}/{task_id}" in text
    assert text.rstrip().splitlines()[-5:] == lines[-5:]
    assert lines[-6] not in text
    task = ecs.describe_tasks(cluster=CLUSTER, tasks=[task_logs.written.rsplit("/", 1)[-1]])["tasks"][0]
    assert task["lastStatus"] == "STOPPED" and task["overrides"]["containerOverrides"][0]["command"] == [
        "--create-invoices",
        "--dry-run",
    ]


def test_private_subnets_run_the_task_without_a_public_ip(moto):
    outputs = {**deployed(moto), "assign_public_ip": False}
    ecs = moto_client(moto, "ecs")
    run_task = recording(ecs, "RunTask")

    smoke.run(
        outputs, ecs, moto_client(moto, "logs"), poll_seconds=0, sleep=lambda _: None, out=io.StringIO()
    )

    assert run_task[0]["networkConfiguration"]["awsvpcConfiguration"]["assignPublicIp"] == "DISABLED"


def test_a_task_definition_ecs_refuses_exits_2_with_the_reason(moto):
    outputs = {**deployed(moto), "task_definition_arn": "qbo-invoice-processor:99"}
    printed = io.StringIO()

    code = smoke.run(
        outputs, moto_client(moto, "ecs"), moto_client(moto, "logs"), sleep=lambda _: None, out=printed
    )

    assert code == 2
    assert printed.getvalue().startswith("smoke: the task could not start: RunTask refused:")


def test_a_task_still_running_at_the_deadline_is_stopped_and_exits_1(moto):
    outputs = deployed(moto)
    ecs = moto_client(moto, "ecs")
    printed = io.StringIO()

    code = smoke.run(outputs, ecs, moto_client(moto, "logs"), timeout_seconds=0, out=printed)

    assert code == 1
    task_arn = ecs.list_tasks(cluster=CLUSTER, desiredStatus="STOPPED")["taskArns"][0]
    task = ecs.describe_tasks(cluster=CLUSTER, tasks=[task_arn])["tasks"][0]
    assert task["stoppedReason"].startswith("make smoke: not stopped after")
    assert "still running after 0 s: stopped by smoke" in printed.getvalue()
    assert "no log events in" in printed.getvalue()


class DocumentedEcs:
    """ECS replies moto cannot produce, in the shapes the ECS API reference gives, around a real
    moto client for everything else."""

    def __init__(self, real: Any, run_task: dict[str, Any] | None = None, task: dict[str, Any] | None = None):
        self.real, self._run_task, self._task = real, run_task, task

    def run_task(self, **params: Any) -> dict[str, Any]:
        return self._run_task if self._run_task is not None else self.real.run_task(**params)

    def describe_tasks(self, **params: Any) -> dict[str, Any]:
        task = self.real.describe_tasks(**params)["tasks"][0]
        return {"tasks": [{**task, **(self._task or {})}], "failures": []}

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def test_runtask_failures_without_a_task_exit_2_with_ecs_reason(moto):
    ecs = DocumentedEcs(
        moto_client(moto, "ecs"),
        run_task={"tasks": [], "failures": [{"arn": "arn:aws:ecs:...:cluster/x", "reason": "MISSING"}]},
    )
    printed = io.StringIO()

    code = smoke.run(deployed(moto), ecs, moto_client(moto, "logs"), sleep=lambda _: None, out=printed)

    assert code == 2 and "RunTask started no task: MISSING (arn:aws:ecs:...:cluster/x)" in printed.getvalue()


def test_a_task_that_stopped_before_its_container_ran_exits_2_with_the_stopped_reason(moto):
    outputs = deployed(moto)
    pull_failed = {
        "stopCode": "TaskFailedToStart",
        "stoppedReason": "CannotPullContainerError: pull image manifest has been retried 5 time(s)",
        "containers": [{"name": CONTAINER, "lastStatus": "STOPPED"}],
    }
    ecs = DocumentedEcs(moto_client(moto, "ecs"), task=pull_failed)
    printed = io.StringIO()

    code = smoke.run(
        outputs, ecs, moto_client(moto, "logs"), poll_seconds=0, sleep=lambda _: None, out=printed
    )

    assert code == 2
    assert "exit code 2 (the container did not run: CannotPullContainerError" in printed.getvalue()


def test_the_tasks_own_non_zero_exit_code_is_smokes_exit_code(moto):
    outputs = deployed(moto)
    ecs = DocumentedEcs(
        moto_client(moto, "ecs"),
        task={
            "stoppedReason": "Essential container in task exited",
            "containers": [{"name": CONTAINER, "exitCode": 1}],
        },
    )
    printed = io.StringIO()

    code = smoke.run(
        outputs, ecs, moto_client(moto, "logs"), poll_seconds=0, sleep=lambda _: None, out=printed
    )

    assert code == 1 and "exit code 1 (Essential container in task exited)" in printed.getvalue()


def test_missing_outputs_say_the_stack_is_not_deployed():
    with pytest.raises(DeployConfigError) as caught:
        smoke.SmokeTarget.from_outputs({"cluster_name": "x", "subnet_ids": []})
    assert len(caught.value.problems) == len(smoke.OUTPUTS) - 1
    assert "no output subnet_ids" in str(caught.value) and "make deploy" in str(caught.value)


def test_smoke_reads_outputs_prod_declares_and_the_ecs_modules_stream_prefix():
    outputs = (REPO_ROOT / "terraform/envs/prod/outputs.tf").read_text()
    for name in smoke.OUTPUTS:
        assert re.search(rf'^output "{name}" {{', outputs, re.M), f"prod declares no output {name}"
    ecs_module = (REPO_ROOT / "terraform/modules/ecs/main.tf").read_text()
    assert f'"awslogs-stream-prefix" = "{PREFIX}"' in ecs_module
    makefile = (REPO_ROOT / "Makefile").read_text()
    assert re.search(r"^smoke: .*## .+\n\t\$\(PY\) -m deploy smoke$", makefile, re.M)
