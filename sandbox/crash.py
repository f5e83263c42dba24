"""Kill a job right after its N-th external call: ``python -m sandbox.crash --after N -- <job args>``.

The wrapper patches ``urllib3.connectionpool.HTTPConnectionPool.urlopen`` (used by requests, msal
and botocore alike), counts every call that got an answer from a server, and calls ``os._exit(137)``
(what a SIGKILL looks like) as soon as the N-th one returns: the server did the work, the job never
saw the answer. Nested urlopen calls (urllib3's own retries) count once. ``--match`` counts only
calls whose "METHOD URL [operation]" matches a regex (for example ``--match 'POST .*/invoice'``
or ``--match 'DynamoDB_20120810.PutItem'``: every AWS call POSTs to the same URL).

Then it runs ``invoice-processor <job args>`` in this process (or ``--target module:function`` /
``--target path/to/script.py`` for tests), so no test-only code lives in the job.
"""

from __future__ import annotations

import argparse
import os
import re
import runpy
import sys
import threading
from collections.abc import Callable
from importlib import import_module
from typing import Any

EXIT_CODE = 137


def hook_calls(on_call: Callable[[int, str], None]) -> None:
    """Call ``on_call(n, "METHOD URL [operation]")`` after every completed top-level urllib3 call
    (the n-th one): what the crash switch and the fault campaign count. AWS calls all POST to one
    URL, so their operation is appended (``[DynamoDB_20120810.PutItem]``, ``[PutMetricData]``)."""
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
        if depth == 0:  # only calls that got an answer; urllib3's own retries count once
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
    """An AWS call's operation: the JSON target header, or the query API's Action."""
    target = headers.get("X-Amz-Target") if hasattr(headers, "get") else None
    if target:
        return target.decode("ascii", "replace") if isinstance(target, bytes) else str(target)
    if isinstance(body, bytes | str):
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
        match = re.match(r"Action=(\w+)", text)
        return match.group(1) if match else ""
    return ""


def install(
    after: int,
    match: str | None = None,
    exit_code: int = EXIT_CODE,
    on_exit: Callable[[], None] | None = None,
) -> None:
    """Exit the process right after the ``after``-th call whose "METHOD URL [operation]" matches."""
    pattern = re.compile(match) if match else None
    lock, matched = threading.Lock(), [0]

    def on_call(number: int, call: str) -> None:
        if pattern is not None and not pattern.search(call):
            return
        with lock:
            matched[0] += 1
            reached = matched[0] >= after
        if reached:
            if on_exit is not None:
                on_exit()
            os.write(
                2,
                f"sandbox.crash: exiting with {exit_code} right after call {matched[0]} ({call})\n".encode(),
            )
            os._exit(exit_code)

    hook_calls(on_call)


def _run_target(target: str | None, args: list[str]) -> Any:
    if target and target.endswith(".py"):
        sys.argv = [target, *args]
        runpy.run_path(target, run_name="__main__")
        return 0
    module_name, _, function_name = (target or "integrations.cli:main").partition(":")
    sys.argv = ["invoice-processor", *args]
    function = getattr(import_module(module_name), function_name or "main")
    return function()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox.crash", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--after", type=int, required=True, help="exit right after this many completed external calls"
    )
    parser.add_argument("--match", help="count only calls whose 'METHOD URL [operation]' matches this regex")
    parser.add_argument("--exit-code", type=int, default=EXIT_CODE)
    parser.add_argument("--target", help="module:function or script.py to run instead of invoice-processor")
    parser.add_argument("job_args", nargs=argparse.REMAINDER, help="-- then the invoice-processor arguments")
    args = parser.parse_args(argv)
    if args.after < 1:
        parser.error("--after must be at least 1")
    job_args = args.job_args[1:] if args.job_args[:1] == ["--"] else args.job_args
    if job_args[:1] == ["invoice-processor"]:
        job_args = job_args[1:]
    install(args.after, args.match, args.exit_code)
    result = _run_target(args.target, job_args)
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
