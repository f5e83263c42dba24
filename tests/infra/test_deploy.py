"""`make deploy` orchestration and the python-terraform wrapper, with no Docker engine and no AWS.

ECR is a moto server on 127.0.0.1. Docker is a recording runner that plays the registry's part for
real: its `docker push` stores a manifest in moto's ECR with `put_image`, so the digest the deploy
must hand to Terraform is the one ECR reports, and a command that fails really fails (nothing is
stored). Terraform is the real binary on a tiny root module in tmp (builtin provider only, works
offline) shaped like terraform/envs/prod: a `module "ecr"` and the variables `image_digest` and
`image_repository_url`.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest
import requests

from deploy import DeployConfigError, DeployError, pipeline
from deploy.config import DeployConfig, load_config
from deploy.image import CommandResult, require_docker
from deploy.terraform import TerraformError, TerraformStack

pytestmark = [
    pytest.mark.infra,
    pytest.mark.skipif(shutil.which("terraform") is None, reason="terraform is not on PATH"),
]

REPOSITORY = "qbo-invoice-processor"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
REGION = "us-west-2"
REPO_ROOT = Path(__file__).resolve().parents[2]


# --- moto ECR ---------------------------------------------------------------------------------------
# A moto server in its own process: moto's in-process backends are global, and a `mock_aws` test or
# an in-process server elsewhere in the same pytest worker would share (and reset) them.
@pytest.fixture(scope="module")
def moto_server() -> Iterator[str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.get(f"{url}/moto-api/data.json", timeout=1)
                break
            except requests.ConnectionError:
                assert process.poll() is None and time.monotonic() < deadline, "moto server did not start"
                time.sleep(0.05)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
def moto_url(moto_server: str) -> str:
    requests.post(f"{moto_server}/moto-api/reset", timeout=10)
    return moto_server


@pytest.fixture
def ecr(moto_url: str):
    return boto3.client(
        "ecr",
        region_name=REGION,
        endpoint_url=moto_url,
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )


def create_repository(ecr) -> str:
    return ecr.create_repository(repositoryName=REPOSITORY, imageTagMutability="IMMUTABLE")["repository"][
        "repositoryUri"
    ]


# --- recorded docker -----------------------------------------------------------------------------
@dataclass
class Call:
    argv: list[str]
    stdin: str | None


class RecordingRunner:
    """Stands in for git and docker: records every command and keeps docker's state honestly.

    `docker push` needs a login with ECR's real password and a tagged local image, then puts the
    image manifest into moto's ECR; `fail` names a docker subcommand that must fail (nothing done).
    """

    def __init__(self, ecr, *, fail: str | None = None, dirty: bool = False, engine: bool = True) -> None:
        self.ecr = ecr
        self.fail = fail
        self.dirty = dirty
        self.engine = engine
        self.calls: list[Call] = []
        self.local_images: set[str] = set()
        self.logged_in: set[str] = set()

    def run(
        self, argv: Sequence[str], *, stdin: str | None = None, cwd: Path | None = None, echo: bool = False
    ) -> CommandResult:
        argv = list(argv)
        self.calls.append(Call(argv, stdin))
        if argv[:2] == ["git", "rev-parse"]:
            return CommandResult(0, COMMIT + "\n")
        if argv[:2] == ["git", "status"]:
            return CommandResult(0, " M jobs/send_invoices/job.py\n" if self.dirty else "")
        assert argv[0] == "docker", argv
        sub = argv[1]
        if sub == "info":
            return (
                CommandResult(0, "28.2.2")
                if self.engine
                else CommandResult(1, "Cannot connect to the Docker daemon")
            )
        if sub == self.fail:
            return CommandResult(1, f"docker {sub}: simulated failure")
        if sub == "build":
            self.local_images.add(argv[argv.index("--tag") + 1])
            return CommandResult(0, "Successfully built")
        if sub == "login":
            token = self.ecr.get_authorization_token()["authorizationData"][0]["authorizationToken"]
            if stdin != base64.b64decode(token).decode().split(":", 1)[1]:
                return CommandResult(1, "Error response from daemon: login attempt failed")
            self.logged_in.add(argv[-1].removeprefix("https://"))
            return CommandResult(0, "Login Succeeded")
        if sub == "tag":
            if argv[2] not in self.local_images:
                return CommandResult(1, f"Error response from daemon: No such image: {argv[2]}")
            self.local_images.add(argv[3])
            return CommandResult(0, "")
        if sub == "push":
            ref = argv[2]
            registry, _, rest = ref.partition("/")
            name, _, tag = rest.partition(":")
            if ref not in self.local_images or registry not in self.logged_in:
                return CommandResult(1, "denied: not logged in or no such image")
            manifest = json.dumps(
                {
                    "schemaVersion": 2,
                    "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                    "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 7},
                    "layers": [],
                    "annotations": {"revision": tag},
                }
            )
            stored = self.ecr.put_image(repositoryName=name, imageManifest=manifest, imageTag=tag)
            digest = stored["image"]["imageId"]["imageDigest"]
            return CommandResult(0, f"{tag}: digest: {digest} size: 528\n")
        return CommandResult(1, f"unexpected command {argv}")

    def docker_subcommands(self) -> list[str]:
        return [c.argv[1] for c in self.calls if c.argv[0] == "docker"]


# --- a tiny root module shaped like terraform/envs/prod ----------------------------------------
def write_stack(directory: Path, moto_url: str) -> Path:
    """Root module: `module.ecr` creates the ECR repository in moto (local-exec, idempotent);
    the "task definition" keeps the image reference it was given and shows it as output `image`."""
    (directory / "ecr").mkdir(parents=True)
    create = f"""
import boto3
ecr = boto3.client("ecr", region_name="{REGION}", endpoint_url="{moto_url}",
                   aws_access_key_id="test", aws_secret_access_key="test")
try:
    ecr.create_repository(repositoryName="{REPOSITORY}", imageTagMutability="IMMUTABLE")
except ecr.exceptions.RepositoryAlreadyExistsException:
    pass
"""
    (directory / "ecr" / "main.tf").write_text(
        f"""
resource "terraform_data" "repository" {{
  provisioner "local-exec" {{
    interpreter = ["{sys.executable}", "-c"]
    command     = <<-EOT
{create}
EOT
  }}
}}

output "repository_url" {{
  value = "123456789012.dkr.ecr.{REGION}.amazonaws.com/{REPOSITORY}"
  depends_on = [terraform_data.repository]
}}
"""
    )
    (directory / "main.tf").write_text(
        """
terraform {
  backend "local" {}
}

variable "image_digest" {
  type = string
  validation {
    condition     = can(regex("^sha256:[a-f0-9]{64}$", var.image_digest))
    error_message = "image_digest must be sha256: followed by 64 lowercase hex digits."
  }
}

variable "image_repository_url" {
  type    = string
  default = null
}

module "ecr" {
  source = "./ecr"
}

resource "terraform_data" "task_definition" {
  input = "${coalesce(var.image_repository_url, module.ecr.repository_url)}@${var.image_digest}"
}

output "image" {
  value = terraform_data.task_definition.output
}
"""
    )
    return directory


@pytest.fixture
def stack_dir(tmp_path: Path, moto_url: str) -> Path:
    return write_stack(tmp_path / "stack", moto_url)


def config_for(tmp_path: Path, stack_dir: Path) -> DeployConfig:
    # The test stack's local backend takes `path`; the S3 settings are covered by the config tests.
    return DeployConfig(
        repo_root=tmp_path,
        aws_region=REGION,
        ecr_repository=REPOSITORY,
        terraform_dir=stack_dir,
        backend={"path": str(tmp_path / "state" / "prod.tfstate")},
    )


def approve_all(_plan) -> bool:
    return True


# --- deploy orchestration --------------------------------------------------------------------------
def test_deploy_applies_the_digest_ecr_reports_for_the_pushed_commit(tmp_path, ecr, stack_dir):
    uri = create_repository(ecr)
    runner = RecordingRunner(ecr)
    stack = TerraformStack(stack_dir)

    result = pipeline.deploy(config_for(tmp_path, stack_dir), runner, ecr, stack, approve_all)

    digest = ecr.describe_images(repositoryName=REPOSITORY, imageIds=[{"imageTag": COMMIT}])["imageDetails"][
        0
    ]["imageDigest"]
    assert digest.startswith("sha256:")
    assert result.image == f"{uri}@{digest}"
    assert result.changed is True
    assert stack.outputs()["image"] == f"{uri}@{digest}"
    assert (tmp_path / "state" / "prod.tfstate").is_file()  # backend config reached `terraform init`
    assert runner.docker_subcommands() == ["info", "build", "login", "tag", "push"]
    build = next(c.argv for c in runner.calls if c.argv[:2] == ["docker", "build"])
    assert f"{REPOSITORY}:{COMMIT}" in build and "linux/amd64" in build
    login = next(c for c in runner.calls if c.argv[:2] == ["docker", "login"])
    assert login.stdin and all(login.stdin not in " ".join(c.argv) for c in runner.calls)
    assert ["docker", "push", f"{uri}:{COMMIT}"] in [c.argv for c in runner.calls]


def test_failed_push_stops_the_deploy_before_terraform_applies(tmp_path, ecr, stack_dir):
    create_repository(ecr)
    runner = RecordingRunner(ecr, fail="push")
    stack = TerraformStack(stack_dir)

    with pytest.raises(DeployError, match="docker push failed"):
        pipeline.deploy(config_for(tmp_path, stack_dir), runner, ecr, stack, approve_all)

    assert ecr.describe_images(repositoryName=REPOSITORY)["imageDetails"] == []
    assert stack.outputs() == {}


def test_failed_build_pushes_nothing(tmp_path, ecr, stack_dir):
    create_repository(ecr)
    runner = RecordingRunner(ecr, fail="build")

    with pytest.raises(DeployError, match="docker build failed"):
        pipeline.deploy(config_for(tmp_path, stack_dir), runner, ecr, TerraformStack(stack_dir), approve_all)

    assert runner.docker_subcommands() == ["info", "build"]


def test_first_deploy_creates_the_repository_with_a_targeted_apply_then_pushes(tmp_path, ecr, stack_dir):
    runner = RecordingRunner(ecr)  # no repository yet
    stack = TerraformStack(stack_dir)

    result = pipeline.deploy(config_for(tmp_path, stack_dir), runner, ecr, stack, approve_all)

    uri = ecr.describe_repositories(repositoryNames=[REPOSITORY])["repositories"][0]["repositoryUri"]
    assert result.image.startswith(f"{uri}@sha256:")
    assert pipeline.PLACEHOLDER_DIGEST not in result.image
    assert stack.outputs()["image"] == result.image


def test_redeploy_of_the_same_commit_reuses_the_pushed_image_and_changes_nothing(tmp_path, ecr, stack_dir):
    create_repository(ecr)
    config = config_for(tmp_path, stack_dir)
    first = pipeline.deploy(config, RecordingRunner(ecr), ecr, TerraformStack(stack_dir), approve_all)
    again = RecordingRunner(ecr)

    def must_not_ask(_plan) -> bool:
        raise AssertionError("nothing to approve when nothing changes")

    second = pipeline.deploy(config, again, ecr, TerraformStack(stack_dir), must_not_ask)

    assert second.image == first.image and second.changed is False
    assert "push" not in again.docker_subcommands()


def test_unapproved_plan_applies_nothing(tmp_path, ecr, stack_dir):
    create_repository(ecr)
    stack = TerraformStack(stack_dir)
    seen = []

    with pytest.raises(DeployError, match="not approved"):
        pipeline.deploy(
            config_for(tmp_path, stack_dir),
            RecordingRunner(ecr),
            ecr,
            stack,
            lambda plan: seen.append(plan) or False,
        )

    assert seen and seen[0].changes and "terraform_data.task_definition will be created" in seen[0].output
    assert stack.outputs() == {}


def test_plan_shows_the_pushed_image_of_the_current_commit(tmp_path, ecr, stack_dir):
    uri = create_repository(ecr)
    runner = RecordingRunner(ecr)
    config = config_for(tmp_path, stack_dir)
    runner.run(["docker", "build", "--tag", f"{REPOSITORY}:{COMMIT}", "."])
    pushed = pipeline.push(config, runner, ecr)

    result = pipeline.plan(config, runner, ecr, TerraformStack(stack_dir))

    assert pushed.ref.startswith(f"{uri}@sha256:")
    assert result.changes and pushed.digest in result.output


def test_plan_without_a_pushed_image_says_to_push_first(tmp_path, ecr, stack_dir):
    create_repository(ecr)
    with pytest.raises(DeployError, match="make push"):
        pipeline.plan(config_for(tmp_path, stack_dir), RecordingRunner(ecr), ecr, TerraformStack(stack_dir))


def test_uncommitted_changes_refuse_to_build(tmp_path, ecr, stack_dir):
    runner = RecordingRunner(ecr, dirty=True)
    with pytest.raises(DeployError, match="uncommitted changes"):
        pipeline.build(config_for(tmp_path, stack_dir), runner)
    assert runner.docker_subcommands() == []


def test_missing_docker_engine_points_at_make_image_test(ecr):
    with pytest.raises(DeployError, match="make image-test"):
        require_docker(RecordingRunner(ecr, engine=False))


# --- configuration -------------------------------------------------------------------------------
def test_every_configuration_problem_is_reported_at_once(tmp_path):
    env = {"ECR_REPOSITORY": "Not A Name", "IMAGE_PLATFORM": "windows/amd64", "TF_VAR_FILE": "nope.tfvars"}
    with pytest.raises(DeployConfigError) as caught:
        load_config(env, tmp_path, "deploy")
    text = str(caught.value)
    for expected in (
        "ECR_REPOSITORY",
        "IMAGE_PLATFORM",
        "AWS_REGION",
        "TF_BACKEND_BUCKET",
        "TF_BACKEND_KEY",
        "TF_VAR_FILE",
        "no Terraform configuration",
    ):
        assert expected in text
    assert len(caught.value.problems) == 7


def test_configuration_defaults_and_backend_region(tmp_path):
    (tmp_path / "terraform/envs/prod").mkdir(parents=True)
    (tmp_path / "terraform/envs/prod/main.tf").write_text("")
    (tmp_path / "prod.tfvars").write_text("")
    env = {
        "AWS_REGION": REGION,
        "TF_BACKEND_BUCKET": "state",
        "TF_BACKEND_KEY": "k",
        "TF_VAR_FILE": "prod.tfvars",
        "DEPLOY_AUTO_APPROVE": "1",
    }
    config = load_config(env, tmp_path, "deploy")
    assert config.ecr_repository == REPOSITORY and config.platform == "linux/amd64"
    assert config.backend == {"bucket": "state", "key": "k", "region": REGION}
    assert config.var_file == tmp_path / "prod.tfvars" and config.auto_approve is True
    assert load_config({}, tmp_path, "build").aws_region == ""  # building needs no AWS


def test_cli_exits_2_with_the_list_of_problems():
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "TF_BACKEND_", "TF_VAR_FILE"))}
    done = subprocess.run(
        [sys.executable, "-m", "deploy", "plan"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "AWS_REGION is not set" in done.stderr and "TF_BACKEND_BUCKET is not set" in done.stderr


# --- the python-terraform wrapper on Terraform 1.x ----------------------------------------------
def plain_stack(directory: Path) -> Path:
    directory.mkdir(parents=True)
    (directory / "main.tf").write_text(
        """
terraform {
  backend "local" {}
}
variable "image_digest" {
  type = string
  validation {
    condition     = can(regex("^sha256:[a-f0-9]{64}$", var.image_digest))
    error_message = "image_digest must be sha256: followed by 64 lowercase hex digits."
  }
}
resource "terraform_data" "pinned" {
  input = var.image_digest
}
output "digest" {
  value = terraform_data.pinned.output
}
"""
    )
    return directory


def test_wrapper_runs_init_plan_apply_and_destroy_on_terraform_1x(tmp_path):
    stack = TerraformStack(plain_stack(tmp_path / "stack"))
    digest = {"image_digest": "sha256:" + "a" * 64}

    stack.init({"path": str(tmp_path / "remote.tfstate")})
    assert stack.plan(digest).changes is True
    stack.apply(digest)  # would hang on the approval prompt without skip_plan=True
    assert stack.outputs() == {"digest": "sha256:" + "a" * 64}
    assert stack.plan(digest).changes is False
    assert stack.plan({"image_digest": "sha256:" + "b" * 64}).changes is True
    stack.destroy(digest)  # `-force` is gone since Terraform 0.15
    assert stack.outputs() == {}
    assert json.loads((tmp_path / "remote.tfstate").read_text())["resources"] == []


def test_wrapper_raises_with_terraforms_own_message_when_apply_fails(tmp_path):
    stack = TerraformStack(plain_stack(tmp_path / "stack"))
    stack.init({"path": str(tmp_path / "remote.tfstate")})

    with pytest.raises(TerraformError) as caught:
        stack.apply({"image_digest": "latest"})

    assert caught.value.returncode == 1
    assert "image_digest must be sha256: followed by 64 lowercase hex digits." in str(caught.value)


def test_wrapper_variables_win_over_the_var_file(tmp_path):
    directory = plain_stack(tmp_path / "stack")
    var_file = tmp_path / "prod.tfvars"
    var_file.write_text(f'image_digest = "sha256:{"c" * 64}"\n')
    stack = TerraformStack(directory, var_files=[var_file])
    stack.init({"path": str(tmp_path / "remote.tfstate")})

    stack.apply()
    assert stack.outputs()["digest"] == "sha256:" + "c" * 64
    stack.apply({"image_digest": "sha256:" + "d" * 64})
    assert stack.outputs()["digest"] == "sha256:" + "d" * 64


def test_deploy_speaks_the_prod_stacks_language():
    """The variables deploy sets, the module it bootstraps and the default repository name are
    the ones terraform/envs/prod declares (they live in two places: here they must agree)."""
    prod = REPO_ROOT / "terraform" / "envs" / "prod"
    text = "\n".join(path.read_text() for path in sorted(prod.glob("*.tf")))
    image = pipeline.image_variables(pipeline.PushedImage("r.example/x", "sha256:" + "0" * 64))
    for variable in image:
        assert re.search(rf'^variable "{variable}" {{', text, re.M), f"prod declares no variable {variable}"
    module = pipeline.BOOTSTRAP_TARGET.removeprefix("module.")
    assert re.search(rf'^module "{module}" {{', text, re.M), f"prod has no {pipeline.BOOTSTRAP_TARGET}"
    assert re.search(rf'name\s*=\s*"{REPOSITORY}"', text), (
        "prod's stack name differs from ECR_REPOSITORY's default"
    )
