"""Adopt the seed guide's hand-made setup into the Terraform state (``make adopt``).

The seed guide (DESIGN's seed) created by hand: an ECR repository (AES256), the execution and task
roles (the task role with the customer managed policy QBOInvoiceProcessorTaskPolicy: secrets by
wildcard, UpdateSecret), a cluster, a log group, two EventBridge rules with their role, and an
alarm on a metric that does not exist. A first `make deploy` on top of that fails on
RepositoryAlreadyExists / ResourceAlreadyExists, and an imported task role would keep the old
policy. Adoption, in three kinds of step:

* import into the state what the stack manages under the same name (roles, the execution role's
  managed policy attachment, cluster, log group, and the repository when its encryption matches);
* remove what the stack replaces and would otherwise keep running or granting: the old policy on
  the task role (detached, then deleted when nothing else uses it), the two EventBridge rules
  (they would run the jobs a second time), their role, and the seed's alarm;
* name what only a person may do: an ECR repository encrypted with AES256 cannot be changed to KMS
  (encryption is fixed at creation), so it must be deleted before the stack can create its own.

Discovery only reads. Nothing is imported or removed before the caller approves the list.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError
from loguru import logger

from deploy import pipeline
from deploy.config import DeployConfig
from deploy.terraform import TerraformStack

# The seed guide's names (and this stack's, where the stack keeps them).
EXECUTION_ROLE = "ecsTaskExecutionRole-QBOInvoiceProcessor"
TASK_ROLE = "ecsTaskRole-QBOInvoiceProcessor"
EXECUTION_POLICY_ARN = "arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"
CLUSTER = "qbo-invoice-processor-cluster"
LOG_GROUP = "/ecs/qbo-invoice-processor"
REPOSITORY = "qbo-invoice-processor"
SEED_RULES = ("qbo-send-invoices-daily", "qbo-create-invoices-monthly")
SEED_EVENTS_ROLE = "EventBridgeECSRole-QBOInvoiceProcessor"
SEED_ALARM = "qbo-invoice-processor-task-failures"

Client = Callable[[str], Any]  # service name -> boto3 client


@dataclass(frozen=True)
class Import:
    address: str
    resource_id: str
    what: str


@dataclass(frozen=True)
class Removal:
    what: str
    why: str
    run: Callable[[], None] = field(compare=False, repr=False)


@dataclass
class Adoption:
    """What adopting the seed's setup takes; empty when there is nothing (left) to adopt."""

    imports: list[Import] = field(default_factory=list)
    removals: list[Removal] = field(default_factory=list)
    by_hand: list[str] = field(default_factory=list)

    @property
    def automatic(self) -> bool:
        return bool(self.imports or self.removals)

    def describe(self) -> str:
        lines = []
        if self.imports:
            lines.append("Import into the Terraform state (no change in AWS):")
            lines += [f"  + {i.what}  ->  {i.address}" for i in self.imports]
        if self.removals:
            lines.append("Remove from AWS (the stack replaces them):")
            lines += [f"  - {r.what}: {r.why}" for r in self.removals]
        if self.by_hand:
            lines.append("Only you can do (then run `make adopt` again):")
            lines += [f"  ! {step}" for step in self.by_hand]
        return "\n".join(lines) or "Nothing to adopt: no hand-made resource of the seed guide is left."


def _exists(call: Callable[[], Any], *missing_codes: str) -> Any:
    """The call's answer, or None when AWS says the thing does not exist."""
    try:
        return call()
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in missing_codes:
            return None
        raise


def discover(client: Client, in_state: set[str], region: str) -> Adoption:
    """Read AWS and the state; list the imports, removals and manual steps adoption takes."""
    adoption = Adoption()
    iam, ecs, logs, ecr = client("iam"), client("ecs"), client("logs"), client("ecr")

    def want(address: str, resource_id: str, what: str) -> None:
        if address not in in_state:
            adoption.imports.append(Import(address, resource_id, what))

    for role, address in (
        (EXECUTION_ROLE, "module.iam.aws_iam_role.execution"),
        (TASK_ROLE, "module.iam.aws_iam_role.task"),
    ):
        if _exists(lambda role=role: iam.get_role(RoleName=role), "NoSuchEntity") is None:
            continue
        want(address, role, f"IAM role {role}")
        attached = iam.list_attached_role_policies(RoleName=role)["AttachedPolicies"]
        for policy in attached:
            if role == EXECUTION_ROLE and policy["PolicyArn"] == EXECUTION_POLICY_ARN:
                want(
                    "module.iam.aws_iam_role_policy_attachment.execution",
                    f"{role}/{EXECUTION_POLICY_ARN}",
                    f"attachment of AmazonECSTaskExecutionRolePolicy to {role}",
                )
                continue
            adoption.removals.append(_detach(iam, role, policy["PolicyArn"], policy["PolicyName"]))

    clusters = ecs.describe_clusters(clusters=[CLUSTER])["clusters"]
    if any(c["status"] == "ACTIVE" for c in clusters):
        want("module.ecs.aws_ecs_cluster.this", CLUSTER, f"ECS cluster {CLUSTER}")

    groups = logs.describe_log_groups(logGroupNamePrefix=LOG_GROUP)["logGroups"]
    if any(g["logGroupName"] == LOG_GROUP for g in groups):
        want("module.ecs.aws_cloudwatch_log_group.this", LOG_GROUP, f"log group {LOG_GROUP}")

    found = _exists(
        lambda: ecr.describe_repositories(repositoryNames=[REPOSITORY]), "RepositoryNotFoundException"
    )
    if found and "module.ecr.aws_ecr_repository.this" not in in_state:
        encryption = found["repositories"][0].get("encryptionConfiguration", {})
        if encryption.get("encryptionType") == "KMS" and not encryption.get("kmsKey"):
            want("module.ecr.aws_ecr_repository.this", REPOSITORY, f"ECR repository {REPOSITORY}")
        else:
            adoption.by_hand.append(
                f"delete ECR repository {REPOSITORY}: it is encrypted with "
                f"{encryption.get('encryptionType', 'AES256')}, the stack uses KMS, and a repository's "
                "encryption cannot change after it is created. Its images (the seed's :latest) are not "
                "used by the stack; `make deploy` builds and pushes a new one. Command: "
                f"aws ecr delete-repository --repository-name {REPOSITORY} --force --region {region}"
            )

    _seed_schedule_removals(client, adoption)
    return adoption


def _detach(iam: Any, role: str, policy_arn: str, policy_name: str) -> Removal:
    def run() -> None:
        iam.detach_role_policy(RoleName=role, PolicyArn=policy_arn)
        if ":aws:policy/" in policy_arn:
            return  # AWS managed: never ours to delete
        users_groups_roles = iam.list_entities_for_policy(PolicyArn=policy_arn)
        if any(users_groups_roles.get(k) for k in ("PolicyGroups", "PolicyUsers", "PolicyRoles")):
            logger.info(
                "{policy} is still attached elsewhere: detached from {role} only",
                policy=policy_name,
                role=role,
            )
            return
        for version in iam.list_policy_versions(PolicyArn=policy_arn)["Versions"]:
            if not version["IsDefaultVersion"]:
                iam.delete_policy_version(PolicyArn=policy_arn, VersionId=version["VersionId"])
        iam.delete_policy(PolicyArn=policy_arn)

    return Removal(
        what=f"managed policy {policy_name} on role {role}",
        why="the stack gives the role its own least-privilege policy; this one (wildcard secrets, "
        "UpdateSecret) would stay attached. Detached, and deleted when nothing else uses it",
        run=run,
    )


def _seed_schedule_removals(client: Client, adoption: Adoption) -> None:
    events, iam, cloudwatch = client("events"), client("iam"), client("cloudwatch")
    for rule in SEED_RULES:
        if _exists(lambda rule=rule: events.describe_rule(Name=rule), "ResourceNotFoundException") is None:
            continue

        def remove_rule(rule: str = rule) -> None:
            targets = [t["Id"] for t in events.list_targets_by_rule(Rule=rule)["Targets"]]
            if targets:
                events.remove_targets(Rule=rule, Ids=targets)
            events.delete_rule(Name=rule)

        adoption.removals.append(
            Removal(
                what=f"EventBridge rule {rule} and its targets",
                why="the stack's EventBridge Scheduler schedules run the jobs; this rule would run them again",
                run=remove_rule,
            )
        )
    if _exists(lambda: iam.get_role(RoleName=SEED_EVENTS_ROLE), "NoSuchEntity") is not None:

        def remove_role() -> None:
            for policy in iam.list_attached_role_policies(RoleName=SEED_EVENTS_ROLE)["AttachedPolicies"]:
                iam.detach_role_policy(RoleName=SEED_EVENTS_ROLE, PolicyArn=policy["PolicyArn"])
            for name in iam.list_role_policies(RoleName=SEED_EVENTS_ROLE)["PolicyNames"]:
                iam.delete_role_policy(RoleName=SEED_EVENTS_ROLE, PolicyName=name)
            iam.delete_role(RoleName=SEED_EVENTS_ROLE)

        adoption.removals.append(
            Removal(
                what=f"IAM role {SEED_EVENTS_ROLE}",
                why="it let the old EventBridge rules run tasks; the schedules use the stack's scheduler role",
                run=remove_role,
            )
        )
    if cloudwatch.describe_alarms(AlarmNames=[SEED_ALARM])["MetricAlarms"]:
        adoption.removals.append(
            Removal(
                what=f"CloudWatch alarm {SEED_ALARM}",
                why="it watches ECS/ContainerInsights TasksFailed, which ECS does not publish, and notifies "
                "nobody; the stack's failure rule and missed-run alarms replace it",
                run=lambda: cloudwatch.delete_alarms(AlarmNames=[SEED_ALARM]),
            )
        )


def adopt(adoption: Adoption, stack: TerraformStack, variables: Mapping[str, Any]) -> None:
    """Carry out the approved adoption: every import first (state only), then the removals."""
    for item in adoption.imports:
        logger.info("importing {what} as {address}", what=item.what, address=item.address)
        stack.import_resource(item.address, item.resource_id, variables)
    for removal in adoption.removals:
        logger.info("removing {what}", what=removal.what)
        removal.run()


def run(config: DeployConfig, client: Client, stack: TerraformStack, ask: Callable[[str], bool]) -> int:
    """``make adopt``: show what adoption takes, ask, do it. 0 when adopted (or nothing to adopt);
    1 when not approved or while steps are left that only a person can do (they are listed)."""
    pipeline.init(config, stack)
    adoption = discover(client, stack.state_addresses(), config.aws_region)
    print(adoption.describe(), file=sys.stderr)
    if adoption.automatic:
        if not ask("Import and remove the above?"):
            logger.error("not approved; nothing imported or removed")
            return 1
        adopt(adoption, stack, {"image_digest": pipeline.PLACEHOLDER_DIGEST})
    if adoption.by_hand:
        logger.error("adoption is not finished: do the steps marked ! above, then run `make adopt` again")
        return 1
    logger.info(
        "adopted: run `make deploy` now (the old EventBridge rules are gone; the schedules come with it)"
    )
    return 0
