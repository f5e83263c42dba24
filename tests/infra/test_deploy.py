"""`make deploy` orchestration and the python-terraform wrapper, with no Docker engine and no AWS.

ECR is a moto server on 127.0.0.1. Docker is a recording runner that plays the registry's part for
real: its `docker push` stores a manifest in moto's ECR with `put_image`, so the digest the deploy
must hand to Terraform is the one ECR reports, and a command that fails really fails (nothing is
stored). Terraform is the real binary on a tiny root module in tmp (builtin provider only, works
offline) shaped like terraform/envs/prod: a `module "ecr"`, the variables `image_digest`,
`image_repository_url` and `cpu_architecture` in variables.tf, and a backend file.
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
from loguru import logger

from deploy import DeployConfigError, DeployError, pipeline
from deploy.config import PLATFORMS, DeployConfig, load_config
from deploy.image import CommandResult, git_commit, require_docker
from deploy.terraform import PlanResult, TerraformError, TerraformStack

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
                requests.get(f"{url}/moto-api/data.json", timeout=5)
                break
            except (requests.ConnectionError, requests.Timeout):  # not up yet, or slow on a busy machine
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

    def __init__(
        self, ecr, *, fail: str | None = None, dirty: bool | str = False, engine: bool = True
    ) -> None:
        self.ecr = ecr
        self.fail = fail
        # True: a code change is uncommitted; a string: `git status --porcelain` prints exactly that.
        self.dirty = " M jobs/send_invoices/job.py\n" if dirty is True else (dirty or "")
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
            return CommandResult(0, self.dirty)
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
    (directory / "variables.tf").write_text(
        """
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

variable "cpu_architecture" {
  type    = string
  default = "X86_64"
}

variable "note" {
  type    = string
  default = "planned"
}
"""
    )
    (directory / "main.tf").write_text(
        """
terraform {
  backend "local" {}
}

module "ecr" {
  source = "./ecr"
}

resource "terraform_data" "task_definition" {
  input = "${coalesce(var.image_repository_url, module.ecr.repository_url)}@${var.image_digest}"
}

resource "terraform_data" "note" {
  input = var.note
}

output "image" {
  value = terraform_data.task_definition.output
}

output "note" {
  value = terraform_data.note.output
}
"""
    )
    return directory


@pytest.fixture
def stack_dir(tmp_path: Path, moto_url: str) -> Path:
    return write_stack(tmp_path / "stack", moto_url)


def backend_file(tmp_path: Path) -> Path:
    """The one way the backend is given: a file for `-backend-config` (local backend: `path`)."""
    path = tmp_path / "backend.hcl"
    path.write_text(f'path = "{tmp_path / "state" / "prod.tfstate"}"\n')
    return path


def config_for(tmp_path: Path, stack_dir: Path) -> DeployConfig:
    return DeployConfig(
        repo_root=tmp_path,
        aws_region=REGION,
        ecr_repository=REPOSITORY,
        terraform_dir=stack_dir,
        backend_file=backend_file(tmp_path),
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
    assert (tmp_path / "state" / "prod.tfstate").is_file()  # the backend file reached `terraform init`
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
        pipeline.build(config_for(tmp_path, stack_dir), runner, TerraformStack(stack_dir))
    assert runner.docker_subcommands() == []


def test_missing_docker_engine_points_at_make_image_test(ecr):
    with pytest.raises(DeployError, match="make image-test"):
        require_docker(RecordingRunner(ecr, engine=False))


# --- configuration -------------------------------------------------------------------------------
def test_every_configuration_problem_is_reported_at_once(tmp_path):
    env = {"ECR_REPOSITORY": "Not A Name", "TF_VAR_FILE": "nope.tfvars"}
    with pytest.raises(DeployConfigError) as caught:
        load_config(env, tmp_path, "deploy")
    text = str(caught.value)
    for expected in (
        "ECR_REPOSITORY",
        "AWS_REGION",
        "terraform/envs/prod/backend.hcl is missing: copy backend.hcl.example",
        "TF_VAR_FILE",
        "no Terraform configuration",
    ):
        assert expected in text
    assert len(caught.value.problems) == 5


def test_configuration_defaults_and_the_backend_file(tmp_path):
    prod = tmp_path / "terraform/envs/prod"
    prod.mkdir(parents=True)
    (prod / "main.tf").write_text("")
    (prod / "backend.hcl").write_text('bucket = "state"\n')
    (tmp_path / "extra.tfvars").write_text("")
    env = {"AWS_REGION": REGION, "TF_VAR_FILE": "extra.tfvars", "DEPLOY_AUTO_APPROVE": "1"}
    config = load_config(env, tmp_path, "deploy")
    assert config.ecr_repository == REPOSITORY
    assert config.backend_file == prod / "backend.hcl"
    assert config.var_file == tmp_path / "extra.tfvars" and config.auto_approve is True
    building = load_config({}, tmp_path, "build")  # building needs no AWS and no backend
    assert building.aws_region == "" and building.backend_file is None


def test_backend_and_tfvars_are_ignored_by_git_and_documented_the_same_way():
    ignored = subprocess.run(
        [
            "git",
            "check-ignore",
            "--no-index",
            "terraform/envs/prod/backend.hcl",
            "terraform/envs/prod/terraform.tfvars",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert ignored.stdout.split() == [
        "terraform/envs/prod/backend.hcl",
        "terraform/envs/prod/terraform.tfvars",
    ]
    readmes = [REPO_ROOT / "terraform/README.md", REPO_ROOT / "terraform/envs/prod/README.md"]
    for readme in readmes:
        text = readme.read_text()
        assert "backend.hcl" in text, readme
        assert "TF_BACKEND_" not in text, f"{readme}: one way to give the backend (backend.hcl)"
    assert "TF_BACKEND_" not in (REPO_ROOT / "deploy/config.py").read_text()


def test_cli_exits_2_with_the_list_of_problems():
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "TF_VAR_FILE"))}
    done = subprocess.run(
        [sys.executable, "-m", "deploy", "plan"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "AWS_REGION is not set" in done.stderr
    if not (REPO_ROOT / "terraform/envs/prod/backend.hcl").exists():
        assert "backend.hcl is missing" in done.stderr


def test_make_passes_allow_dirty_through():
    def dry_run(*extra: str) -> str:
        return subprocess.run(
            ["make", "-n", "deploy", *extra], cwd=REPO_ROOT, capture_output=True, text=True, timeout=30
        ).stdout

    assert "-m deploy deploy --allow-dirty" in dry_run("ALLOW_DIRTY=1")
    assert "--allow-dirty" not in dry_run()


# --- plan to a file, ask, apply exactly that plan ---------------------------------------------------
def test_deploy_applies_the_plan_it_showed_even_if_the_inputs_change_after_it(tmp_path, ecr, stack_dir):
    create_repository(ecr)
    stack = TerraformStack(stack_dir)
    shown: list[PlanResult] = []

    def approve_then_change_the_tfvars(plan: PlanResult) -> bool:
        shown.append(plan)
        (stack_dir / "terraform.tfvars").write_text('note = "changed after the plan was shown"\n')
        return True

    pipeline.deploy(
        config_for(tmp_path, stack_dir), RecordingRunner(ecr), ecr, stack, approve_then_change_the_tfvars
    )

    assert len(shown) == 1 and shown[0].plan_file is not None
    assert '"planned"' in shown[0].output
    assert stack.outputs()["note"] == "planned", "apply must apply the saved plan, not plan again"
    assert not shown[0].plan_file.exists(), "the saved plan (it can hold secrets) is removed afterwards"


def test_first_deploy_asks_before_creating_the_repository(tmp_path, ecr, stack_dir):
    seen: list[PlanResult] = []
    runner = RecordingRunner(ecr)

    with pytest.raises(DeployError, match="not approved.*image repository was not created"):
        pipeline.deploy(
            config_for(tmp_path, stack_dir),
            runner,
            ecr,
            TerraformStack(stack_dir),
            lambda p: seen.append(p) or False,
        )

    assert len(seen) == 1 and "module.ecr.terraform_data.repository will be created" in seen[0].output
    assert "terraform_data.task_definition" not in seen[0].output, (
        "the bootstrap plan targets module.ecr only"
    )
    assert ecr.describe_repositories()["repositories"] == []
    assert "push" not in runner.docker_subcommands()


def test_first_deploy_asks_twice_then_runs_the_pushed_image(tmp_path, ecr, stack_dir):
    seen: list[PlanResult] = []
    stack = TerraformStack(stack_dir)

    result = pipeline.deploy(
        config_for(tmp_path, stack_dir), RecordingRunner(ecr), ecr, stack, lambda p: seen.append(p) or True
    )

    assert len(seen) == 2, "the bootstrap and the full plan are both shown and approved"
    assert stack.outputs()["image"] == result.image and pipeline.PLACEHOLDER_DIGEST not in result.image


@pytest.mark.parametrize(("architecture", "platform"), sorted(PLATFORMS.items()))
def test_image_is_built_for_the_tasks_cpu_architecture(tmp_path, ecr, stack_dir, architecture, platform):
    (stack_dir / "terraform.tfvars").write_text(f'cpu_architecture = "{architecture}"\n')
    runner = RecordingRunner(ecr)

    pipeline.build(config_for(tmp_path, stack_dir), runner, TerraformStack(stack_dir))

    build = next(c.argv for c in runner.calls if c.argv[:2] == ["docker", "build"])
    assert build[build.index("--platform") + 1] == platform


def test_a_lock_file_with_new_hashes_does_not_stop_the_next_deploy(tmp_path, ecr):
    messages: list[str] = []
    sink = logger.add(messages.append, level="WARNING", format="{message}")
    try:
        lock_only = RecordingRunner(ecr, dirty=" M terraform/envs/prod/.terraform.lock.hcl\n")
        assert git_commit(lock_only, tmp_path) == COMMIT
        with pytest.raises(DeployError, match=r"uncommitted changes \(jobs/send_invoices/job.py\)"):
            git_commit(RecordingRunner(ecr, dirty=True), tmp_path)
    finally:
        logger.remove(sink)
    assert any(".terraform.lock.hcl" in m and "commit it" in m for m in messages), messages


def test_init_says_to_commit_the_lock_file_when_it_gained_hashes(tmp_path):
    class InitAddsHashes:
        working_dir = tmp_path

        def init(self, backend: Path | None) -> str:
            (tmp_path / ".terraform.lock.hcl").write_text("h1:abc\nzh:def\n")
            return ""

    (tmp_path / ".terraform.lock.hcl").write_text("h1:abc\n")
    messages: list[str] = []
    sink = logger.add(messages.append, level="WARNING", format="{message}")
    try:
        pipeline.init(config_for(tmp_path, tmp_path), InitAddsHashes())  # type: ignore[arg-type]
        assert len(messages) == 1 and "commit it" in messages[0]
        pipeline.init(config_for(tmp_path, tmp_path), InitAddsHashes())  # type: ignore[arg-type]
        assert len(messages) == 1, "an unchanged lock file says nothing"
    finally:
        logger.remove(sink)


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


def remote_state(tmp_path: Path) -> Path:
    path = tmp_path / "remote.hcl"
    path.write_text(f'path = "{tmp_path / "remote.tfstate"}"\n')
    return path


def apply(stack: TerraformStack, tmp_path: Path, variables: dict | None = None) -> str:
    """Plan to a file and apply that plan: the only way the deploy applies anything."""
    result = stack.plan(variables, out=tmp_path / "test.tfplan")
    return stack.apply_plan(result.plan_file)


def test_wrapper_runs_init_plan_apply_and_destroy_on_terraform_1x(tmp_path):
    stack = TerraformStack(plain_stack(tmp_path / "stack"))
    digest = {"image_digest": "sha256:" + "a" * 64}

    stack.init(remote_state(tmp_path))
    assert stack.plan(digest).changes is True
    apply(stack, tmp_path, digest)
    assert stack.outputs() == {"digest": "sha256:" + "a" * 64}
    assert stack.plan(digest).changes is False
    assert stack.plan({"image_digest": "sha256:" + "b" * 64}).changes is True
    stack.destroy(digest)  # `-force` is gone since Terraform 0.15
    assert stack.outputs() == {}
    assert json.loads((tmp_path / "remote.tfstate").read_text())["resources"] == []


def test_wrapper_raises_with_terraforms_own_message_when_apply_fails(tmp_path):
    stack = TerraformStack(plain_stack(tmp_path / "stack"))
    stack.init(remote_state(tmp_path))

    with pytest.raises(TerraformError) as caught:
        apply(stack, tmp_path, {"image_digest": "latest"})

    assert caught.value.returncode == 1
    assert "image_digest must be sha256: followed by 64 lowercase hex digits." in str(caught.value)


def test_wrapper_variables_win_over_the_var_file(tmp_path):
    directory = plain_stack(tmp_path / "stack")
    var_file = tmp_path / "prod.tfvars"
    var_file.write_text(f'image_digest = "sha256:{"c" * 64}"\n')
    stack = TerraformStack(directory, var_files=[var_file])
    stack.init(remote_state(tmp_path))

    apply(stack, tmp_path)
    assert stack.outputs()["digest"] == "sha256:" + "c" * 64
    apply(stack, tmp_path, {"image_digest": "sha256:" + "d" * 64})
    assert stack.outputs()["digest"] == "sha256:" + "d" * 64


def test_deploy_speaks_the_prod_stacks_language():
    """The variables deploy sets, the module it bootstraps and the default repository name are
    the ones terraform/envs/prod declares (they live in two places: here they must agree)."""
    prod = REPO_ROOT / "terraform" / "envs" / "prod"
    text = "\n".join(path.read_text() for path in sorted(prod.glob("*.tf")))
    image = pipeline.image_variables(pipeline.PushedImage("r.example/x", "sha256:" + "0" * 64))
    for variable in (*image, "cpu_architecture"):
        assert re.search(rf'^variable "{variable}" {{', text, re.M), f"prod declares no variable {variable}"
    variables = (prod / "variables.tf").read_text()
    assert 'contains(["X86_64", "ARM64"], var.cpu_architecture)' in variables, "PLATFORMS maps these two"
    assert set(PLATFORMS) == {"X86_64", "ARM64"}
    module = pipeline.BOOTSTRAP_TARGET.removeprefix("module.")
    assert re.search(rf'^module "{module}" {{', text, re.M), f"prod has no {pipeline.BOOTSTRAP_TARGET}"
    assert re.search(rf'name\s*=\s*"{REPOSITORY}"', text), (
        "prod's stack name differs from ECR_REPOSITORY's default"
    )
