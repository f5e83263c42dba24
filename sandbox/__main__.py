"""``python -m sandbox up|down|reset|show|env|faults|expire-tokens`` (see sandbox/README.md)."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from pathlib import Path

from sandbox import daemon
from sandbox.common import SandboxError, default_state_dir
from sandbox.faults import SERVICES, SPECIAL_OUTCOMES
from sandbox.scenario import ScenarioError
from sandbox.scenario import load as load_scenario
from sandbox.store import dumps


def _scenario_arg(value: str | None) -> str | None:
    value = value or os.environ.get("SANDBOX_SCENARIO") or None
    if value and value != "default":
        return str(Path(value).resolve())
    return None


def _print_env(env: dict[str, str]) -> None:
    for key in sorted(env):
        print(f"export {key}={shlex.quote(env[key])}")


def _started(env: dict[str, str], state_dir: Path) -> None:
    print(f"Sandbox running - state in {state_dir}")
    for key in (
        "QBO_BASE_URL",
        "MSGRAPH_AUTHORITY_URL",
        "MSGRAPH_BASE_URL",
        "CLICKUP_BASE_URL",
        "ROBOCORP_BASE_URL",
        "AWS_ENDPOINT_URL",
    ):
        print(f"  {key:<22} {env.get(key)}")
    print(
        f'The full job environment is in {state_dir / "env.json"}; in a shell: eval "$(python -m sandbox env)"'
    )
    print('Next: make run-local JOB=create ARGS="--period 2026-10"   then   make sandbox-show')


def main(argv: list[str] | None = None) -> int:  # noqa: C901 - one dispatcher
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--state-dir",
        type=Path,
        default=argparse.SUPPRESS,
        help="state directory (default .sandbox/ or $SANDBOX_DIR)",
    )
    parser = argparse.ArgumentParser(
        prog="python -m sandbox", description="Local sandbox of the QBO Invoice Processor.", parents=[common]
    )
    commands = parser.add_subparsers(dest="command", required=True)
    cmd = commands.add_parser(
        "up", parents=[common], help="start the sandbox (seeds the default scenario on first use)"
    )
    cmd.add_argument(
        "--scenario",
        help="scenario file used if the state dir was never seeded (default: $SANDBOX_SCENARIO or default)",
    )
    commands.add_parser("down", parents=[common], help="stop the sandbox (state stays on disk)")
    cmd = commands.add_parser(
        "reset", parents=[common], help="wipe the state and seed a scenario (starts the sandbox if needed)"
    )
    cmd.add_argument("--scenario", help="scenario file (default: $SANDBOX_SCENARIO or the default scenario)")
    cmd = commands.add_parser(
        "show", parents=[common], help="print the state: invoices, mails, files, ledger, secrets, faults"
    )
    cmd.add_argument("--json", action="store_true", help="machine-readable")
    cmd = commands.add_parser("env", parents=[common], help="print the job environment as shell exports")
    cmd.add_argument("--json", action="store_true", help="as JSON")
    cmd = commands.add_parser("faults", parents=[common], help="show or set fault injection for a service")
    cmd.add_argument("service", nargs="?", choices=SERVICES)
    cmd.add_argument("--latency-ms", type=float)
    cmd.add_argument("--rate-limit-per-sec", type=int)
    cmd.add_argument("--rate-limit-per-min", type=int)
    cmd.add_argument(
        "--max-concurrent", type=int, help="calls in flight before 429 (QBO default 10; 0 = off)"
    )
    cmd.add_argument("--window-seconds", type=float, help='length of the "per minute" window (default 60)')
    cmd.add_argument("--throttle-seconds", type=float, help="a throttle burst: every call gets 429 this long")
    cmd.add_argument(
        "--retry-after", type=int, help="seconds in Retry-After (default: until the window frees)"
    )
    cmd.add_argument(
        "--no-retry-after", action="store_true", help="send 429 without Retry-After (like real QBO)"
    )
    cmd.add_argument("--error-rate", type=float, help="share of calls answered 5xx")
    cmd.add_argument("--error-status", type=int, help="the 5xx to use (default 500/502/503 at random)")
    cmd.add_argument("--timeout-rate", type=float, help="share of calls that do the work, then stall")
    cmd.add_argument("--timeout-seconds", type=float, help="how long a timeout stalls (default 65)")
    cmd.add_argument("--drop-rate", type=float, help="share of calls whose connection is dropped")
    cmd.add_argument("--seed", type=int, help="random seed (repeatable fault patterns)")
    cmd.add_argument("--fail-next", type=int, metavar="N", help="fail the next N calls deterministically")
    cmd.add_argument(
        "--status",
        default="503",
        help=f"for --fail-next: an HTTP status or one of {', '.join(SPECIAL_OUTCOMES)}",
    )
    cmd.add_argument(
        "--match", help="for --fail-next: only calls whose 'METHOD /path?query' matches this regex"
    )
    cmd.add_argument(
        "--clear", action="store_true", help="remove the faults of the service (all services without one)"
    )
    cmd = commands.add_parser(
        "expire-tokens",
        parents=[common],
        help="invalidate the access tokens of qbo or graph (next call: 401)",
    )
    cmd.add_argument("service", choices=("qbo", "graph"))
    cmd = commands.add_parser("_serve", parents=[common], help=argparse.SUPPRESS)
    cmd.add_argument("--scenario")
    cmd.add_argument("--reset", action="store_true")

    args = parser.parse_args(argv)
    state_dir = Path(getattr(args, "state_dir", None) or default_state_dir()).resolve()
    try:
        if args.command == "_serve":
            return daemon.serve(state_dir, scenario=args.scenario, reset=args.reset)
        if args.command == "up":
            _started(daemon.up(state_dir, scenario=_scenario_arg(args.scenario)), state_dir)
        elif args.command == "down":
            print("Sandbox stopped." if daemon.down(state_dir) else "Sandbox was not running.")
        elif args.command == "reset":
            scenario = _scenario_arg(args.scenario)
            load_scenario(scenario)  # a missing or invalid scenario stops here, before anything is wiped
            env = daemon.up(state_dir, scenario=scenario, reset=True, timeout=120)
            print(f"Sandbox reset and seeded with {scenario or 'the default scenario'}.")
            _started(env, state_dir)
        elif args.command == "show":
            from sandbox.report import format_state

            env = daemon.status(state_dir)
            if env is not None:
                state = daemon.control(state_dir, "GET", "/state")
            else:
                from sandbox.core import Sandbox

                state = Sandbox(state_dir).state()
            print(
                dumps(state, indent=1) if args.json else format_state(state, env),
                end="" if not args.json else "\n",
            )
        elif args.command == "env":
            env = daemon.recorded_env(state_dir)
            if env is None:
                raise SandboxError(
                    f"the sandbox in {state_dir} is not running (start it with `make sandbox-up`)"
                )
            print(json.dumps(env, indent=1)) if args.json else _print_env(env)
        elif args.command == "faults":
            print(dumps(_faults(state_dir, args), indent=1))
        elif args.command == "expire-tokens":
            daemon.control(state_dir, "POST", f"/expire-tokens/{args.service}")
            print(f"All {args.service} access tokens are now invalid.")
    except (SandboxError, ScenarioError) as exc:
        print(f"sandbox: {exc}", file=sys.stderr)
        return 1
    return 0


def _faults(state_dir: Path, args: argparse.Namespace) -> object:
    if args.clear:
        return daemon.control(state_dir, "DELETE", f"/faults/{args.service}" if args.service else "/faults")
    names = (
        "latency_ms",
        "rate_limit_per_sec",
        "rate_limit_per_min",
        "max_concurrent",
        "window_seconds",
        "throttle_seconds",
        "retry_after",
        "error_rate",
        "error_status",
        "timeout_rate",
        "timeout_seconds",
        "drop_rate",
        "seed",
    )
    settings = {name: getattr(args, name) for name in names if getattr(args, name) is not None}
    if args.no_retry_after:
        settings["send_retry_after"] = False
    if args.service is None:
        if settings or args.fail_next:
            raise SandboxError("name the service: python -m sandbox faults qbo --error-rate 0.2")
        return daemon.control(state_dir, "GET", "/faults")
    if args.fail_next:
        payload: dict[str, object] = {
            "fail_next": args.fail_next,
            "status": args.status,
            "match": args.match,
            **settings,
        }
        return daemon.control(state_dir, "POST", f"/faults/{args.service}", payload)
    if not settings:
        return daemon.control(state_dir, "GET", "/faults").get(args.service, {})
    return daemon.control(state_dir, "POST", f"/faults/{args.service}", settings)


if __name__ == "__main__":
    sys.exit(main())
