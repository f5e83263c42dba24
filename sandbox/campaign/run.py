"""Run the campaign: the clean references, then every scenario on a pool of worker processes."""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from sandbox.campaign import families, report
from sandbox.campaign.counts import Outcome
from sandbox.campaign.scenarios import execute


def _quiet_worker() -> None:
    from loguru import logger

    logger.remove()  # the sandboxes' own log lines would drown the progress


def run_campaign(
    root: Path,
    *,
    workers: int = 2,
    sample: int | None = None,
    chosen: list[str] | None = None,
    say: Callable[[str], None] = lambda line: print(line, flush=True),
) -> dict[str, Any]:
    """Prepare the clean references, run every selected scenario, return the report dict."""
    began = time.monotonic()
    _quiet_worker()
    prepared = families.Prepared(root, say)
    specs = families.select(families.build(prepared), chosen, sample)
    say(f"{len(specs)} scenarios on {workers} worker(s)")
    outcomes: dict[int, Outcome] = {}
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_quiet_worker) as pool:
        futures = {pool.submit(execute, spec): index for index, spec in enumerate(specs)}
        for done, future in enumerate(as_completed(futures), start=1):
            outcome = outcomes[futures[future]] = future.result()
            mark = "FAULT" if outcome.counts.faulty() else "ok"
            say(f"[{done}/{len(specs)}] {mark:5} {outcome.name} ({outcome.seconds:.0f} s)")
    ordered = [outcomes[index] for index in sorted(outcomes)]
    return report.summarise(ordered, families.FAMILIES, time.monotonic() - began)
