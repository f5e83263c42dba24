"""The Terraform under terraform/: formatted, valid, applied to a moto server with the values the
jobs need, a second plan without changes, destroyed cleanly, and clean under checkov.

moto accepts nearly anything (bad cron strings, unknown time zones), so the assertions check the
applied state (`terraform show -json`) against what the jobs and DESIGN §5 require. The failure
rule's event pattern is matched against sample ECS events with our own matcher (moto cannot).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from integrations.config import REQUIRED
from tests.infra.conftest import (
    ACCOUNT_ID,
    MODULES,
    REGION,
    REPO,
    ROOT_STACK,
    SECRET_NAMES,
    TERRAFORM_DIR,
    AppliedStack,
    Terraform,
    managed_resources,
    moto_client,
)
from tests.infra.event_pattern import matches
from tests.infra.input_transformer import render

pytestmark = [pytest.mark.infra, pytest.mark.xdist_group("terraform")]

CLUSTER_ARN = f"arn:aws:ecs:{REGION}:{ACCOUNT_ID}:cluster/qbo-invoice-processor-cluster"
NAMESPACE = "QboInvoiceProcessor"


@pytest.fixture(scope="module", autouse=True)
def _start_terraform_work_early(request: pytest.FixtureRequest) -> None:
    """Start validation and the apply to moto before the first test needs them (they overlap)."""
    wanted = {"applied_stack", "validations"}
    if not any(
        item.module is request.module and wanted & set(getattr(item, "fixturenames", ()))
        for item in request.session.items
    ):
        return
    try:
        request.getfixturevalue("terraform_work")
    except pytest.skip.Exception:
        pass  # no terraform or mirror: the tests that need them skip with the reason


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------
def one(stack: AppliedStack, address: str) -> dict[str, Any]:
    assert address in stack.resources, f"{address} not in state; have {sorted(stack.resources)}"
    return stack.resources[address]["values"]


def of_type(stack: AppliedStack, resource_type: str) -> dict[str, dict[str, Any]]:
    return {a: r["values"] for a, r in stack.resources.items() if r["type"] == resource_type}


def statements(policy: str | dict[str, Any]) -> list[dict[str, Any]]:
    document = json.loads(policy) if isinstance(policy, str) else policy
    found = document["Statement"]
    return found if isinstance(found, list) else [found]


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def container(stack: AppliedStack) -> dict[str, Any]:
    definitions = json.loads(one(stack, "module.ecs.aws_ecs_task_definition.this")["container_definitions"])
    assert len(definitions) == 1
    return definitions[0]


def schedule_target(stack: AppliedStack, job: str) -> dict[str, Any]:
    return one(stack, f'module.schedule["{job}"].aws_scheduler_schedule.this')["target"][0]


def ecs_event(
    *,
    exit_codes: list[int | None],
    last_status: str = "STOPPED",
    stop_code: str = "EssentialContainerExited",
    cluster_arn: str = CLUSTER_ARN,
) -> dict[str, Any]:
    """An "ECS Task State Change" event shaped like the ones ECS sends (trimmed)."""
    task_arn = f"arn:aws:ecs:{REGION}:{ACCOUNT_ID}:task/qbo-invoice-processor-cluster/0123456789abcdef"
    containers = []
    for index, code in enumerate(exit_codes):
        entry: dict[str, Any] = {
            "containerArn": f"arn:aws:ecs:{REGION}:{ACCOUNT_ID}:container/{index}",
            "lastStatus": last_status,
            "name": "invoice-processor" if index == 0 else f"sidecar-{index}",
            "taskArn": task_arn,
        }
        if code is not None:
            entry["exitCode"] = code
        containers.append(entry)
    detail: dict[str, Any] = {
        "clusterArn": cluster_arn,
        "containers": containers,
        "desiredStatus": "STOPPED",
        "group": "family:qbo-invoice-processor",
        "lastStatus": last_status,
        "launchType": "FARGATE",
        "startedBy": "chronos-schedule",
        "taskArn": task_arn,
        "taskDefinitionArn": f"arn:aws:ecs:{REGION}:{ACCOUNT_ID}:task-definition/qbo-invoice-processor:7",
    }
    if last_status == "STOPPED":
        detail["stopCode"] = stop_code
        detail["stoppedReason"] = "Essential container in task exited"
    return {
        "version": "0",
        "id": "3317b2af-7005-947d-b652-f55e762e571a",
        "detail-type": "ECS Task State Change",
        "source": "aws.ecs",
        "account": ACCOUNT_ID,
        "time": "2026-11-04T17:03:12Z",
        "region": REGION,
        "resources": [task_arn],
        "detail": detail,
    }


# --------------------------------------------------------------------------------------------
# our event-pattern matcher (no terraform needed)
# --------------------------------------------------------------------------------------------
def test_matcher_follows_eventbridge_semantics_for_the_features_we_use() -> None:
    event = {"source": "aws.ecs", "detail": {"items": [{"code": 0}, {"code": 137}], "name": "job-1"}}
    assert matches({"source": ["aws.ecs"]}, event)
    assert not matches({"source": ["aws.ec2"]}, event)
    assert matches({"detail": {"items": {"code": [{"anything-but": 0}]}}}, event)
    assert not matches({"detail": {"items": {"code": [{"anything-but": [0, 137]}]}}}, event)
    assert matches({"detail": {"name": [{"prefix": "job-"}]}}, event)
    assert matches({"detail": {"missing": [{"exists": False}]}}, event)
    assert not matches({"detail": {"missing": [{"anything-but": 0}]}}, event)
    assert matches({"detail": {"$or": [{"missing": ["x"]}, {"name": ["job-1"]}]}}, event)
    assert not matches({"detail": {"$or": [{"missing": ["x"]}, {"name": ["job-2"]}]}}, event)
    assert not matches({"detail": {"items": {"code": ["0"]}}}, event), "strings never equal numbers"


def test_matcher_refuses_operators_it_does_not_implement() -> None:
    with pytest.raises(ValueError, match="numeric"):
        matches({"detail": {"code": [{"numeric": [">", 0]}]}}, {"detail": {"code": 1}})


# --------------------------------------------------------------------------------------------
# static checks
# --------------------------------------------------------------------------------------------
def test_terraform_files_are_formatted(terraform: Terraform) -> None:
    proc = terraform.run(TERRAFORM_DIR, "fmt", "-check", "-recursive", "-diff", check=False)
    assert proc.returncode == 0, f"run `terraform fmt -recursive terraform/`:\n{proc.stdout}{proc.stderr}"


@pytest.mark.parametrize("directory", [ROOT_STACK, *(f"modules/{m}" for m in MODULES)])
def test_module_validates(directory: str, validations: dict[str, str]) -> None:
    assert validations[directory] == "", validations[directory]


def _blocks(text: str, kind: str) -> dict[str, str]:
    """Top-level `kind "name" { ... }` blocks of an HCL file (brace matching; enough for our files)."""
    found: dict[str, str] = {}
    for match in re.finditer(rf'^{kind} "([^"]+)" \{{', text, flags=re.MULTILINE):
        depth, index = 0, match.end() - 1
        for index in range(match.end() - 1, len(text)):  # noqa: B007 - index used after the loop
            depth += {"{": 1, "}": -1}.get(text[index], 0)
            if depth == 0:
                break
        found[match.group(1)] = text[match.end() : index]
    return found


@pytest.mark.parametrize("directory", [ROOT_STACK, *(f"modules/{m}" for m in MODULES)])
def test_module_follows_the_layout_conventions(directory: str) -> None:
    path = TERRAFORM_DIR / directory
    for name in ("main.tf", "variables.tf", "outputs.tf", "versions.tf", "README.md"):
        assert (path / name).is_file(), f"{directory} lacks {name}"
    variables = _blocks((path / "variables.tf").read_text(), "variable")
    assert variables, f"{directory}/variables.tf declares no variables"
    for name, body in variables.items():
        assert re.search(r"^\s*type\s*=", body, re.MULTILINE), f"{directory}: variable {name} has no type"
        assert re.search(r"^\s*description\s*=", body, re.MULTILINE), (
            f"{directory}: variable {name} has no description"
        )
    for name, body in _blocks((path / "outputs.tf").read_text(), "output").items():
        assert "description" in body, f"{directory}: output {name} has no description"
    versions = (path / "versions.tf").read_text()
    assert 'source  = "hashicorp/aws"' in versions
    assert re.search(r'version\s*=\s*"(~> 5\.100|= ?5\.100\.0)"', versions), (
        "pin aws to what the mirror holds"
    )
    for name in ("README.md",):
        readme = (path / name).read_text()
        assert "| Name" in readme or "|Name" in readme, f"{directory}/README.md has no inputs/outputs table"


def test_tfvars_example_sets_every_required_variable_and_only_declared_ones() -> None:
    stack = TERRAFORM_DIR / ROOT_STACK
    variables = _blocks((stack / "variables.tf").read_text(), "variable")
    required = {
        name for name, body in variables.items() if not re.search(r"^\s*default\s*=", body, re.MULTILINE)
    }
    example = (stack / "terraform.tfvars.example").read_text()
    assigned = set(re.findall(r"^([a-z_][a-z0-9_]*)\s*=", example, flags=re.MULTILINE))
    assert assigned <= set(variables), f"unknown variables in the example: {assigned - set(variables)}"
    # image_digest is passed by `make deploy` for every apply; the example names it in a comment.
    assert required - assigned == {"image_digest"}, required - assigned
    assert "# image_digest" in example


def test_lock_file_pins_the_mirrored_provider() -> None:
    lock = (TERRAFORM_DIR / ROOT_STACK / ".terraform.lock.hcl").read_text()
    assert 'provider "registry.terraform.io/hashicorp/aws"' in lock
    assert 'version     = "5.100.0"' in lock
    assert re.search(r'"h1:[A-Za-z0-9+/=]+"', lock)


def test_every_checkov_skip_carries_a_reason() -> None:
    skips = [
        (path, line.strip())
        for path in TERRAFORM_DIR.rglob("*.tf")
        if ".terraform" not in path.parts
        for line in path.read_text().splitlines()
        if "checkov:skip" in line
    ]
    assert skips, "expected the documented skips (log group, ledger CMK, scheduler CMK)"
    for path, line in skips:
        match = re.fullmatch(r"#checkov:skip=(CKV2?_AWS_\d+):(.+)", line)
        assert match, f"{path}: malformed skip {line!r} (want #checkov:skip=ID:reason)"
        assert len(match.group(2).strip()) >= 40, f"{path}: the reason for {match.group(1)} is too thin"


def _checkov_binary() -> str:
    candidate = os.environ.get("CHECKOV") or str(REPO / ".tools/checkov/bin/checkov")
    if not Path(candidate).is_file():
        pytest.fail(
            f"checkov not found at {candidate}: run `make test` (it installs checkov into .tools/checkov) "
            "or set CHECKOV to a checkov 3.2 binary"
        )
    return candidate


def test_checkov_finds_no_failures() -> None:
    proc = subprocess.run(
        [_checkov_binary(), "-d", str(TERRAFORM_DIR), "--framework", "terraform"]
        + ["--compact", "--quiet", "--skip-download"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    summary = re.search(r"Passed checks: (\d+), Failed checks: (\d+), Skipped checks: (\d+)", proc.stdout)
    assert summary, f"no checkov summary (rc {proc.returncode}):\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}"
    passed, failed, _skipped = map(int, summary.groups())
    assert failed == 0 and proc.returncode == 0, proc.stdout[-6000:]
    assert passed > 100, f"checkov ran only {passed} checks: did it see the modules?"


# --------------------------------------------------------------------------------------------
# the stack applied to moto
# --------------------------------------------------------------------------------------------
def test_apply_creates_the_whole_footprint(applied_stack: AppliedStack) -> None:
    types = sorted({r["type"] for r in applied_stack.resources.values()})
    assert types == [
        "aws_cloudwatch_composite_alarm",
        "aws_cloudwatch_event_rule",
        "aws_cloudwatch_event_target",
        "aws_cloudwatch_log_group",
        "aws_cloudwatch_metric_alarm",
        "aws_dynamodb_table",
        "aws_ecr_lifecycle_policy",
        "aws_ecr_repository",
        "aws_ecs_cluster",
        "aws_ecs_task_definition",
        "aws_iam_role",
        "aws_iam_role_policy",
        "aws_iam_role_policy_attachment",
        "aws_kms_alias",
        "aws_kms_key",
        "aws_scheduler_schedule",
        "aws_security_group",
        "aws_sns_topic",
        "aws_sns_topic_policy",
        "aws_sns_topic_subscription",
        "aws_sqs_queue",
    ]
    assert not of_type(applied_stack, "aws_secretsmanager_secret"), "secrets are referenced, never created"
    tables = [v["name"] for v in of_type(applied_stack, "aws_dynamodb_table").values()]
    assert tables == ["qbo-invoice-processor-ledger"], "the registry table is referenced, never created"


@pytest.mark.parametrize(
    ("job", "expression"),
    [("create-invoices", "cron(0 9 4-10 * ? *)"), ("send-invoices", "cron(0 5 * * ? *)")],
)
def test_schedules_fire_daily_in_los_angeles_create_on_the_4th_to_10th(
    applied_stack: AppliedStack, job: str, expression: str
) -> None:
    schedule = one(applied_stack, f'module.schedule["{job}"].aws_scheduler_schedule.this')
    assert schedule["name"] == f"qbo-invoice-processor-{job}"
    assert schedule["schedule_expression"] == expression
    assert schedule["schedule_expression_timezone"] == "America/Los_Angeles"
    assert schedule["state"] == "ENABLED"
    assert schedule["flexible_time_window"] == [{"maximum_window_in_minutes": 0, "mode": "OFF"}]


@pytest.mark.parametrize(
    ("job", "flag"), [("create-invoices", "--create-invoices"), ("send-invoices", "--send-invoices")]
)
def test_schedules_override_the_command_and_pass_the_scheduled_time(
    applied_stack: AppliedStack, job: str, flag: str
) -> None:
    target = schedule_target(applied_stack, job)
    assert "<aws.scheduler.scheduled-time>" in target["input"], "the placeholder must not be JSON-escaped"
    assert json.loads(target["input"]) == {
        "containerOverrides": [
            {
                "name": "invoice-processor",
                "command": [flag],
                "environment": [{"name": "SCHEDULED_TIME", "value": "<aws.scheduler.scheduled-time>"}],
            }
        ]
    }


@pytest.mark.parametrize("job", ["create-invoices", "send-invoices"])
def test_schedules_run_the_current_task_definition_revision_on_fargate(
    applied_stack: AppliedStack, job: str
) -> None:
    task_definition = one(applied_stack, "module.ecs.aws_ecs_task_definition.this")
    target = schedule_target(applied_stack, job)
    assert target["arn"] == CLUSTER_ARN
    assert target["role_arn"] == one(applied_stack, "module.iam.aws_iam_role.scheduler")["arn"]
    ecs = target["ecs_parameters"][0]
    assert ecs["task_definition_arn"] == task_definition["arn"]
    assert re.search(r":task-definition/qbo-invoice-processor:\d+$", ecs["task_definition_arn"])
    assert ecs["launch_type"] == "FARGATE"
    assert ecs["task_count"] == 1
    created = one(applied_stack, "aws_security_group.task[0]")["id"]
    assert ecs["network_configuration"] == [
        {
            "assign_public_ip": True,
            "security_groups": sorted([created, "sg-0123456789abcdef0"]),
            "subnets": ["subnet-0123456789abcdef0"],
        }
    ]


def test_security_group_made_from_vpc_id_allows_outbound_https_only(applied_stack: AppliedStack) -> None:
    group = one(applied_stack, "aws_security_group.task[0]")
    assert group["vpc_id"] == applied_stack.vpc_id
    assert group["ingress"] == []
    assert [(r["protocol"], r["from_port"], r["to_port"]) for r in group["egress"]] == [("tcp", 443, 443)]
    assert group["egress"][0]["cidr_blocks"] == ["0.0.0.0/0"]
    # What AWS holds, not only what Terraform asked for: the default allow-all egress rule is gone.
    described = moto_client(applied_stack.endpoint, "ec2").describe_security_groups(GroupIds=[group["id"]])
    (held,) = described["SecurityGroups"]
    assert held["IpPermissions"] == []
    assert [(r["IpProtocol"], r.get("FromPort"), r.get("ToPort")) for r in held["IpPermissionsEgress"]] == [
        ("tcp", 443, 443)
    ]


def test_outputs_give_what_a_manual_or_smoke_run_needs(applied_stack: AppliedStack) -> None:
    outputs = {k: v["value"] for k, v in json.loads(applied_stack.run("output", "-json").stdout).items()}
    target = schedule_target(applied_stack, "send-invoices")
    network = target["ecs_parameters"][0]["network_configuration"][0]
    assert outputs["cluster_name"] == "qbo-invoice-processor-cluster"
    assert outputs["task_definition_arn"] == target["ecs_parameters"][0]["task_definition_arn"]
    assert outputs["container_name"] == container(applied_stack)["name"]
    assert (
        outputs["log_group_name"] == container(applied_stack)["logConfiguration"]["options"]["awslogs-group"]
    )
    assert outputs["subnet_ids"] == network["subnets"]
    assert sorted(outputs["security_group_ids"]) == network["security_groups"]
    assert outputs["assign_public_ip"] is network["assign_public_ip"]
    assert outputs["task_security_group_id"] == one(applied_stack, "aws_security_group.task[0]")["id"]


@pytest.mark.parametrize("job", ["create-invoices", "send-invoices"])
def test_failed_invocations_are_retried_then_dead_lettered(applied_stack: AppliedStack, job: str) -> None:
    target = schedule_target(applied_stack, job)
    retry = target["retry_policy"][0]
    assert 0 < retry["maximum_retry_attempts"] <= 185
    assert 60 <= retry["maximum_event_age_in_seconds"] <= 86400
    queue = one(applied_stack, f'module.schedule["{job}"].aws_sqs_queue.dead_letter')
    assert target["dead_letter_config"] == [{"arn": queue["arn"]}]
    assert queue["sqs_managed_sse_enabled"] is True
    assert queue["message_retention_seconds"] == 14 * 24 * 3600
    allow, deny = statements(queue["policy"])
    assert allow["Effect"] == "Allow" and as_list(allow["Action"]) == ["sqs:SendMessage"]
    assert allow["Principal"] == {"AWS": one(applied_stack, "module.iam.aws_iam_role.scheduler")["arn"]}
    assert deny["Effect"] == "Deny" and deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_task_definition_is_small_read_only_non_root_and_pinned_by_digest(
    applied_stack: AppliedStack,
) -> None:
    task = one(applied_stack, "module.ecs.aws_ecs_task_definition.this")
    assert task["family"] == "qbo-invoice-processor"
    assert (task["cpu"], task["memory"]) == ("256", "512")
    assert task["requires_compatibilities"] == ["FARGATE"]
    assert task["network_mode"] == "awsvpc"
    assert task["runtime_platform"] == [{"cpu_architecture": "X86_64", "operating_system_family": "LINUX"}]
    assert task["execution_role_arn"] == one(applied_stack, "module.iam.aws_iam_role.execution")["arn"]
    assert task["task_role_arn"] == one(applied_stack, "module.iam.aws_iam_role.task")["arn"]
    assert task["execution_role_arn"] != task["task_role_arn"]
    spec = container(applied_stack)
    repository = one(applied_stack, "module.ecr.aws_ecr_repository.this")["repository_url"]
    assert re.fullmatch(re.escape(repository) + r"@sha256:[0-9a-f]{64}", spec["image"])
    assert spec["name"] == "invoice-processor"
    assert spec["readonlyRootFilesystem"] is True
    assert spec["stopTimeout"] == 120, "Fargate's maximum: the graceful SIGTERM stop must fit inside"
    assert spec["privileged"] is False
    assert spec["user"] == "10001"
    assert [v["name"] for v in task["volume"]] == ["tmp"]
    assert spec["mountPoints"] == [{"containerPath": "/tmp", "readOnly": False, "sourceVolume": "tmp"}]
    assert spec["logConfiguration"] == {
        "logDriver": "awslogs",
        "options": {
            "awslogs-group": "/ecs/qbo-invoice-processor",
            "awslogs-region": REGION,
            "awslogs-stream-prefix": "ecs",
        },
    }
    assert "secrets" not in spec, "the jobs read secrets themselves; nothing is injected"


def test_task_environment_carries_every_setting_the_jobs_read(applied_stack: AppliedStack) -> None:
    environment = {e["name"]: e["value"] for e in container(applied_stack)["environment"]}
    assert set(REQUIRED) <= set(environment), set(REQUIRED) - set(environment)
    assert environment == {
        "AWS_REGION": REGION,
        "QBO_SECRET_NAME": "QBO/10000",
        "MSGRAPH_SECRET_NAME": "MsGraph/10000",
        "CLICKUP_SECRET_NAME": "ClickUp/10000",
        "ROBOCORP_API_SECRET_NAME": "RoboCorp/10000/ClientAPIKeys",
        "DYNAMODB_TABLE_ROBOCORP_CLIENTS": "Robocorp_Client_Org_Workspace_IDs",
        "LEDGER_TABLE": "qbo-invoice-processor-ledger",
        "BOOKKEEPER_EMAIL": "bookkeeper@example.com",
        "SENDER_EMAIL": "robot@example.com",
        "EXCLUDED_CUSTOMERS": "10001 - AICPA",
        "MS_GRAPH_HOSTNAME": "example.sharepoint.com",
        "SHAREPOINT_SITE_PATH": "/sites/Finance",
        "SHAREPOINT_FOLDER": "Invoices",
        "INVOICE_DELIVERY": "qbo",
        "LOG_FORMAT": "json",
        "METRICS_NAMESPACE": NAMESPACE,
        "BUSINESS_TIME_ZONE": "America/Los_Angeles",
    }


def test_jobs_and_schedules_share_one_business_time_zone(applied_stack: AppliedStack) -> None:
    environment = {e["name"]: e["value"] for e in container(applied_stack)["environment"]}
    zones = {
        address: values["schedule_expression_timezone"]
        for address, values in of_type(applied_stack, "aws_scheduler_schedule").items()
    }
    assert len(zones) == 3, zones  # two jobs and the monthly deadline check
    assert set(zones.values()) == {environment["BUSINESS_TIME_ZONE"]}, zones


def test_log_group_and_cluster(applied_stack: AppliedStack) -> None:
    log_group = one(applied_stack, "module.ecs.aws_cloudwatch_log_group.this")
    assert log_group["name"] == "/ecs/qbo-invoice-processor"
    assert log_group["retention_in_days"] == 90
    cluster = one(applied_stack, "module.ecs.aws_ecs_cluster.this")
    assert cluster["arn"] == CLUSTER_ARN
    assert {"name": "containerInsights", "value": "enabled"} in cluster["setting"]


def test_ecr_repository_is_immutable_scanned_encrypted_and_pruned(applied_stack: AppliedStack) -> None:
    repository = one(applied_stack, "module.ecr.aws_ecr_repository.this")
    assert repository["name"] == "qbo-invoice-processor"
    assert repository["image_tag_mutability"] == "IMMUTABLE"
    assert repository["image_scanning_configuration"] == [{"scan_on_push": True}]
    assert repository["encryption_configuration"][0]["encryption_type"] == "KMS"
    rules = json.loads(one(applied_stack, "module.ecr.aws_ecr_lifecycle_policy.this")["policy"])["rules"]
    selections = {r["selection"]["tagStatus"]: r["selection"] for r in rules}
    assert selections["untagged"]["countType"] == "sinceImagePushed"
    assert selections["tagged"]["countType"] == "imageCountMoreThan"
    assert selections["tagged"]["countNumber"] >= 5


def test_ledger_table_matches_what_the_jobs_expect(applied_stack: AppliedStack) -> None:
    table = one(applied_stack, "module.ledger.aws_dynamodb_table.this")
    assert table["name"] == "qbo-invoice-processor-ledger"
    assert table["billing_mode"] == "PAY_PER_REQUEST"
    assert table["hash_key"] == "pk" and not table["range_key"]
    assert table["attribute"] == [{"name": "pk", "type": "S"}]
    assert table["ttl"] == [{"attribute_name": "expires_at", "enabled": True}]
    assert table["point_in_time_recovery"][0]["enabled"] is True
    assert table["server_side_encryption"][0]["enabled"] is True


# --- the failure rule ---------------------------------------------------------------------------
def failure_pattern(stack: AppliedStack) -> dict[str, Any]:
    return json.loads(one(stack, "module.alarms.aws_cloudwatch_event_rule.task_failed")["event_pattern"])


@pytest.mark.parametrize(
    ("description", "event"),
    [
        ("the job exited 1", ecs_event(exit_codes=[1])),
        ("one of two containers was killed", ecs_event(exit_codes=[0, 137])),
        (
            "the image could not be pulled",
            ecs_event(exit_codes=[None], stop_code="TaskFailedToStart"),
        ),
    ],
)
def test_failure_rule_matches_tasks_that_failed(
    applied_stack: AppliedStack, description: str, event: dict
) -> None:
    assert matches(failure_pattern(applied_stack), event), description


@pytest.mark.parametrize(
    ("description", "event"),
    [
        ("a clean run", ecs_event(exit_codes=[0])),
        ("every container exited 0", ecs_event(exit_codes=[0, 0])),
        ("a task still running", ecs_event(exit_codes=[None], last_status="RUNNING")),
        ("a failure in another cluster", ecs_event(exit_codes=[1], cluster_arn=CLUSTER_ARN + "-other")),
    ],
)
def test_failure_rule_ignores_healthy_and_foreign_tasks(
    applied_stack: AppliedStack, description: str, event: dict
) -> None:
    assert not matches(failure_pattern(applied_stack), event), description


def failure_mail(stack: AppliedStack, event: dict[str, Any]) -> str:
    """The text SNS would mail for ``event``: the applied target's input transformer, rendered."""
    transformer = one(stack, "module.alarms.aws_cloudwatch_event_target.task_failed_to_sns")[
        "input_transformer"
    ][0]
    return render(transformer["input_paths"], transformer["input_template"], event)


def test_failure_rule_sends_its_mail_to_the_topic(applied_stack: AppliedStack) -> None:
    target = one(applied_stack, "module.alarms.aws_cloudwatch_event_target.task_failed_to_sns")
    assert target["arn"] == one(applied_stack, "module.alarms.aws_sns_topic.alerts")["arn"]
    transformer = target["input_transformer"][0]
    placeholders = set(re.findall(r"<([A-Za-z0-9_.-]+)>", transformer["input_template"]))
    assert placeholders == set(transformer["input_paths"]), "every <placeholder> must be an input path"


def test_failure_mail_reads_as_plain_lines_for_a_job_that_exited_1(applied_stack: AppliedStack) -> None:
    mail = failure_mail(applied_stack, ecs_event(exit_codes=[1]))
    lines = mail.splitlines()
    assert len(lines) >= 10, mail
    assert "\\n" not in mail and '\\"' not in mail, f"escapes reached the reader:\n{mail}"
    assert not mail.startswith('"') and not mail.rstrip().endswith('"'), "a JSON string, not text"
    assert "<" not in mail and ">" not in mail, "an unfilled placeholder"
    fields = {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in lines if ":  " in line)}
    assert fields["Exit code"].startswith("1 ")
    assert fields["Stop code"] == "EssentialContainerExited"
    assert fields["Stopped reason"] == "Essential container in task exited"
    assert fields["Time (UTC)"] == "2026-11-04T17:03:12Z"
    assert fields["Task"].endswith("task/qbo-invoice-processor-cluster/0123456789abcdef")
    assert "log group /ecs/qbo-invoice-processor, stream ecs/invoice-processor/ followed by" in mail
    assert "Exit code 2:" in mail and "make qbo-auth" in mail


def test_failure_mail_for_a_task_that_never_started_says_so(applied_stack: AppliedStack) -> None:
    event = ecs_event(exit_codes=[None], stop_code="TaskFailedToStart")
    event["detail"]["stoppedReason"] = (
        "CannotPullContainerError: pull image manifest has been retried 5 time(s)"
    )
    mail = failure_mail(applied_stack, event)
    fields = {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in mail.splitlines())}
    assert fields["Exit code"] == "(empty: the container never ran)"
    assert fields["Stop code"] == "TaskFailedToStart"
    assert fields["Stopped reason"].startswith("CannotPullContainerError")
    assert "<" not in mail and "\\n" not in mail


# --- alerts topic and alarms ----------------------------------------------------------------------
def test_alerts_topic_is_encrypted_with_a_key_its_publishers_may_use(applied_stack: AppliedStack) -> None:
    topic = one(applied_stack, "module.alarms.aws_sns_topic.alerts")
    key = one(applied_stack, "module.alarms.aws_kms_key.alerts")
    assert topic["name"] == "qbo-invoice-processor-alerts"
    assert topic["kms_master_key_id"] == key["arn"]
    assert key["enable_key_rotation"] is True
    key_statements = {s["Sid"]: s for s in statements(key["policy"])}
    assert set(key_statements) == {
        "AccountAdministersTheKey",
        "EventBridgeUsesTheKey",
        "CloudWatchAlarmsOfThisAccountUseTheKey",
    }
    for sid in ("EventBridgeUsesTheKey", "CloudWatchAlarmsOfThisAccountUseTheKey"):
        assert sorted(as_list(key_statements[sid]["Action"])) == ["kms:Decrypt", "kms:GenerateDataKey*"]
    # EventBridge sends no aws:Source* context to KMS: any such condition would drop every alert.
    events = key_statements["EventBridgeUsesTheKey"]
    assert events["Principal"] == {"Service": "events.amazonaws.com"}
    assert "Condition" not in events
    assert not [
        s
        for s in key_statements.values()
        if "events.amazonaws.com" in str(s["Principal"]) and "Condition" in s
    ]
    alarms = key_statements["CloudWatchAlarmsOfThisAccountUseTheKey"]
    assert alarms["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
    assert alarms["Condition"] == {"StringEquals": {"aws:SourceAccount": ACCOUNT_ID}}
    # The key's policy as KMS holds it (moto), not only as Terraform sent it.
    held = moto_client(applied_stack.endpoint, "kms").get_key_policy(
        KeyId=key["key_id"], PolicyName="default"
    )
    assert {s["Sid"]: s for s in statements(held["Policy"])} == key_statements
    subscriptions = of_type(applied_stack, "aws_sns_topic_subscription")
    assert [(s["protocol"], s["endpoint"]) for s in subscriptions.values()] == [("email", "ops@example.com")]


def test_topic_policy_lets_only_our_rule_and_our_alarms_publish(applied_stack: AppliedStack) -> None:
    topic = one(applied_stack, "module.alarms.aws_sns_topic.alerts")
    rule = one(applied_stack, "module.alarms.aws_cloudwatch_event_rule.task_failed")
    policy = {
        s["Sid"]: s
        for s in statements(one(applied_stack, "module.alarms.aws_sns_topic_policy.alerts")["policy"])
    }
    assert set(policy) == {"TaskFailureRulePublishes", "OurAlarmsPublish"}
    for statement in policy.values():
        assert as_list(statement["Action"]) == ["sns:Publish"]
        assert statement["Resource"] == topic["arn"]
    assert policy["TaskFailureRulePublishes"]["Principal"] == {"Service": "events.amazonaws.com"}
    assert policy["TaskFailureRulePublishes"]["Condition"] == {"ArnEquals": {"aws:SourceArn": rule["arn"]}}
    alarms = policy["OurAlarmsPublish"]
    assert alarms["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
    assert alarms["Condition"]["StringEquals"] == {"aws:SourceAccount": ACCOUNT_ID}
    assert alarms["Condition"]["ArnLike"] == {
        "aws:SourceArn": f"arn:aws:cloudwatch:{REGION}:{ACCOUNT_ID}:alarm:qbo-invoice-processor-*"
    }


@pytest.mark.parametrize("job", ["create-invoices", "send-invoices"])
def test_dead_letter_queue_alarm_notifies(applied_stack: AppliedStack, job: str) -> None:
    alarm = one(applied_stack, f'module.alarms.aws_cloudwatch_metric_alarm.dead_letter["{job}"]')
    topic = one(applied_stack, "module.alarms.aws_sns_topic.alerts")["arn"]
    queue = one(applied_stack, f'module.schedule["{job}"].aws_sqs_queue.dead_letter')
    assert (alarm["namespace"], alarm["metric_name"]) == ("AWS/SQS", "ApproximateNumberOfMessagesVisible")
    assert alarm["dimensions"] == {"QueueName": queue["name"]}
    assert (alarm["comparison_operator"], alarm["threshold"]) == ("GreaterThanThreshold", 0)
    assert alarm["alarm_actions"] == [topic]


def _within_cloudwatch_limits(alarm: dict[str, Any]) -> bool:
    window = alarm["period"] * alarm["evaluation_periods"]
    return window <= 7 * 86400 and (alarm["period"] >= 3600 or window <= 86400)


def successes_query(alarm: dict[str, Any], job: str) -> None:
    """The alarm counts successful runs: RunCompleted - RunFailed of ``job``, hourly sums."""
    queries = {q["id"]: q for q in alarm["metric_query"]}
    assert set(queries) == {"succeeded", "completed", "failed"}
    assert queries["succeeded"]["expression"] == "FILL(completed, 0) - FILL(failed, 0)"
    assert queries["succeeded"]["return_data"] is True
    for query_id, metric_name in (("completed", "RunCompleted"), ("failed", "RunFailed")):
        (metric,) = queries[query_id]["metric"]
        assert (metric["namespace"], metric["metric_name"]) == (NAMESPACE, metric_name)
        assert metric["dimensions"] == {"Job": job}
        assert (metric["stat"], metric["period"]) == ("Sum", 3600)
    assert alarm["treat_missing_data"] == "breaching"
    assert (alarm["comparison_operator"], alarm["threshold"]) == ("LessThanThreshold", 1)
    assert alarm["datapoints_to_alarm"] == alarm["evaluation_periods"], "every hour must lack a success"
    assert alarm["evaluation_periods"] * 3600 <= 7 * 86400, "CloudWatch evaluates at most 7 days"


def test_daily_job_alarms_after_26_hours_without_a_successful_run(applied_stack: AppliedStack) -> None:
    alarm = one(applied_stack, 'module.alarms.aws_cloudwatch_metric_alarm.no_run["send-invoices"]')
    topic = one(applied_stack, "module.alarms.aws_sns_topic.alerts")["arn"]
    successes_query(alarm, "send-invoices")
    assert alarm["evaluation_periods"] == 26
    assert alarm["alarm_actions"] == [topic] and alarm["actions_enabled"] is True


def _window_checks(deadline_cron: str, lookback_hours: int, first_try_cron: str) -> list[str]:
    """For every month of two years: does the look-back from the deadline reach back before the
    window's first try (in Los Angeles time, DST included), and come 6 h or more after the last try?"""
    deadline_min, deadline_hour, deadline_day = (int(x) for x in deadline_cron[5:].split()[:3])
    first_min, first_hour, days = first_try_cron[5:].split()[:3]
    first_day, last_day = (int(d) for d in days.split("-"))
    zone = ZoneInfo("America/Los_Angeles")
    problems = []
    for year in (2026, 2027):
        for month in range(1, 13):
            deadline = datetime(year, month, deadline_day, deadline_hour, deadline_min, tzinfo=zone)
            start = deadline.astimezone(UTC) - timedelta(hours=lookback_hours)
            first = datetime(year, month, first_day, int(first_hour), int(first_min), tzinfo=zone)
            last = datetime(year, month, last_day, int(first_hour), int(first_min), tzinfo=zone)
            if start > first.astimezone(UTC):
                problems.append(f"{year}-{month:02}: the window starts after the first try")
            if deadline.astimezone(UTC) < last.astimezone(UTC) + timedelta(hours=6):
                problems.append(f"{year}-{month:02}: the deadline comes before the last try could finish")
    return problems


def test_monthly_window_is_checked_after_its_last_try_over_the_whole_window(
    applied_stack: AppliedStack,
) -> None:
    topic = one(applied_stack, "module.alarms.aws_sns_topic.alerts")["arn"]
    no_run = one(applied_stack, 'module.alarms.aws_cloudwatch_metric_alarm.no_run["create-invoices"]')
    check_due = one(applied_stack, 'module.alarms.aws_cloudwatch_metric_alarm.check_due["create-invoices"]')
    composite = one(
        applied_stack, 'module.alarms.aws_cloudwatch_composite_alarm.missed_run["create-invoices"]'
    )
    check = one(applied_stack, 'module.alarms.aws_scheduler_schedule.check["create-invoices"]')
    schedule = one(applied_stack, 'module.schedule["create-invoices"].aws_scheduler_schedule.this')

    # "No success in the window" is normal most of the month: it must not notify on its own.
    successes_query(no_run, "create-invoices")
    assert not no_run["alarm_actions"] and not no_run["ok_actions"]
    assert (check_due["metric_name"], check_due["dimensions"]) == ("RunCheckDue", {"Job": "create-invoices"})
    assert check_due["treat_missing_data"] == "notBreaching" and not check_due["alarm_actions"]

    # The composite notifies when the deadline check fired and no run succeeded in the window.
    assert (
        composite["alarm_rule"] == f'ALARM("{check_due["alarm_name"]}") AND ALARM("{no_run["alarm_name"]}")'
    )
    assert composite["alarm_actions"] == [topic] and composite["actions_enabled"] is True
    # Its check signal ages out after 3 hours; an OK then would claim the missing run arrived.
    assert not composite["ok_actions"] and not composite["insufficient_data_actions"]

    # The deadline follows the 4th-10th window: after its last try, looking back past its first.
    assert check["schedule_expression"] == "cron(0 21 10 * ? *)"
    assert check["schedule_expression_timezone"] == "America/Los_Angeles" and check["state"] == "ENABLED"
    assert (
        _window_checks(
            check["schedule_expression"], no_run["evaluation_periods"], schedule["schedule_expression"]
        )
        == []
    )
    target = check["target"][0]
    assert target["arn"] == "arn:aws:scheduler:::aws-sdk:cloudwatch:putMetricData"
    assert json.loads(target["input"]) == {
        "Namespace": NAMESPACE,
        "MetricData": [
            {
                "MetricName": "RunCheckDue",
                "Dimensions": [{"Name": "Job", "Value": "create-invoices"}],
                "Value": 1,
                "Unit": "Count",
            }
        ],
    }
    assert target["dead_letter_config"] == [
        {"arn": one(applied_stack, 'module.schedule["create-invoices"].aws_sqs_queue.dead_letter')["arn"]}
    ]


def test_window_check_helper_catches_a_window_that_misses_the_first_try() -> None:
    assert _window_checks("cron(0 21 10 * ? *)", 72, "cron(0 9 4-10 * ? *)"), "72 h cannot reach the 4th"
    assert _window_checks("cron(0 9 10 * ? *)", 160, "cron(0 9 4-10 * ? *)"), "deadline at the last try"


def test_pausing_the_schedules_pauses_the_missed_run_checks(applied_stack: AppliedStack) -> None:
    """schedules_enabled=false, planned against the applied stack: nothing would fire or alarm."""
    plan_file = applied_stack.directory / "paused.tfplan"
    applied_stack.run("plan", "-input=false", "-var", "schedules_enabled=false", f"-out={plan_file}")
    planned = json.loads(applied_stack.run("show", "-json", str(plan_file)).stdout)
    after = {
        change["address"]: change["change"]["after"]
        for change in planned["resource_changes"]
        if change["change"]["after"] is not None
    }
    schedules = {a: v["state"] for a, v in after.items() if ".aws_scheduler_schedule." in a}
    assert len(schedules) == 3 and set(schedules.values()) == {"DISABLED"}, schedules
    alarms = {
        a: v["actions_enabled"]
        for a, v in after.items()
        if ".aws_cloudwatch_metric_alarm.no_run" in a
        or ".aws_cloudwatch_metric_alarm.check_due" in a
        or ".aws_cloudwatch_composite_alarm." in a
    }
    assert len(alarms) == 4 and set(alarms.values()) == {False}, alarms


# --- IAM ----------------------------------------------------------------------------------------
def role_policy(stack: AppliedStack, name: str) -> list[dict[str, Any]]:
    return statements(one(stack, f"module.iam.aws_iam_role_policy.{name}")["policy"])


def by_sid(found: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {s["Sid"]: s for s in found}


def test_iam_documents_use_no_wildcards_beyond_what_aws_requires(applied_stack: AppliedStack) -> None:
    documents = {a: v["policy"] for a, v in of_type(applied_stack, "aws_iam_role_policy").items()}
    documents |= {a: v["assume_role_policy"] for a, v in of_type(applied_stack, "aws_iam_role").items()}
    for address, document in documents.items():
        for statement in statements(document):
            actions = as_list(statement.get("Action", []))
            assert not any(a == "*" or a.endswith(":*") for a in actions), (address, statement)
            resources = as_list(statement.get("Resource", []))
            if "*" in resources or any(r.endswith(":*") and ":task-definition/" not in r for r in resources):
                assert actions == ["cloudwatch:PutMetricData"], (address, statement)
                assert statement["Condition"] == {"StringEquals": {"cloudwatch:namespace": NAMESPACE}}
    attachments = of_type(applied_stack, "aws_iam_role_policy_attachment")
    assert [a["policy_arn"] for a in attachments.values()] == [
        "arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"
    ]
    assert [a["role"] for a in attachments.values()] == ["ecsTaskExecutionRole-QBOInvoiceProcessor"]


def test_task_role_reads_exactly_the_four_secrets_and_writes_only_the_qbo_one(
    applied_stack: AppliedStack,
) -> None:
    policy = by_sid(role_policy(applied_stack, "task"))
    arns = applied_stack.secret_arns
    assert sorted(as_list(policy["ReadTheFourSecrets"]["Resource"])) == sorted(arns[n] for n in SECRET_NAMES)
    assert as_list(policy["ReadTheFourSecrets"]["Action"]) == ["secretsmanager:GetSecretValue"]
    assert as_list(policy["RotateTheQboRefreshToken"]["Action"]) == ["secretsmanager:PutSecretValue"]
    assert as_list(policy["RotateTheQboRefreshToken"]["Resource"]) == [arns["QBO/10000"]]
    all_actions = {a for s in policy.values() for a in as_list(s["Action"])}
    assert not {a for a in all_actions if a.startswith("secretsmanager:")} - {
        "secretsmanager:GetSecretValue",
        "secretsmanager:PutSecretValue",
    }, "no UpdateSecret / CreateSecret / DeleteSecret"


def test_task_role_uses_the_registry_read_only_and_the_ledger_read_write(applied_stack: AppliedStack) -> None:
    policy = by_sid(role_policy(applied_stack, "task"))
    registry = f"arn:aws:dynamodb:{REGION}:{ACCOUNT_ID}:table/Robocorp_Client_Org_Workspace_IDs"
    ledger = one(applied_stack, "module.ledger.aws_dynamodb_table.this")["arn"]
    assert as_list(policy["ReadTheClientRegistry"]["Resource"]) == [registry]
    assert sorted(as_list(policy["ReadTheClientRegistry"]["Action"])) == [
        "dynamodb:GetItem",
        "dynamodb:Query",
        "dynamodb:Scan",
    ]
    assert as_list(policy["UseTheLedger"]["Resource"]) == [ledger]
    assert sorted(as_list(policy["UseTheLedger"]["Action"])) == sorted(
        f"dynamodb:{a}" for a in ("GetItem", "PutItem", "UpdateItem", "DeleteItem", "Query", "Scan")
    )


def test_scheduler_may_run_only_our_task_family_in_our_cluster_and_pass_only_its_two_roles(
    applied_stack: AppliedStack,
) -> None:
    policy = by_sid(role_policy(applied_stack, "scheduler"))
    run = policy["RunTheTaskFamilyInTheCluster"]
    assert as_list(run["Action"]) == ["ecs:RunTask"]
    assert as_list(run["Resource"]) == [
        f"arn:aws:ecs:{REGION}:{ACCOUNT_ID}:task-definition/qbo-invoice-processor:*"
    ]
    assert run["Condition"] == {"ArnEquals": {"ecs:cluster": CLUSTER_ARN}}
    passed = policy["PassOnlyTheTwoTaskRoles"]
    roles = sorted(one(applied_stack, f"module.iam.aws_iam_role.{r}")["arn"] for r in ("execution", "task"))
    assert sorted(as_list(passed["Resource"])) == roles
    assert passed["Condition"] == {"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}}
    queues = sorted(v["arn"] for v in of_type(applied_stack, "aws_sqs_queue").values())
    assert sorted(as_list(policy["WriteFailedInvocationsToTheDeadLetterQueues"]["Resource"])) == queues
    trust = statements(one(applied_stack, "module.iam.aws_iam_role.scheduler")["assume_role_policy"])
    assert trust[0]["Principal"] == {"Service": "scheduler.amazonaws.com"}
    assert trust[0]["Condition"] == {"StringEquals": {"aws:SourceAccount": ACCOUNT_ID}}


# --- idempotence and teardown (keep these last: the destroy ends the module's stack) -----------
def test_second_plan_shows_no_changes(applied_stack: AppliedStack) -> None:
    proc = applied_stack.run("plan", "-detailed-exitcode", "-input=false", check=False)
    assert proc.returncode == 0, (
        f"plan after apply wants changes (rc {proc.returncode}):\n{proc.stdout[-6000:]}{proc.stderr[-3000:]}"
    )


def test_destroy_removes_everything(applied_stack: AppliedStack) -> None:
    applied_stack.run("destroy", "-auto-approve", "-input=false")
    applied_stack.destroyed = True
    assert managed_resources(applied_stack.show()) == {}
    # The referenced resources survive: they were never ours.
    import boto3

    secrets = boto3.client(
        "secretsmanager",
        endpoint_url=applied_stack.endpoint,
        region_name=REGION,
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    for name in SECRET_NAMES:
        assert secrets.describe_secret(SecretId=name)["Name"] == name
