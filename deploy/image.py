"""Build the image with Docker, push it to ECR and resolve the digest ECR stored for it.

Commands go through a small runner object so tests can record them (and play the registry's part)
without a Docker engine; the ECR calls use a boto3 client passed in, so tests point it at moto.
The registry password travels on stdin only: it is never part of an argv, a log line or an error.
"""

from __future__ import annotations

import base64
import re
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from loguru import logger

from deploy import DeployError

_PUSH_DIGEST = re.compile(r"digest: (sha256:[0-9a-f]{64})")
LOCK_FILE_NAME = ".terraform.lock.hcl"


@dataclass(frozen=True)
class PushedImage:
    """An image in ECR, named by content: what the task definition must run."""

    repository_uri: str  # <account>.dkr.ecr.<region>.amazonaws.com/<name>
    digest: str  # sha256:<64 hex>, as ECR reports it

    @property
    def ref(self) -> str:
        return f"{self.repository_uri}@{self.digest}"


@dataclass(frozen=True)
class CommandResult:
    returncode: int
    output: str  # stdout and stderr, interleaved


class CommandRunner(Protocol):
    def run(
        self, argv: Sequence[str], *, stdin: str | None = None, cwd: Path | None = None, echo: bool = False
    ) -> CommandResult:
        """Run argv; return its exit code and output. Must not raise for a non-zero exit."""
        ...


class SubprocessRunner:
    """Runs commands for real; ``echo`` shows their output as it comes (builds take minutes)."""

    def run(
        self, argv: Sequence[str], *, stdin: str | None = None, cwd: Path | None = None, echo: bool = False
    ) -> CommandResult:
        try:
            process = subprocess.Popen(
                list(argv),
                cwd=cwd,
                stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        except FileNotFoundError:
            return CommandResult(127, f"{argv[0]}: command not found")
        if stdin is not None and process.stdin is not None:
            process.stdin.write(stdin)
            process.stdin.close()
        lines = []
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            if echo:
                sys.stderr.write(line)
        return CommandResult(process.wait(), "".join(lines))


def checked(runner: CommandRunner, argv: Sequence[str], what: str, **kwargs: Any) -> CommandResult:
    """Run a command; a non-zero exit stops the deploy with the command's last output lines."""
    result = runner.run(argv, **kwargs)
    if result.returncode != 0:
        tail = "\n".join(result.output.strip().splitlines()[-20:])
        raise DeployError(f"{what} failed: `{' '.join(argv)}` exited {result.returncode}\n{tail}")
    return result


def git_commit(runner: CommandRunner, repo_root: Path, *, allow_dirty: bool = False) -> str:
    """The commit the image is tagged with. A dirty tree would ship code no commit describes."""
    commit = checked(runner, ["git", "rev-parse", "HEAD"], "reading the git commit", cwd=repo_root)
    sha = commit.output.strip()
    if not re.fullmatch(r"[0-9a-f]{40}", sha):
        raise DeployError(f"git rev-parse HEAD gave {sha!r}, not a commit id")
    status = checked(
        runner,
        ["git", "status", "--porcelain", "--untracked-files=no"],
        "checking for uncommitted changes",
        cwd=repo_root,
    )
    changed = [line[3:].strip() for line in status.output.splitlines() if line.strip()]
    # `terraform init` adds provider hashes to the lock file on a new platform: not code, and not
    # in the image. It must be committed, but must not stop the deploy that init is part of.
    lock_files = [path for path in changed if path.endswith(LOCK_FILE_NAME)]
    for path in lock_files:
        logger.warning(
            "{path} has uncommitted changes (provider hashes from terraform init): commit it", path=path
        )
    code = [path for path in changed if path not in lock_files]
    if code and not allow_dirty:
        raise DeployError(
            f"the work tree has uncommitted changes ({', '.join(code[:5])}); the image tag would not "
            "describe its code. Commit first (or ALLOW_DIRTY=1 / --allow-dirty for a throwaway build)."
        )
    return sha


def require_docker(runner: CommandRunner) -> None:
    result = runner.run(["docker", "info", "--format", "{{.ServerVersion}}"])
    if result.returncode != 0:
        raise DeployError(
            "no Docker engine is reachable (`docker info` failed), so the image cannot be built or "
            "pushed here. To build and run the image without an engine use `make image-test` (buildah); "
            "deploy from a machine with Docker, or point DOCKER_HOST at an engine.\n"
            + "\n".join(result.output.strip().splitlines()[-3:])
        )


def build_image(
    runner: CommandRunner, repo_root: Path, repository: str, tag: str, platform: str = "linux/amd64"
) -> str:
    """``docker build`` of the repo's Dockerfile; returns the local ``<repository>:<tag>``."""
    local = f"{repository}:{tag}"
    logger.info("building {image} for {platform}", image=local, platform=platform)
    checked(
        runner,
        [
            "docker",
            "build",
            "--pull",
            "--platform",
            platform,
            "--label",
            f"org.opencontainers.image.revision={tag}",
            "--tag",
            local,
            str(repo_root),
        ],
        "docker build",
        cwd=repo_root,
        echo=True,
    )
    return local


def repository_uri(ecr: Any, repository: str) -> str | None:
    """The repository's URI (``<account>.dkr.ecr.<region>.amazonaws.com/<name>``), None if absent."""
    try:
        found = ecr.describe_repositories(repositoryNames=[repository])["repositories"]
    except ecr.exceptions.RepositoryNotFoundException:
        return None
    return found[0]["repositoryUri"] if found else None


def pushed_digest(ecr: Any, repository: str, tag: str) -> str | None:
    """The digest ECR stores for ``tag`` (``sha256:...``), None if that tag was never pushed."""
    try:
        details = ecr.describe_images(repositoryName=repository, imageIds=[{"imageTag": tag}])["imageDetails"]
    except ecr.exceptions.ImageNotFoundException:
        return None
    return details[0]["imageDigest"] if details else None


def push_image(runner: CommandRunner, ecr: Any, repository: str, local: str, tag: str) -> PushedImage:
    """Push ``local`` as ``<repository uri>:<tag>`` and return it as ECR stored it (by digest).

    Tags are immutable in our registry, so a tag that is already there is reused as it is (a
    re-deploy of the same commit), and the digest always comes from ECR itself.
    """
    uri = repository_uri(ecr, repository)
    if uri is None:
        raise DeployError(f"ECR repository {repository!r} does not exist (run `make deploy` to create it)")
    existing = pushed_digest(ecr, repository, tag)
    if existing:
        logger.info(
            "{uri}:{tag} is already in ECR ({digest}); not pushing again", uri=uri, tag=tag, digest=existing
        )
        return PushedImage(uri, existing)

    registry = uri.split("/", 1)[0]
    auth = ecr.get_authorization_token()["authorizationData"][0]
    user, _, password = base64.b64decode(auth["authorizationToken"]).decode().partition(":")
    endpoint = auth.get("proxyEndpoint") or f"https://{registry}"
    checked(
        runner,
        ["docker", "login", "--username", user or "AWS", "--password-stdin", endpoint],
        "docker login to ECR",
        stdin=password,
    )
    remote = f"{uri}:{tag}"
    checked(runner, ["docker", "tag", local, remote], "docker tag")
    logger.info("pushing {remote}", remote=remote)
    pushed = checked(runner, ["docker", "push", remote], "docker push", echo=True)

    digest = pushed_digest(ecr, repository, tag)
    if digest is None:
        raise DeployError(
            f"docker push reported success but ECR lists no image tagged {tag!r} in {repository!r}"
        )
    reported = _PUSH_DIGEST.search(pushed.output)
    if reported and reported.group(1) != digest:
        raise DeployError(
            f"docker push reported {reported.group(1)} but ECR holds {digest} for tag {tag!r}; not deploying"
        )
    logger.info("pushed {remote} as {digest}", remote=remote, digest=digest)
    return PushedImage(uri, digest)
