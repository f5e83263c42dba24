"""Kill a job right after its N-th external call: ``python -m sandbox.crash --after N -- <job args>``.

The wrapper patches ``urllib3.connectionpool.HTTPConnectionPool.urlopen`` (used by requests, msal
and botocore alike), counts every call that got an answer from a server, and calls ``os._exit(137)``
(what a SIGKILL looks like) as soon as the N-th one returns: the server did the work, the job never
saw the answer. Nested urlopen calls (urllib3's own retries) count once. ``--match`` counts only
calls whose "METHOD URL [X-Amz-Target]" matches a regex (for example ``--match 'POST .*/invoice'``
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


def install(
    after: int,
    match: str | None = None,
    exit_code: int = EXIT_CODE,
    on_exit: Callable[[], None] | None = None,
) -> None:
    """Patch urllib3 so the process exits right after the ``after``-th matching call returns."""
    import urllib3.connectionpool

    pool_class = urllib3.connectionpool.HTTPConnectionPool
    original = pool_class.urlopen
    pattern = re.compile(match) if match else None
    lock = threading.Lock()
    local = threading.local()
    counter = {"calls": 0}

    def urlopen(self: Any, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        depth = getattr(local, "depth", 0)
        local.depth = depth + 1
        try:
            response = original(self, method, url, *args, **kwargs)
        finally:
            local.depth = depth
        if depth == 0:
            full = url if url.startswith("http") else f"{self.scheme}://{self.host}:{self.port}{url}"
            # AWS calls all POST to one URL: the operation is in X-Amz-Target ("DynamoDB_20120810.PutItem")
            headers = kwargs.get("headers") or (args[1] if len(args) > 1 else None) or {}
            target = headers.get("X-Amz-Target") or headers.get("x-amz-target") or ""
            if pattern is None or pattern.search(f"{method} {full} {target}".rstrip()):
                with lock:
                    counter["calls"] += 1
                    reached = counter["calls"] >= after
                if reached:
                    if on_exit is not None:
                        on_exit()
                    os.write(
                        2,
                        f"sandbox.crash: exiting with {exit_code} right after call {counter['calls']} ({method} {full})\n".encode(),
                    )
                    os._exit(exit_code)
        return response

    pool_class.urlopen = urlopen  # type: ignore[method-assign]


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
    parser.add_argument(
        "--match", help="count only calls whose 'METHOD URL [X-Amz-Target]' matches this regex"
    )
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
