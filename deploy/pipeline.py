"""The deploy steps in order: build, push, plan, apply, wired to a runner, an ECR client and a stack.

Nothing here creates its own clients: the CLI (``deploy.__main__``) passes real ones, the tests pass
a recording runner, a moto-backed ECR client and a small Terraform stack.

The root stack (terraform/envs/prod) takes the image as two variables, ``image_digest`` and
``image_repository_url``, and runs ``<image_repository_url>@<image_digest>``.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loguru import logger

from deploy import DeployError
from deploy.config import DeployConfig, platform_for
from deploy.image import (
    LOCK_FILE_NAME,
    CommandRunner,
    PushedImage,
    build_image,
    git_commit,
    push_image,
    pushed_digest,
    repository_uri,
    require_docker,
)
from deploy.terraform import PlanResult, TerraformStack

# The root stack's module that owns the ECR repository: applied alone on the very first deploy,
# because the repository must exist before an image can be pushed to it.
BOOTSTRAP_TARGET = "module.ecr"
# Well-formed but naming no image; only for that targeted plan (which creates nothing that reads
# it: input variables are not kept in the state) and for reading variables before any image exists.
PLACEHOLDER_DIGEST = "sha256:" + "0" * 64


@dataclass(frozen=True)
class DeployResult:
    image: str  # <repository uri>@sha256:...
    changed: bool
    plan: str


def image_variables(image: PushedImage) -> dict[str, str]:
    """The Terraform variables that pin the task definition to ``image``."""
    return {"image_digest": image.digest, "image_repository_url": image.repository_uri}


def image_platform(config: DeployConfig, stack: TerraformStack) -> str:
    """The platform to build for: the one the task definition's cpu_architecture runs."""
    architecture = stack.variable("cpu_architecture", {"image_digest": PLACEHOLDER_DIGEST})
    platform = platform_for(architecture)
    logger.info("the task runs {arch}: building for {platform}", arch=architecture, platform=platform)
    return platform


def build(
    config: DeployConfig, runner: CommandRunner, stack: TerraformStack, *, allow_dirty: bool = False
) -> str:
    commit = git_commit(runner, config.repo_root, allow_dirty=allow_dirty)
    require_docker(runner)
    platform = image_platform(config, stack)
    return build_image(runner, config.repo_root, config.ecr_repository, commit, platform)


def push(config: DeployConfig, runner: CommandRunner, ecr: Any, *, allow_dirty: bool = False) -> PushedImage:
    """Push the image `make build` made for the current commit."""
    commit = git_commit(runner, config.repo_root, allow_dirty=allow_dirty)
    require_docker(runner)
    return push_image(runner, ecr, config.ecr_repository, f"{config.ecr_repository}:{commit}", commit)


def current_image(
    config: DeployConfig, runner: CommandRunner, ecr: Any, *, allow_dirty: bool = False
) -> PushedImage:
    """The pushed image of the current commit (what a deploy of this commit would run)."""
    commit = git_commit(runner, config.repo_root, allow_dirty=allow_dirty)
    uri = repository_uri(ecr, config.ecr_repository)
    digest = pushed_digest(ecr, config.ecr_repository, commit) if uri else None
    if uri is None or digest is None:
        raise DeployError(
            f"no image for commit {commit[:12]} in ECR repository {config.ecr_repository!r}: "
            "run `make push` first (or `make deploy`, which builds, pushes and applies)"
        )
    return PushedImage(uri, digest)


def init(config: DeployConfig, stack: TerraformStack) -> None:
    """``terraform init`` with the backend file; says so when init wrote new lock-file hashes.

    The committed lock file carries the linux_amd64 hash of the provider; the first real init on
    another platform (or from the registry, which adds the zh: hashes) extends it. That is right and
    must be committed, and it must not make the next deploy refuse as "uncommitted changes"
    (git_commit ignores the lock file for that reason).
    """
    lock = Path(stack.working_dir) / LOCK_FILE_NAME
    before = lock.read_text() if lock.is_file() else None
    stack.init(config.backend_file)
    after = lock.read_text() if lock.is_file() else None
    if after is not None and after != before:
        logger.warning(
            "terraform init updated {lock} (new provider hashes for this platform): commit it, "
            "e.g. git add {lock} && git commit -m 'Add provider hashes to the lock file'",
            lock=lock,
        )


def plan(
    config: DeployConfig, runner: CommandRunner, ecr: Any, stack: TerraformStack, *, allow_dirty: bool = False
) -> PlanResult:
    image = current_image(config, runner, ecr, allow_dirty=allow_dirty)
    init(config, stack)
    return stack.plan(image_variables(image))


def deploy(
    config: DeployConfig,
    runner: CommandRunner,
    ecr: Any,
    stack: TerraformStack,
    approve: Callable[[PlanResult], bool],
    *,
    allow_dirty: bool = False,
) -> DeployResult:
    """Build, push, plan to a file, and apply exactly that plan once ``approve`` says yes.

    Any failed step raises and stops everything after it: no push without a build, no apply
    without a digest that ECR itself reported for the pushed tag, no apply of anything but the
    plan that was shown (a saved plan; Terraform refuses it if the state moved since).
    """
    commit = git_commit(runner, config.repo_root, allow_dirty=allow_dirty)
    require_docker(runner)
    platform = image_platform(config, stack)
    local = build_image(runner, config.repo_root, config.ecr_repository, commit, platform)
    init(config, stack)
    with tempfile.TemporaryDirectory(prefix="deploy-plan-") as tmp:
        if repository_uri(ecr, config.ecr_repository) is None:
            _bootstrap_repository(config, ecr, stack, approve, Path(tmp) / "bootstrap.tfplan")
        image = push_image(runner, ecr, config.ecr_repository, local, commit)
        result = stack.plan(image_variables(image), out=Path(tmp) / "deploy.tfplan")
        if not result.changes:
            logger.info("nothing to change: the stack already runs {image}", image=image.ref)
            return DeployResult(image=image.ref, changed=False, plan=result.output)
        _apply_if_approved(stack, result, approve, f"image {image.ref} stays pushed")
    return DeployResult(image=image.ref, changed=True, plan=result.output)


def _apply_if_approved(
    stack: TerraformStack, result: PlanResult, approve: Callable[[PlanResult], bool], note: str
) -> None:
    """Ask; apply the saved plan that was shown, or raise with nothing applied."""
    if not approve(result):
        raise DeployError(f"plan not approved; nothing applied ({note})")
    assert result.plan_file is not None, "plans that may be applied are saved to a file"
    logger.info("applying the approved plan")
    applied = stack.apply_plan(result.plan_file)
    done = [line for line in applied.splitlines() if line.startswith("Apply complete!")]
    logger.info("{summary}", summary=done[-1] if done else "terraform apply finished")


def _bootstrap_repository(
    config: DeployConfig,
    ecr: Any,
    stack: TerraformStack,
    approve: Callable[[PlanResult], bool],
    plan_file: Path,
) -> None:
    """First deploy: the repository must exist before an image can be pushed, so ``module.ecr`` is
    planned and applied alone first, asked like any other change."""
    logger.info(
        "ECR repository {name} does not exist yet: planning {target} alone first",
        name=config.ecr_repository,
        target=BOOTSTRAP_TARGET,
    )
    result = stack.plan({"image_digest": PLACEHOLDER_DIGEST}, out=plan_file, targets=[BOOTSTRAP_TARGET])
    if result.changes:
        _apply_if_approved(stack, result, approve, "first deploy: the image repository was not created")
    if repository_uri(ecr, config.ecr_repository) is None:
        raise DeployError(
            f"applying {BOOTSTRAP_TARGET} did not create ECR repository {config.ecr_repository!r}: "
            "ECR_REPOSITORY must name the repository the stack creates"
        )
