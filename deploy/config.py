"""Deploy settings, validated all at once so one run names every problem.

One way to give each setting:
* the state backend: ``terraform/envs/prod/backend.hcl`` (copied from ``backend.hcl.example``;
  bucket, key, region), passed to ``terraform init -backend-config=backend.hcl``;
* the stack's values: ``terraform/envs/prod/terraform.tfvars`` (Terraform reads it by itself);
  TF_VAR_FILE adds another file after it;
* the image platform: none. It follows the task's ``cpu_architecture`` (read from Terraform), so
  the image and the task definition cannot disagree.
Both files are ignored by git: they name an account's bucket, subnets and mail addresses.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from deploy import DeployConfigError

DEFAULT_REPOSITORY = "qbo-invoice-processor"
TERRAFORM_DIR = Path("terraform/envs/prod")
BACKEND_FILE = "backend.hcl"
# The task definition's runtime_platform.cpu_architecture -> the image platform it can run.
PLATFORMS = {"X86_64": "linux/amd64", "ARM64": "linux/arm64"}
COMMANDS = ("build", "push", "plan", "deploy", "adopt")
# ECR's own rule for repository names.
_REPOSITORY_NAME = re.compile(r"(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*")
_TRUE = {"1", "true", "yes", "y"}


@dataclass(frozen=True)
class DeployConfig:
    repo_root: Path
    aws_region: str = ""
    ecr_repository: str = DEFAULT_REPOSITORY
    terraform_dir: Path = TERRAFORM_DIR
    var_file: Path | None = None
    # The S3 backend settings file given to `terraform init -backend-config=<file>`.
    backend_file: Path | None = None
    auto_approve: bool = False


def platform_for(cpu_architecture: str) -> str:
    """The image platform a task of ``cpu_architecture`` runs (X86_64 -> linux/amd64)."""
    try:
        return PLATFORMS[cpu_architecture]
    except KeyError:
        raise DeployConfigError(
            [f"cpu_architecture {cpu_architecture!r} is not one of {', '.join(PLATFORMS)}"]
        ) from None


def load_config(env: Mapping[str, str], repo_root: Path, command: str) -> DeployConfig:
    """Read what ``command`` needs; raise DeployConfigError listing every missing or bad value.

    build needs nothing from AWS; push needs the region; plan/deploy/adopt also need the state
    backend file, and TF_VAR_FILE when set.
    """
    if command not in COMMANDS:
        raise ValueError(f"unknown command {command!r}")
    problems: list[str] = []
    repository = env.get("ECR_REPOSITORY", "").strip() or DEFAULT_REPOSITORY
    if not _REPOSITORY_NAME.fullmatch(repository):
        problems.append(f"ECR_REPOSITORY {repository!r} is not a valid ECR repository name")
    region = (env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "").strip()
    if command != "build" and not region:
        problems.append("AWS_REGION is not set (the region of the ECR repository and the stack)")

    var_file: Path | None = None
    backend_file: Path | None = None
    terraform_dir = repo_root / TERRAFORM_DIR
    if command in ("plan", "deploy", "adopt"):
        backend_file = terraform_dir / BACKEND_FILE
        if not backend_file.is_file():
            problems.append(
                f"{backend_file} is missing: copy {BACKEND_FILE}.example next to it and fill in the "
                "state bucket, key and region"
            )
    if env.get("TF_VAR_FILE", "").strip():
        var_file = Path(env["TF_VAR_FILE"].strip())
        if not var_file.is_absolute():
            var_file = repo_root / var_file
        if not var_file.is_file():
            problems.append(f"TF_VAR_FILE {var_file} does not exist")
    if not any(terraform_dir.glob("*.tf")):
        problems.append(f"{terraform_dir} holds no Terraform configuration")
    if shutil.which("terraform") is None:
        problems.append("terraform is not on PATH")

    if problems:
        raise DeployConfigError(problems)
    return DeployConfig(
        repo_root=repo_root,
        aws_region=region,
        ecr_repository=repository,
        terraform_dir=terraform_dir,
        var_file=var_file,
        backend_file=backend_file,
        auto_approve=env.get("DEPLOY_AUTO_APPROVE", "").strip().lower() in _TRUE,
    )
