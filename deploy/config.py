"""Deploy settings from the environment, validated all at once so one run names every problem."""

from __future__ import annotations

import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from deploy import DeployConfigError

DEFAULT_REPOSITORY = "qbo-invoice-processor"
TERRAFORM_DIR = Path("terraform/envs/prod")
PLATFORMS = ("linux/amd64", "linux/arm64")  # must match the task definition's cpu architecture
COMMANDS = ("build", "push", "plan", "deploy")
# ECR's own rule for repository names.
_REPOSITORY_NAME = re.compile(r"(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*")
_TRUE = {"1", "true", "yes", "y"}


@dataclass(frozen=True)
class DeployConfig:
    repo_root: Path
    aws_region: str = ""
    ecr_repository: str = DEFAULT_REPOSITORY
    platform: str = "linux/amd64"
    terraform_dir: Path = TERRAFORM_DIR
    var_file: Path | None = None
    # S3 backend settings passed to `terraform init -backend-config=...` (bucket, key, region).
    backend: dict[str, str] = field(default_factory=dict)
    auto_approve: bool = False


def load_config(env: Mapping[str, str], repo_root: Path, command: str) -> DeployConfig:
    """Read what ``command`` needs; raise DeployConfigError listing every missing or bad value.

    build needs nothing from AWS; push needs the region; plan/deploy also need the Terraform
    state backend, and TF_VAR_FILE (the prod tfvars: emails, subnets, secret names) when set.
    """
    if command not in COMMANDS:
        raise ValueError(f"unknown command {command!r}")
    problems: list[str] = []
    repository = env.get("ECR_REPOSITORY", "").strip() or DEFAULT_REPOSITORY
    if not _REPOSITORY_NAME.fullmatch(repository):
        problems.append(f"ECR_REPOSITORY {repository!r} is not a valid ECR repository name")
    platform = env.get("IMAGE_PLATFORM", "").strip() or "linux/amd64"
    if platform not in PLATFORMS:
        problems.append(f"IMAGE_PLATFORM must be one of {', '.join(PLATFORMS)} (got {platform!r})")
    region = (env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "").strip()
    if command != "build" and not region:
        problems.append("AWS_REGION is not set (the region of the ECR repository and the stack)")

    backend: dict[str, str] = {}
    var_file: Path | None = None
    terraform_dir = repo_root / TERRAFORM_DIR
    if command in ("plan", "deploy"):
        for name, key in (("TF_BACKEND_BUCKET", "bucket"), ("TF_BACKEND_KEY", "key")):
            value = env.get(name, "").strip()
            if value:
                backend[key] = value
            else:
                problems.append(f"{name} is not set (Terraform state backend {key})")
        backend_region = env.get("TF_BACKEND_REGION", "").strip() or region
        if backend_region:  # else AWS_REGION is missing, which is reported above
            backend["region"] = backend_region
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
        platform=platform,
        terraform_dir=terraform_dir,
        var_file=var_file,
        backend=backend,
        auto_approve=env.get("DEPLOY_AUTO_APPROVE", "").strip().lower() in _TRUE,
    )
