"""The one place that talks to Terraform, through python-terraform, with its workarounds.

python-terraform 0.10.1 predates Terraform 0.15, and several of its defaults break on 1.x (each seen
on Terraform 1.11 here; see the offline-infra-checks reference, section 3):

* ``apply()`` sends ``-auto-approve=false`` and dies on the approval prompt (``error asking for
  approval: EOF``) -> always ``apply(skip_plan=True)``, which sends ``-auto-approve=true``.
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
"""

from __future__ import annotations

import json
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
        # working_dir= only: a positional dir is taken for a plan file on Terraform >= 0.15.
        self._tf = Terraform(working_dir=str(self.working_dir), terraform_bin_path=terraform_bin)

    def init(self, backend_config: Mapping[str, str] | None = None) -> str:
        """``terraform init`` (with ``-reconfigure``); backend settings such as bucket/key/region."""
        rc, out, err = self._tf.init(
            backend_config=dict(backend_config) if backend_config else None,
            var=None,
            var_file=None,
        )
        return self._checked("init", rc, out, err)

    def plan(self, variables: Mapping[str, Any] | None = None) -> PlanResult:
        """``terraform plan``; ``changes`` is True when Terraform would change anything (exit 2)."""
        with self._var_files(variables) as var_files:
            rc, out, err = self._tf.plan(detailed_exitcode=IsFlagged, var=None, var_file=var_files)
        if rc == 2:
            return PlanResult(changes=True, output=out or "")
        return PlanResult(changes=False, output=self._checked("plan", rc, out, err))

    def apply(self, variables: Mapping[str, Any] | None = None, targets: Sequence[str] = ()) -> str:
        """``terraform apply -auto-approve``; ``targets`` limits it (used to bootstrap the registry)."""
        with self._var_files(variables) as var_files:
            rc, out, err = self._tf.apply(
                skip_plan=True, var=None, var_file=var_files, target=list(targets) or None
            )
        return self._checked("apply", rc, out, err)

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
