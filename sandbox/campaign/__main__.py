"""``make faults`` = ``python -m sandbox.campaign``: run the fault campaign, print the table and
the last line, exit 0 only when nothing went wrong.

Environment (or the options): FAULTS_WORKERS (parallel scenarios, default 2), FAULTS_JSON (also
write the report there), FAULTS_SAMPLE (N scenarios per family, evenly spread: a quick subset),
FAULTS_FAMILIES (comma-separated family names), FAULTS_KEEP (keep the work directory),
FAULTS_JOB_ENV ("NAME=value ..." for every job run, e.g. a short heartbeat TTL).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from sandbox.campaign import families, report
from sandbox.campaign.run import run_campaign


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox.campaign", description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=int(os.environ.get("FAULTS_WORKERS") or 2))
    parser.add_argument(
        "--json", default=os.environ.get("FAULTS_JSON") or None, help="write the report here too"
    )
    parser.add_argument("--sample", type=int, default=int(os.environ.get("FAULTS_SAMPLE") or 0) or None)
    parser.add_argument(
        "--families",
        default=os.environ.get("FAULTS_FAMILIES") or "",
        help=f"comma-separated, of: {', '.join(families.FAMILIES)}",
    )
    parser.add_argument("--keep", action="store_true", default=bool(os.environ.get("FAULTS_KEEP")))
    args = parser.parse_args(argv)
    chosen = [name.strip() for name in args.families.split(",") if name.strip()] or None
    unknown = sorted(set(chosen or []) - set(families.FAMILIES))
    if unknown:
        parser.error(f"unknown families: {', '.join(unknown)}")
    root = Path(tempfile.mkdtemp(prefix="invoice-faults-"))
    try:
        result = run_campaign(root, workers=max(1, args.workers), sample=args.sample, chosen=chosen)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    print(report.render(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1, default=str))
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
