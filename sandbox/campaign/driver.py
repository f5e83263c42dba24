"""Run ``invoice-processor`` in this process with the campaign's hooks:
``python -m sandbox.campaign.driver [--record FILE] [--sigterm-after N --signal-file F] -- <job args>``.

* sweeps set ``CREATE_WORKERS``/``SEND_WORKERS`` to 1 (the jobs read them), so call k of a sweep
  is the same call every time;
* ``--record``: append "METHOD URL" of every completed external call (urllib3, so requests, MSAL
  and botocore alike; urllib3's own retries count once), to count a clean run's crash points;
* ``--sigterm-after N``: send this process SIGTERM right after its N-th call (what ECS does on a
  stop), writing the moment to ``--signal-file``. The job decides what happens next.

``job_main`` is also the ``--target`` the crash switch runs.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from collections.abc import Callable

from sandbox.crash import hook_calls


def job_main() -> int:
    """``invoice-processor`` (argv as the entrypoint's); the jobs read CREATE_WORKERS/SEND_WORKERS."""
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
