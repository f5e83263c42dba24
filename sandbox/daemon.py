"""The sandbox as a background process (``python -m sandbox up``) and the client that talks to it.

``up`` starts ``python -m sandbox _serve`` detached (own session, output to ``sandbox.log``), waits
until its control endpoint answers and returns the env. ``down`` asks it to shut down (it snapshots
AWS first) and falls back to SIGTERM on the recorded pid, which it checks is really our daemon.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from sandbox.common import REPO_ROOT, SandboxError
from sandbox.store import read_json, write_atomic

PID_FILE = "sandbox.pid"
LOG_FILE = "sandbox.log"


def _pid(state_dir: Path) -> int | None:
    try:
        pid = int((state_dir / PID_FILE).read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except FileNotFoundError:
        try:
            os.kill(pid, 0)
        except OSError:
            return None
        return pid  # no /proc (not Linux): trust the pid file
    return pid if b"sandbox" in b" ".join(cmdline) and b"_serve" in cmdline else None


def control(state_dir: Path, method: str, path: str, payload: Any = None, timeout: float = 30.0) -> Any:
    """Call the running daemon's control endpoint; raise SandboxError when it is not running."""
    import requests  # here, not at the top: `python -m sandbox env` must run on a bare python3

    env = read_json(state_dir / "env.json", {}) or {}
    url = env.get("SANDBOX_CONTROL_URL")
    token_file = state_dir / "control.token"
    if not url or not token_file.exists():
        raise SandboxError(f"the sandbox in {state_dir} is not running (start it with `make sandbox-up`)")
    try:
        response = requests.request(
            method,
            f"{url}{path}",
            json=payload,
            headers={"X-Sandbox-Token": token_file.read_text().strip()},
            verify=str(state_dir / "ca.pem"),
            timeout=timeout,
        )
    except requests.RequestException:
        raise SandboxError(
            f"the sandbox in {state_dir} is not running (start it with `make sandbox-up`)"
        ) from None
    if response.status_code >= 400:
        raise SandboxError(
            f"the sandbox refused {method} {path}: {response.status_code} {response.text.strip()}"
        )
    return response.json()


def recorded_env(state_dir: Path) -> dict[str, str] | None:
    """The env the running daemon recorded, read with the standard library only (so
    ``eval "$(python3 -m sandbox env)"`` works outside the virtualenv), or None when it is not running."""
    if _pid(state_dir) is None:
        return None
    return read_json(state_dir / "env.json", None) or None


def status(state_dir: Path) -> dict[str, str] | None:
    """The env of the running daemon, or None."""
    if _pid(state_dir) is None:
        return None
    try:
        health = control(state_dir, "GET", "/health", timeout=3)
        if Path(health.get("state_dir", "")) != state_dir:
            return None
        return control(state_dir, "GET", "/env", timeout=3)
    except SandboxError:
        return None


def up(
    state_dir: Path, *, scenario: str | None = None, reset: bool = False, timeout: float = 30.0
) -> dict[str, str]:
    """Start the daemon unless it runs; with ``reset`` wipe and seed ``scenario`` first."""
    state_dir.mkdir(parents=True, exist_ok=True)
    running = status(state_dir)
    if running is not None:
        if reset:
            control(state_dir, "POST", "/reset", {"scenario_path": scenario}, timeout=120)
        return running
    command = [sys.executable, "-m", "sandbox", "_serve", "--state-dir", str(state_dir)]
    if reset:
        command.append("--reset")
    if scenario:
        command += ["--scenario", scenario]
    environment = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
    }
    (state_dir / PID_FILE).unlink(missing_ok=True)
    with open(state_dir / LOG_FILE, "ab") as log:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=str(REPO_ROOT),
            env=environment,
            start_new_session=True,
            close_fds=True,
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SandboxError(
                f"the sandbox did not start (exit {process.returncode}); see {state_dir / LOG_FILE}:\n{_tail(state_dir)}"
            )
        if (state_dir / PID_FILE).exists():
            env = status(state_dir)
            if env is not None:
                return env
        time.sleep(0.05)
    process.terminate()
    raise SandboxError(
        f"the sandbox did not become healthy within {timeout:.0f}s; see {state_dir / LOG_FILE}:\n{_tail(state_dir)}"
    )


def down(state_dir: Path, timeout: float = 20.0) -> bool:
    """Stop the daemon; False when none was running."""
    pid = _pid(state_dir)
    if pid is None:
        (state_dir / PID_FILE).unlink(missing_ok=True)
        return False
    try:
        control(state_dir, "POST", "/shutdown", timeout=5)
    except SandboxError:
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _pid(state_dir) is None or not _alive(pid):
            return True
        time.sleep(0.05)
    os.kill(pid, signal.SIGTERM)
    time.sleep(1)
    if _alive(pid):
        os.kill(pid, signal.SIGKILL)
    return True


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except (FileNotFoundError, IndexError):
        return True
    return state != "Z"


def _tail(state_dir: Path, lines: int = 25) -> str:
    try:
        return "\n".join((state_dir / LOG_FILE).read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


def serve(state_dir: Path, *, scenario: str | None, reset: bool) -> int:
    """The daemon's main: run the sandbox until /shutdown or SIGTERM, then stop it cleanly."""
    from loguru import logger

    from sandbox.core import Sandbox

    logger.remove()
    logger.add(sys.stderr, level=os.environ.get("SANDBOX_LOG_LEVEL", "INFO"))
    done = threading.Event()
    sandbox = Sandbox(state_dir, scenario=scenario)
    sandbox.on_shutdown = done.set
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    if reset:
        (state_dir / "seed.json").unlink(missing_ok=True)
    try:
        sandbox.start()
    except Exception as exc:  # noqa: BLE001 - report to the log, the parent shows it
        logger.exception("sandbox failed to start: {error}", error=str(exc))
        return 1
    write_atomic(state_dir / PID_FILE, str(os.getpid()))
    logger.info("sandbox ready (pid {pid})", pid=os.getpid())
    try:
        while not done.wait(0.5):
            pass
    finally:
        logger.info("sandbox stopping")
        sandbox.stop()
        if _pid(state_dir) == os.getpid():
            (state_dir / PID_FILE).unlink(missing_ok=True)
        logger.info("sandbox stopped")
    return 0
