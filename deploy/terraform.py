"""The one place that talks to Terraform, through python-terraform, with its workarounds.

python-terraform 0.10.1 predates Terraform 0.15, and several of its defaults break on 1.x (each seen
on Terraform 1.11 here; see the offline-infra-checks reference, section 3):

* ``apply()`` sends ``-auto-approve=false`` and dies on the approval prompt (``error asking for
  approval: EOF``) -> never used: every apply here applies a saved plan (``apply_plan``), which
  Terraform applies without a prompt, exactly as it was shown.
* ``destroy()`` sends ``-force``, removed in 0.15 (``flag provided but not defined: -force``) ->
  ``destroy(force=IsNotFlagged, auto_approve=True)``.
* A positional directory (``apply("/path")``) is read as a plan file on >= 0.15 -> only ever
  ``working_dir=``.
* ``plan()`` uses ``-detailed-exitcode``: exit 2 means "changes", not failure -> mapped to
  :class:`PlanResult`.
* Every call turns the ``variables`` mapping into a temporary ``-var-file`` placed BEFORE the
  user's ``var_file`` options, so a tfvars file would silently override e.g. the image digest ->
  we pass ``var=None`` and write our variables to our own ``.tfvars.json``, given last (wins).
* ``output()`` returns None on any failure, and attribute-style calls (``output_cmd``) go through
  a module-level ``logging.debug`` that installs a root handler (``basicConfig``) as a side effect ->
  we call ``cmd("output", json=IsFlagged)`` directly and raise.
* Errors come back as return codes (``raise_on_error`` is off by default) -> every call is checked
  here and raises :class:`TerraformError` carrying Terraform's own stderr.
* ``init(backend_config=...)`` only takes key=value pairs; the backend comes from ONE file
  (``backend.hcl``), so ``-backend-config=<file>`` is passed through ``cmd``.
* ``apply(plan_file)`` must not carry variables (Terraform refuses ``-var-file`` with a saved plan)
  -> ``cmd("apply", plan_file)`` with nothing else: the plan holds the variables it was made with.
* Nothing feeds a command's stdin, so ``terraform console`` (used to read a variable's value, e.g.
  the task's cpu_architecture before any image exists) runs through subprocess here, the one
  exception, on a copy of the stack's variables.tf and tfvars only: no providers, no backend, no
  AWS credentials needed, the same values the real plan gets.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loguru import logger
from python_terraform import IsFlagged, IsNotFlagged, Terraform

from deploy import DeployError


class TerraformError(DeployError):
    """A terraform command failed; the message ends with what Terraform printed on stderr."""

    def __init__(self, command: str, returncode: int, stderr: str, stdout: str = "") -> None:
        self.command = command
        self.returncode = returncode
        self.stderr = stderr
        detail = (stderr or "").strip() or "\n".join((stdout or "").strip().splitlines()[-30:])
        super().__init__(f"terraform {command} failed (exit {returncode}):\n{detail}")


@dataclass(frozen=True)
class PlanResult:
    changes: bool
    output: str
    # The saved plan (``-out``): applying it applies exactly what was shown, nothing re-planned.
    plan_file: Path | None = None


class TerraformStack:
    """One Terraform root module (e.g. terraform/envs/prod) driven through python-terraform."""

    def __init__(
        self,
        working_dir: Path | str,
        *,
        var_files: Sequence[Path | str] = (),
        terraform_bin: str = "terraform",
    ) -> None:
        self.working_dir = Path(working_dir)
        self.var_files = [str(Path(f).resolve()) for f in var_files]
        self.terraform_bin = terraform_bin
        # working_dir= only: a positional dir is taken for a plan file on Terraform >= 0.15.
        self._tf = Terraform(working_dir=str(self.working_dir), terraform_bin_path=terraform_bin)

    def init(self, backend_file: Path | None = None) -> str:
        """``terraform init -reconfigure``, the backend settings read from ``backend_file``."""
        rc, out, err = self._tf.cmd(
            "init",
            reconfigure=IsFlagged,
            input=False,
            no_color=IsFlagged,
            backend_config=str(Path(backend_file).resolve()) if backend_file else None,
        )
        return self._checked("init", rc, out, err)

    def plan(
        self,
        variables: Mapping[str, Any] | None = None,
        *,
        out: Path | None = None,
        targets: Sequence[str] = (),
    ) -> PlanResult:
        """``terraform plan``; ``changes`` is True when Terraform would change anything (exit 2).

        With ``out`` the plan is saved there, for :meth:`apply_plan` to apply exactly it.
        """
        with self._var_files(variables) as var_files:
            rc, out_text, err = self._tf.plan(
                detailed_exitcode=IsFlagged,
                var=None,
                var_file=var_files,
                out=str(out) if out else None,
                target=list(targets) or None,
            )
        if rc == 2:
            return PlanResult(changes=True, output=out_text or "", plan_file=out)
        return PlanResult(changes=False, output=self._checked("plan", rc, out_text, err), plan_file=out)

    def apply_plan(self, plan_file: Path) -> str:
        """``terraform apply <saved plan>``: exactly the changes that plan showed, or an error if
        the state moved since (Terraform refuses a stale plan)."""
        rc, out, err = self._tf.cmd("apply", str(plan_file), input=False, no_color=IsFlagged)
        return self._checked("apply", rc, out, err)

    def state_addresses(self) -> set[str]:
        """The managed resources in the state (``terraform state list`` minus data sources)."""
        rc, out, err = self._tf.cmd("state list", no_color=IsFlagged)
        if rc != 0 and "No state file was found" in (err or ""):
            return set()
        listed = (line.strip() for line in self._checked("state list", rc, out, err).splitlines())
        return {a for a in listed if a and not a.startswith("data.") and ".data." not in a}

    def import_resource(
        self, address: str, resource_id: str, variables: Mapping[str, Any] | None = None
    ) -> str:
        """``terraform import <address> <id>``: adopt an existing resource into the state."""
        with self._var_files(variables) as var_files:
            rc, out, err = self._tf.cmd(
                "import", address, resource_id, input=False, no_color=IsFlagged, var_file=var_files
            )
        return self._checked(f"import {address}", rc, out, err)

    def variable(self, name: str, variables: Mapping[str, Any] | None = None) -> Any:
        """The value Terraform gives variable ``name`` from the stack's tfvars, the var files and
        ``variables``, validations included (a bad value fails here as it would in a plan)."""
        with (
            tempfile.TemporaryDirectory(prefix="deploy-vars-") as tmp,
            self._var_files(variables) as var_files,
        ):
            shutil.copy(self.working_dir / "variables.tf", tmp)
            for auto in ("terraform.tfvars", "terraform.tfvars.json", "*.auto.tfvars", "*.auto.tfvars.json"):
                for found in self.working_dir.glob(auto):
                    shutil.copy(found, tmp)
            done = subprocess.run(
                [self.terraform_bin, "console", *(f"-var-file={f}" for f in var_files or [])],
                cwd=tmp,
                input=f"jsonencode(var.{name})\n",
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
            )
        text = self._checked(f"console (var.{name})", done.returncode, done.stdout, done.stderr).strip()
        # console prints the HCL string literal holding the JSON: decode both layers.
        return json.loads(json.loads(text))

    def destroy(self, variables: Mapping[str, Any] | None = None) -> str:
        with self._var_files(variables) as var_files:
            rc, out, err = self._tf.destroy(
                force=IsNotFlagged, auto_approve=True, var=None, var_file=var_files
            )
        return self._checked("destroy", rc, out, err)

    def outputs(self) -> dict[str, Any]:
        """The root module's outputs as plain values (``terraform output -json``)."""
        rc, out, err = self._tf.cmd("output", json=IsFlagged)
        text = self._checked("output", rc, out, err)
        return {name: item.get("value") for name, item in json.loads(text or "{}").items()}

    @contextmanager
    def _var_files(self, variables: Mapping[str, Any] | None) -> Iterator[list[str] | None]:
        """The user's var files, then ours: Terraform lets the last -var-file win."""
        if not variables:
            yield list(self.var_files) or None
            return
        with tempfile.TemporaryDirectory(prefix="deploy-tfvars-") as tmp:
            ours = Path(tmp) / "deploy.tfvars.json"
            ours.write_text(json.dumps(dict(variables)))
            yield [*self.var_files, str(ours)]

    def _checked(self, command: str, rc: int, out: str | None, err: str | None) -> str:
        if rc != 0:
            raise TerraformError(command, rc, err or "", out or "")
        logger.debug("terraform {command} ok in {dir}", command=command, dir=str(self.working_dir))
        return out or ""
