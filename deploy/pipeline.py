"""The deploy steps in order: build, push, plan, apply, wired to a runner, an ECR client and a stack.

Nothing here creates its own clients: the CLI (``deploy.__main__``) passes real ones, the tests pass
a recording runner, a moto-backed ECR client and a small Terraform stack.

The root stack (terraform/envs/prod) takes the image as two variables, ``image_digest`` and
``image_repository_url``, and runs ``<image_repository_url>@<image_digest>``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from loguru import logger

from deploy import DeployError
from deploy.config import DeployConfig
from deploy.image import (
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
# Well-formed but naming no image; only for that targeted apply, which creates nothing that reads
# it (input variables are not kept in the state).
PLACEHOLDER_DIGEST = "sha256:" + "0" * 64


@dataclass(frozen=True)
class DeployResult:
    image: str  # <repository uri>@sha256:...
    changed: bool
    plan: str


def image_variables(image: PushedImage) -> dict[str, str]:
    """The Terraform variables that pin the task definition to ``image``."""
    return {"image_digest": image.digest, "image_repository_url": image.repository_uri}


def build(config: DeployConfig, runner: CommandRunner, *, allow_dirty: bool = False) -> str:
    commit = git_commit(runner, config.repo_root, allow_dirty=allow_dirty)
    require_docker(runner)
    return build_image(runner, config.repo_root, config.ecr_repository, commit, config.platform)


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


def plan(
    config: DeployConfig, runner: CommandRunner, ecr: Any, stack: TerraformStack, *, allow_dirty: bool = False
) -> PlanResult:
    image = current_image(config, runner, ecr, allow_dirty=allow_dirty)
    stack.init(config.backend)
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
    """Build, push, plan, and apply the pushed image's digest once ``approve`` says yes.

    Any failed step raises and stops everything after it: no push without a build, no apply
    without a digest that ECR itself reported for the pushed tag.
    """
    commit = git_commit(runner, config.repo_root, allow_dirty=allow_dirty)
    require_docker(runner)
    local = build_image(runner, config.repo_root, config.ecr_repository, commit, config.platform)
    stack.init(config.backend)
    if repository_uri(ecr, config.ecr_repository) is None:
        _bootstrap_repository(config, ecr, stack)
    image = push_image(runner, ecr, config.ecr_repository, local, commit)
    variables = image_variables(image)
    result = stack.plan(variables)
    if not result.changes:
        logger.info("nothing to change: the stack already runs {image}", image=image.ref)
        return DeployResult(image=image.ref, changed=False, plan=result.output)
    if not approve(result):
        raise DeployError(f"plan not approved; nothing applied (image {image.ref} stays pushed)")
    logger.info("applying the stack with {image}", image=image.ref)
    applied = stack.apply(variables)
    done = [line for line in applied.splitlines() if line.startswith("Apply complete!")]
    logger.info("{summary}", summary=done[-1] if done else "terraform apply finished")
    return DeployResult(image=image.ref, changed=True, plan=result.output)


def _bootstrap_repository(config: DeployConfig, ecr: Any, stack: TerraformStack) -> None:
    logger.info(
        "ECR repository {name} does not exist yet: applying {target} first",
        name=config.ecr_repository,
        target=BOOTSTRAP_TARGET,
    )
    stack.apply({"image_digest": PLACEHOLDER_DIGEST}, targets=[BOOTSTRAP_TARGET])
    if repository_uri(ecr, config.ecr_repository) is None:
        raise DeployError(
            f"applying {BOOTSTRAP_TARGET} did not create ECR repository {config.ecr_repository!r}: "
            "ECR_REPOSITORY must name the repository the stack creates"
        )
