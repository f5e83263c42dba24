"""Fixtures for the Terraform checks: the terraform binary with the offline provider mirror, a
moto server standing in for AWS, and the root stack applied to it.

Prod config stays free of test branches: the stack is copied to a temporary directory and a
``moto_override.tf`` is added there. Terraform merges override files into the configuration,
so the copy gets a local backend and provider endpoints pointing at moto while every resource,
module and variable is exactly what production applies.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
TERRAFORM_DIR = REPO / "terraform"
ROOT_STACK = "envs/prod"
MODULES = ("alarms", "ecr", "ecs", "iam", "ledger", "scheduled_job")
PROVIDER = Path("registry.terraform.io/hashicorp/aws/5.100.0")

ACCOUNT_ID = "123456789012"  # moto's default account
REGION = "us-west-2"
SECRET_NAMES = ("QBO/10000", "MsGraph/10000", "ClickUp/10000", "RoboCorp/10000/ClientAPIKeys")
REGISTRY_TABLE = "Robocorp_Client_Org_Workspace_IDs"
IMAGE_DIGEST = "sha256:" + "0123456789abcdef" * 4

# Services the stack touches; every one is pointed at moto in the override.
ENDPOINT_SERVICES = (
    "cloudwatch",
    "dynamodb",
    "ec2",
    "ecr",
    "ecs",
    "events",
    "iam",
    "kms",
    "logs",
    "scheduler",
    "secretsmanager",
    "sns",
    "sqs",
    "sts",
)

TEST_VARIABLES: dict[str, Any] = {
    "allowed_account_ids": [ACCOUNT_ID],
    "bookkeeper_email": "bookkeeper@example.com",
    "sender_email": "robot@example.com",
    "excluded_customers": ["10001 - AICPA"],
    "ms_graph_hostname": "example.sharepoint.com",
    "sharepoint_site_path": "/sites/Finance",
    "alert_emails": ["ops@example.com"],
    "subnet_ids": ["subnet-0123456789abcdef0"],
    "security_group_ids": ["sg-0123456789abcdef0"],
    "assign_public_ip": True,
    "image_digest": IMAGE_DIGEST,
    # The test environment must be able to destroy what it applied.
    "ledger_deletion_protection": False,
}


@dataclass
class Terraform:
    """The terraform binary with a CLI config that installs providers from the offline mirror."""

    binary: str
    env: dict[str, str]

    def run(
        self, cwd: Path, *args: str, check: bool = True, timeout: float = 600
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [self.binary, *args, "-no-color"] if args[0] != "fmt" else [self.binary, *args],
            cwd=cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"terraform {' '.join(args)} in {cwd} exited {proc.returncode}\n"
                f"--- stdout ---\n{proc.stdout[-6000:]}\n--- stderr ---\n{proc.stderr[-6000:]}"
            )
        return proc


def _find_mirror() -> Path | None:
    candidates = [Path(os.environ.get("TF_PLUGIN_MIRROR", "/opt/tf-plugins"))]
    candidates += sorted(Path("/").glob("*/tf-plugins")) + [Path("/tf-plugins")]
    for candidate in candidates:
        if (candidate / PROVIDER).is_dir():
            return candidate
    return None


@pytest.fixture(scope="session")
def terraform(tmp_path_factory: pytest.TempPathFactory) -> Terraform:
    binary = shutil.which("terraform")
    if binary is None:
        pytest.skip("terraform is not on PATH: the Terraform checks need it (Terraform >= 1.10)")
    mirror = _find_mirror()
    if mirror is None:
        pytest.skip(
            f"no provider mirror holding {PROVIDER} (looked at $TF_PLUGIN_MIRROR, /opt/tf-plugins "
            "and /*/tf-plugins): the Terraform checks run offline from it"
        )
    config = tmp_path_factory.mktemp("tf-cli") / "terraform.rc"
    config.write_text(
        "provider_installation {\n"
        "  filesystem_mirror {\n"
        f'    path    = "{mirror}"\n'
        '    include = ["registry.terraform.io/hashicorp/*"]\n'
        "  }\n"
        "  direct {\n"
        '    exclude = ["registry.terraform.io/hashicorp/*"]\n'
        "  }\n"
        "}\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "TF_"))}
    env.update(
        TF_CLI_CONFIG_FILE=str(config),
        TF_IN_AUTOMATION="1",
        TF_INPUT="0",
        CHECKPOINT_DISABLE="1",
        # Never real credentials, whatever the developer's shell holds.
        AWS_ACCESS_KEY_ID="test",
        AWS_SECRET_ACCESS_KEY="test",
        AWS_EC2_METADATA_DISABLED="true",
    )
    return Terraform(binary, env)


def copy_terraform_tree(destination: Path) -> Path:
    """A clean copy of terraform/ (no .terraform dirs, state or local tfvars)."""
    target = destination / "terraform"
    shutil.copytree(
        TERRAFORM_DIR,
        target,
        ignore=shutil.ignore_patterns(
            ".terraform", "*.tfstate", "*.tfstate.*", "terraform.tfvars", "backend.hcl"
        ),
    )
    return target


def validate_all(terraform: Terraform, workdir: Path) -> dict[str, str]:
    """`init -backend=false` + `validate` of every module and the root; dir -> error text or ''."""
    tree = copy_terraform_tree(workdir)
    dirs = [ROOT_STACK, *(f"modules/{m}" for m in MODULES)]

    def validate(rel: str) -> str:
        cwd = tree / rel
        for args in (("init", "-backend=false", "-input=false"), ("validate",)):
            proc = terraform.run(cwd, *args, check=False, timeout=300)
            if proc.returncode != 0:
                return f"terraform {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        return ""

    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(zip(dirs, pool.map(validate, dirs), strict=True))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def moto_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A moto server in its own process on 127.0.0.1 (see moto_launcher for why and what it adds)."""
    port = _free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    with log.open("w") as out:
        server = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("moto_launcher.py")), str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={k: v for k, v in os.environ.items() if not k.startswith("AWS_")},
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"moto server did not start:\n{log.read_text()[-3000:]}") from None
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def moto_client(endpoint: str, service: str) -> Any:
    """A boto3 client of ``service`` on the moto server, never on real AWS."""
    import boto3

    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )


def seed_existing_resources(endpoint: str) -> dict[str, str]:
    """What the stack references but never creates: the four secrets and the client registry."""
    secrets = moto_client(endpoint, "secretsmanager")
    arns = {name: secrets.create_secret(Name=name, SecretString="{}")["ARN"] for name in SECRET_NAMES}
    moto_client(endpoint, "dynamodb").create_table(
        TableName=REGISTRY_TABLE,
        KeySchema=[{"AttributeName": "client_id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "client_id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    return arns


def moto_override(endpoint: str, state_path: Path) -> str:
    endpoints = "\n".join(f'    {service:<14} = "{endpoint}"' for service in ENDPOINT_SERVICES)
    return (
        "# Written by tests/infra: local state and every AWS endpoint on a moto server.\n"
        "terraform {\n"
        '  backend "local" {\n'
        f'    path = "{state_path}"\n'
        "  }\n"
        "}\n\n"
        'provider "aws" {\n'
        '  access_key                  = "test"\n'
        '  secret_key                  = "test"\n'
        "  skip_credentials_validation = true\n"
        "  skip_metadata_api_check     = true\n\n"
        "  endpoints {\n"
        f"{endpoints}\n"
        "  }\n"
        "}\n"
    )


@dataclass
class AppliedStack:
    terraform: Terraform
    directory: Path
    endpoint: str
    secret_arns: dict[str, str]
    state: dict[str, Any]
    vpc_id: str = ""
    destroyed: bool = False
    resources: dict[str, dict[str, Any]] = field(default_factory=dict)

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.terraform.run(self.directory, *args, check=check)

    def show(self) -> dict[str, Any]:
        return json.loads(self.run("show", "-json").stdout)


def managed_resources(state: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """address -> {"type": ..., "values": ...} for every managed resource in a `show -json` state."""
    found: dict[str, dict[str, Any]] = {}

    def walk(module: dict[str, Any]) -> None:
        for resource in module.get("resources", []):
            if resource["mode"] == "managed":
                found[resource["address"]] = {"type": resource["type"], "values": resource["values"]}
        for child in module.get("child_modules", []):
            walk(child)

    walk(state.get("values", {}).get("root_module", {}))
    return found


def apply_stack(terraform: Terraform, endpoint: str, workdir: Path) -> AppliedStack:
    """Seed moto with what the stack references, then init + apply + show a copy of the root stack."""
    stack = copy_terraform_tree(workdir) / ROOT_STACK
    secret_arns = seed_existing_resources(endpoint)
    # The VPC the stack makes the task's security group in (vpc_id), next to a group of ours.
    vpc_id = moto_client(endpoint, "ec2").create_vpc(CidrBlock="10.20.0.0/16")["Vpc"]["VpcId"]
    (stack / "moto_override.tf").write_text(moto_override(endpoint, workdir / "terraform.tfstate"))
    (stack / "moto.auto.tfvars.json").write_text(json.dumps({**TEST_VARIABLES, "vpc_id": vpc_id}, indent=2))
    terraform.run(stack, "init", "-input=false")
    terraform.run(stack, "apply", "-auto-approve", "-input=false")
    applied = AppliedStack(terraform, stack, endpoint, secret_arns, state={}, vpc_id=vpc_id)
    applied.state = applied.show()
    applied.resources = managed_resources(applied.state)
    return applied


@dataclass
class TerraformWork:
    """Validation and the apply to moto, started together: the apply mostly waits on AWS-style
    polling (queue attributes, cluster status) while validation is CPU-bound, so they overlap."""

    validations: Future[dict[str, str]]
    apply: Future[AppliedStack]


@pytest.fixture(scope="module")
def terraform_work(
    terraform: Terraform, moto_endpoint: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TerraformWork]:
    pool = ThreadPoolExecutor(max_workers=2)
    work = TerraformWork(
        validations=pool.submit(validate_all, terraform, tmp_path_factory.mktemp("tf-validate")),
        apply=pool.submit(apply_stack, terraform, moto_endpoint, tmp_path_factory.mktemp("tf-apply")),
    )
    try:
        yield work
    finally:
        pool.shutdown(wait=True)
        applied = work.apply.result() if work.apply.exception() is None else None
        if applied is not None and not applied.destroyed:
            applied.run("destroy", "-auto-approve", "-input=false", check=False)


@pytest.fixture(scope="module")
def validations(terraform_work: TerraformWork) -> dict[str, str]:
    return terraform_work.validations.result()


@pytest.fixture(scope="module")
def applied_stack(terraform_work: TerraformWork) -> AppliedStack:
    """The root stack applied to moto; destroyed when the module ends unless a test already did."""
    return terraform_work.apply.result()
