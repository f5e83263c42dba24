"""`make adopt` against a moto server holding the seed guide's hand-made setup, made with the
guide's own calls: afterwards the full stack applies where it used to fail (RepositoryAlreadyExists,
ResourceAlreadyExists), the task role keeps no wildcard policy, the old rules and their role are gone,
and a second plan shows no changes.

moto stands in for AWS as far as it goes: it checks names, existence and attachments, not KMS key
usability or whether AWS would let an encryption setting change (that rule comes from the ECR API
reference: encryptionConfiguration is set at CreateRepository and cannot be updated).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from deploy import adopt
from deploy.config import DeployConfig
from deploy.terraform import TerraformStack
from tests.infra.conftest import (
    ACCOUNT_ID,
    REGION,
    ROOT_STACK,
    TEST_VARIABLES,
    Terraform,
    copy_terraform_tree,
    moto_client,
    moto_override,
    seed_existing_resources,
)

pytestmark = [pytest.mark.infra, pytest.mark.xdist_group("terraform-adopt")]

ECS_TRUST = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "ecs-tasks.amazonaws.com"}, "Action": "sts:AssumeRole"}
    ],
}
SEED_TASK_POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Action": ["secretsmanager:GetSecretValue", "secretsmanager:UpdateSecret"],
            "Resource": [f"arn:aws:secretsmanager:{REGION}:{ACCOUNT_ID}:secret:QBO/10000*"],
        }
    ],
}


def make_seed_setup(endpoint: str) -> None:
    """Steps 1-5 of the seed guide, as its CLI commands make them."""
    ecr, iam = moto_client(endpoint, "ecr"), moto_client(endpoint, "iam")
    ecr.create_repository(repositoryName="qbo-invoice-processor")  # default encryption: AES256
    iam.create_role(RoleName=adopt.EXECUTION_ROLE, AssumeRolePolicyDocument=json.dumps(ECS_TRUST))
    iam.attach_role_policy(RoleName=adopt.EXECUTION_ROLE, PolicyArn=adopt.EXECUTION_POLICY_ARN)
    iam.create_role(RoleName=adopt.TASK_ROLE, AssumeRolePolicyDocument=json.dumps(ECS_TRUST))
    policy = iam.create_policy(
        PolicyName="QBOInvoiceProcessorTaskPolicy", PolicyDocument=json.dumps(SEED_TASK_POLICY)
    )
    iam.attach_role_policy(RoleName=adopt.TASK_ROLE, PolicyArn=policy["Policy"]["Arn"])
    moto_client(endpoint, "ecs").create_cluster(clusterName=adopt.CLUSTER)
    logs = moto_client(endpoint, "logs")
    logs.create_log_group(logGroupName=adopt.LOG_GROUP)
    logs.put_retention_policy(logGroupName=adopt.LOG_GROUP, retentionInDays=30)
    events_trust = {
        **ECS_TRUST,
        "Statement": [{**ECS_TRUST["Statement"][0], "Principal": {"Service": "events.amazonaws.com"}}],
    }
    iam.create_role(RoleName=adopt.SEED_EVENTS_ROLE, AssumeRolePolicyDocument=json.dumps(events_trust))
    iam.attach_role_policy(
        RoleName=adopt.SEED_EVENTS_ROLE,
        PolicyArn="arn:aws:iam::aws:policy/service-role/AmazonEC2ContainerServiceEventsRole",
    )
    events = moto_client(endpoint, "events")
    for rule, expression in zip(adopt.SEED_RULES, ("cron(0 12 * * ? *)", "cron(0 17 4 * ? *)"), strict=True):
        events.put_rule(Name=rule, ScheduleExpression=expression)
        events.put_targets(
            Rule=rule,
            Targets=[
                {
                    "Id": "1",
                    "Arn": f"arn:aws:ecs:{REGION}:{ACCOUNT_ID}:cluster/{adopt.CLUSTER}",
                    "RoleArn": f"arn:aws:iam::{ACCOUNT_ID}:role/{adopt.SEED_EVENTS_ROLE}",
                    "EcsParameters": {
                        "TaskDefinitionArn": f"arn:aws:ecs:{REGION}:{ACCOUNT_ID}:task-definition/qbo-invoice-processor:1",
                        "TaskCount": 1,
                        "LaunchType": "FARGATE",
                    },
                }
            ],
        )
    moto_client(endpoint, "cloudwatch").put_metric_alarm(
        AlarmName=adopt.SEED_ALARM,
        MetricName="TasksFailed",
        Namespace="ECS/ContainerInsights",
        Statistic="Sum",
        Period=300,
        Threshold=1,
        ComparisonOperator="GreaterThanOrEqualToThreshold",
        EvaluationPeriods=1,
        Dimensions=[{"Name": "ClusterName", "Value": adopt.CLUSTER}],
    )


@dataclass
class Adopted:
    endpoint: str
    stack: TerraformStack
    config: DeployConfig
    first_exit: int
    first_state: set[str]
    first_output: str
    second_exit: int

    def client(self, service: str) -> Any:
        return moto_client(self.endpoint, service)


@pytest.fixture(scope="module")
def adopted(
    terraform: Terraform, moto_endpoint: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Adopted]:
    workdir = tmp_path_factory.mktemp("tf-adopt")
    directory = copy_terraform_tree(workdir) / ROOT_STACK
    seed_existing_resources(moto_endpoint)
    vpc_id = moto_client(moto_endpoint, "ec2").create_vpc(CidrBlock="10.30.0.0/16")["Vpc"]["VpcId"]
    (directory / "moto_override.tf").write_text(moto_override(moto_endpoint, workdir / "terraform.tfstate"))
    (directory / "moto.auto.tfvars.json").write_text(json.dumps({**TEST_VARIABLES, "vpc_id": vpc_id}))
    make_seed_setup(moto_endpoint)
    config = DeployConfig(repo_root=workdir, aws_region=REGION, terraform_dir=directory)
    stack = TerraformStack(directory)

    def client(service: str) -> Any:
        return moto_client(moto_endpoint, service)

    with pytest.MonkeyPatch.context() as env:  # python-terraform passes os.environ to terraform
        for name in [n for n in os.environ if n.startswith(("AWS_", "TF_"))]:
            env.delenv(name)
        for name, value in terraform.env.items():
            if name.startswith(("AWS_", "TF_", "CHECKPOINT_")):
                env.setenv(name, value)
        shown = io.StringIO()
        with contextlib.redirect_stderr(shown):  # what `make adopt` shows the person
            first = adopt.run(config, client, stack, lambda _question: True)
        first_state = stack.state_addresses()
        # What the person does when told: delete the AES256 repository.
        client("ecr").delete_repository(repositoryName=adopt.REPOSITORY, force=True)
        second = adopt.run(config, client, stack, lambda _question: True)
        yield Adopted(moto_endpoint, stack, config, first, first_state, shown.getvalue(), second)
        stack.destroy({"image_digest": TEST_VARIABLES["image_digest"]})


def test_first_run_imports_what_the_stack_manages_and_names_the_repository_to_delete(
    adopted: Adopted,
) -> None:
    assert adopted.first_exit == 1, "a step is left for a person"
    assert adopted.first_state == {
        "module.iam.aws_iam_role.execution",
        "module.iam.aws_iam_role.task",
        "module.iam.aws_iam_role_policy_attachment.execution",
        "module.ecs.aws_ecs_cluster.this",
        "module.ecs.aws_cloudwatch_log_group.this",
    }
    assert "! delete ECR repository qbo-invoice-processor" in adopted.first_output
    assert "encryption cannot change" in adopted.first_output
    assert "aws ecr delete-repository --repository-name qbo-invoice-processor --force" in adopted.first_output


def test_the_wildcard_policy_is_detached_and_deleted(adopted: Adopted) -> None:
    iam = adopted.client("iam")
    assert iam.list_attached_role_policies(RoleName=adopt.TASK_ROLE)["AttachedPolicies"] == []
    names = [p["PolicyName"] for p in iam.list_policies(Scope="Local")["Policies"]]
    assert "QBOInvoiceProcessorTaskPolicy" not in names


def test_the_old_rules_their_role_and_the_dead_alarm_are_gone(adopted: Adopted) -> None:
    rules = [r["Name"] for r in adopted.client("events").list_rules()["Rules"]]
    assert not set(adopt.SEED_RULES) & set(rules)
    roles = [r["RoleName"] for r in adopted.client("iam").list_roles()["Roles"]]
    assert adopt.SEED_EVENTS_ROLE not in roles
    assert adopted.client("cloudwatch").describe_alarms(AlarmNames=[adopt.SEED_ALARM])["MetricAlarms"] == []


def test_second_run_has_nothing_left_and_imports_nothing_twice(adopted: Adopted) -> None:
    assert adopted.second_exit == 0
    assert adopted.stack.state_addresses() == adopted.first_state


def test_the_full_stack_then_applies_and_a_second_plan_is_clean(adopted: Adopted, tmp_path: Path) -> None:
    variables = {"image_digest": TEST_VARIABLES["image_digest"]}
    plan = adopted.stack.plan(variables, out=tmp_path / "full.tfplan")
    assert plan.changes
    adopted.stack.apply_plan(plan.plan_file)
    iam = adopted.client("iam")
    assert iam.list_attached_role_policies(RoleName=adopt.TASK_ROLE)["AttachedPolicies"] == []
    assert iam.list_role_policies(RoleName=adopt.TASK_ROLE)["PolicyNames"] == [
        "QBOInvoiceProcessorTaskPolicy"
    ]
    (group,) = adopted.client("logs").describe_log_groups(logGroupNamePrefix=adopt.LOG_GROUP)["logGroups"]
    assert group["retentionInDays"] == 90
    repository = adopted.client("ecr").describe_repositories(repositoryNames=[adopt.REPOSITORY])[
        "repositories"
    ][0]
    assert repository["encryptionConfiguration"]["encryptionType"] == "KMS"
    assert adopted.stack.plan(variables).changes is False
