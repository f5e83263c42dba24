"""Small shared pieces that the command line needs without loading the servers."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


class SandboxError(RuntimeError):
    """The sandbox cannot do what was asked (not running, already running, failed to start)."""


def default_state_dir() -> Path:
    """``$SANDBOX_DIR`` or ``.sandbox/`` in the repository root."""
    return Path(os.environ.get("SANDBOX_DIR") or REPO_ROOT / ".sandbox").resolve()
