"""How a run stops: SIGTERM/SIGINT become a stop request that the jobs honour between items.

ECS sends SIGTERM and kills the task ``stopTimeout`` seconds later. On a stop request a run takes
no new client or invoice, gives the ones in flight ``grace_seconds`` to finish, then abandons them
(their ledger claims stop being renewed, so the next run takes them over with the same QBO
requestid), writes its summary and mail, and exits 1 (DESIGN §2, §7).
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from typing import TypeVar

from loguru import logger

Item = TypeVar("Item")
Result = TypeVar("Result")


class StopSignal:
    """A stop request shared by a run's threads."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason = ""

    def request(self, reason: str) -> None:
        if not self._event.is_set():
            self.reason = reason
            logger.warning(
                "stop requested ({reason}): finishing what is in flight, starting nothing new", reason=reason
            )
        self._event.set()

    @property
    def requested(self) -> bool:
        return self._event.is_set()

    def sleep(self, seconds: float) -> bool:
        """Sleep ``seconds`` unless a stop is requested first; True when it was."""
        return self._event.wait(seconds)


_received: list[str] = []  # signals this process got: its exit must not wait for abandoned work


def signal_received() -> bool:
    return bool(_received)


@contextmanager
def stop_on_signals(stop: StopSignal) -> Iterator[None]:
    """Turn SIGTERM and SIGINT into ``stop.request`` while the block runs (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handle(signum: int, _frame: object) -> None:
        name = signal.Signals(signum).name
        _received.append(name)
        stop.request(name)

    previous = {}
    for number in (signal.SIGTERM, signal.SIGINT):
        previous[number] = signal.signal(number, handle)
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def run_all(
    items: Sequence[Item],
    work: Callable[[Item], Result],
    *,
    workers: int,
    stop: StopSignal,
    grace_seconds: float,
    unfinished: Callable[[Item, bool], Result],
    name: str = "worker",
) -> list[Result]:
    """``work(item)`` for every item on ``workers`` threads, results in the order of ``items``.

    After a stop request nothing new starts; work in flight gets ``grace_seconds``, then it is
    abandoned (its thread is left to the process exit). ``unfinished(item, started)`` stands in for
    the result of every item that did not finish."""
    pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix=name)
    started: set[int] = set()
    lock = threading.Lock()

    def guarded(index: int, item: Item) -> Result:
        with lock:
            if stop.requested:
                raise _NotStarted
            started.add(index)
        return work(item)

    futures: dict[Future[Result], int] = {pool.submit(guarded, i, item): i for i, item in enumerate(items)}
    results: dict[int, Result] = {}
    deadline: float | None = None
    pending = set(futures)
    try:
        while pending:
            if stop.requested and deadline is None:
                deadline = time.monotonic() + grace_seconds
            timeout = 0.2 if deadline is None else max(0.0, deadline - time.monotonic())
            done, pending = wait(pending, timeout=timeout, return_when=FIRST_COMPLETED)
            for future in done:
                index = futures[future]
                try:
                    results[index] = future.result()
                except _NotStarted:
                    results[index] = unfinished(items[index], False)
            if deadline is not None and time.monotonic() >= deadline:
                break
    finally:
        pool.shutdown(wait=not stop.requested, cancel_futures=True)
    for future in pending:
        index = futures[future]
        results[index] = unfinished(items[index], index in started)
    return [results[i] for i in range(len(items))]


class _NotStarted(Exception):
    """An item whose turn came after the stop request."""
