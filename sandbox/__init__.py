"""Local sandbox of the QBO Invoice Processor: moto (Secrets Manager, DynamoDB, CloudWatch) and
stand-ins of QBO, Microsoft identity + Graph, ClickUp and Robocorp on 127.0.0.1.

    from sandbox import Sandbox
    with Sandbox(tmp_path, scenario="sandbox/scenarios/default.json") as sandbox:
        env = sandbox.env            # the environment a job needs
        ...
        sandbox.state()              # invoices, mails, files, ledger, secret versions, ...

See sandbox/README.md for the CLI (`python -m sandbox up|down|reset|show|faults|env`) and the
scenario format.
"""

from typing import TYPE_CHECKING, Any

from sandbox.common import SandboxError, default_state_dir
from sandbox.faults import SERVICES, FaultConfig
from sandbox.scenario import DEFAULT_SCENARIO, ScenarioError

if TYPE_CHECKING:
    from sandbox.core import Sandbox


def __getattr__(name: str) -> Any:
    # The servers (flask, moto) load only when a Sandbox is needed, so the CLI starts fast.
    if name == "Sandbox":
        from sandbox.core import Sandbox

        return Sandbox
    raise AttributeError(name)


__all__ = [
    "DEFAULT_SCENARIO",
    "SERVICES",
    "FaultConfig",
    "Sandbox",
    "SandboxError",
    "ScenarioError",
    "default_state_dir",
]
