"""Run ``invoice-processor`` in this process with the campaign's hooks:
``python -m sandbox.campaign.driver [--record FILE] [--sigterm-after N --signal-file F] -- <job args>``.

* one worker when ``CREATE_WORKERS``/``SEND_WORKERS`` ask for it, also on code that still has a
  ``WORKERS`` constant (so call k of a sweep is the same call every time);
* ``--record``: append "METHOD URL" of every completed external call (urllib3, so requests, MSAL
  and botocore alike; urllib3's own retries count once), to count a clean run's crash points;
* ``--sigterm-after N``: send this process SIGTERM right after its N-th call (what ECS does on a
  stop), writing the moment to ``--signal-file``. The job decides what happens next.

``job_main`` is also the ``--target`` the crash switch runs, so crashes get the same worker count.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Callable
from importlib import import_module
from typing import Any

WORKER_SETTINGS = {"create_invoices.job": "CREATE_WORKERS", "send_invoices.job": "SEND_WORKERS"}


def apply_worker_settings() -> None:
    """Set a job module's ``WORKERS`` constant from its env var (no-op once the job reads it itself)."""
    for module_name, variable in WORKER_SETTINGS.items():
        value = os.environ.get(variable)
        if not value:
            continue
        try:
            module = import_module(module_name)
        except ImportError:
            continue
        if hasattr(module, "WORKERS"):
            module.WORKERS = int(value)


def hook_calls(on_call: Callable[[int, str], None]) -> None:
    """Call ``on_call(n, "METHOD URL")`` after every completed top-level urllib3 call."""
    import urllib3.connectionpool

    pool_class = urllib3.connectionpool.HTTPConnectionPool
    original = pool_class.urlopen
    lock, local, counter = threading.Lock(), threading.local(), [0]

    def urlopen(self: Any, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        depth = getattr(local, "depth", 0)
        local.depth = depth + 1
        try:
            response = original(self, method, url, *args, **kwargs)
        finally:
            local.depth = depth
        if depth == 0:  # counted like the crash switch: only calls that got an answer
            full = url if url.startswith("http") else f"{self.scheme}://{self.host}:{self.port}{url}"
            operation = _aws_operation(kwargs.get("headers"), kwargs.get("body"))
            full += f" [{operation}]" if operation else ""
            with lock:
                counter[0] += 1
                number = counter[0]
            on_call(number, f"{method} {full}")
        return response

    pool_class.urlopen = urlopen  # type: ignore[method-assign]


def _aws_operation(headers: Any, body: Any) -> str:
    """An AWS call's operation (all go to "POST /"): the JSON target header or the query Action."""
    target = (headers or {}).get("X-Amz-Target") if hasattr(headers, "get") else None
    if target:
        text = target.decode("ascii", "replace") if isinstance(target, bytes) else str(target)
        return text.split(".")[-1]
    if isinstance(body, bytes | str):
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
        match = re.match(r"Action=(\w+)", text)
        return match.group(1) if match else ""
    return ""


def job_main() -> int:
    """``invoice-processor`` with the worker settings applied (argv as the entrypoint's)."""
    apply_worker_settings()
    from integrations.cli import run

    return run(sys.argv[1:], os.environ)


def _recorder(path: str) -> Callable[[int, str], None]:
    def record(number: int, call: str) -> None:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(f"{number}\t{call}\n")

    return record


def _terminator(after: int, signal_file: str | None) -> Callable[[int, str], None]:
    def terminate(number: int, call: str) -> None:
        if number != after:
            return
        if signal_file:
            with open(signal_file, "w", encoding="utf-8") as handle:
                handle.write(f"{time.time()}\t{call}\n")
        os.kill(os.getpid(), signal.SIGTERM)

    return terminate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sandbox.campaign.driver", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--record", help="append every completed external call to this file")
    parser.add_argument("--sigterm-after", type=int, help="send SIGTERM to this process after this call")
    parser.add_argument("--signal-file", help="where to write the moment of the SIGTERM")
    parser.add_argument("job_args", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    job_args = args.job_args[1:] if args.job_args[:1] == ["--"] else args.job_args
    if args.record:
        hook_calls(_recorder(args.record))
    if args.sigterm_after:
        hook_calls(_terminator(args.sigterm_after, args.signal_file))
    sys.argv = ["invoice-processor", *job_args]
    return job_main()


if __name__ == "__main__":
    sys.exit(main())
