"""Liveness and graceful stop: a live run's claims are renewed and waited for, a dead run's are
taken over at once, and a stop request leaves unfinished work to the next run."""

from __future__ import annotations

import threading
import time

from integrations.aws import Ledger
from integrations.claims import Claims
from integrations.lifecycle import StopSignal, run_all
from tests.unit.jobs.fakes import Clock


def test_a_dead_runs_claim_is_taken_over_with_its_requestid(ledger: Ledger, clock: Clock) -> None:
    ledger.claim("k", "dead-run", "req-original", 1)
    clock.advance(2)  # it stopped renewing

    acquired, entry = Claims(ledger, "next-run", 1).take("k", "req-new")

    assert acquired and entry.request_id == "req-original" and entry.previous_run_id == "dead-run"


def test_a_live_runs_claim_is_waited_for_and_its_result_taken(ledger: Ledger) -> None:
    ledger.claim("k", "live-run", "req", 1)
    threading.Timer(0.3, lambda: ledger.record("k", "live-run", "created", {"invoice_id": "7"})).start()

    started = time.monotonic()
    acquired, entry = Claims(ledger, "second-run", 1).take("k", "req")

    assert not acquired and entry.status == "created" and entry.attributes["invoice_id"] == "7"
    assert time.monotonic() - started < 1.0


def test_a_live_run_that_keeps_renewing_is_never_taken_over(ledger: Ledger) -> None:
    with Claims(ledger, "live-run", 0.6) as holder:
        assert holder.take("k", "req")[0]
        started = time.monotonic()
        acquired, entry = Claims(ledger, "second-run", 0.6).take("k", "req")
        waited = time.monotonic() - started
    assert not acquired and entry.run_id == "live-run" and entry.status == "claimed"
    assert 0.8 <= waited < 2.0  # one and a half leases, then it gives up


def test_a_stop_request_ends_the_wait(ledger: Ledger) -> None:
    ledger.claim("k", "live-run", "req", 60)
    stop = StopSignal()
    threading.Timer(0.2, stop.request, args=("SIGTERM",)).start()
    started = time.monotonic()
    acquired, _ = Claims(ledger, "second-run", 60, stop).take("k", "req")
    assert not acquired and time.monotonic() - started < 1.5


def test_run_all_keeps_order_and_abandons_work_after_the_grace_period() -> None:
    stop = StopSignal()
    release = threading.Event()

    zero_done = threading.Event()

    def work(item: int) -> str:
        if item == 0:
            zero_done.set()
        if item == 1:
            zero_done.wait(5)
            stop.request("SIGTERM")
            release.wait(5)  # a call that hangs past the deadline
        if item == 2:
            stop.sleep(5)  # still running when the stop comes, and finishes inside the grace period
        return f"done {item}"

    started = time.monotonic()
    results = run_all(
        [0, 1, 2, 3],
        work,
        workers=2,
        stop=stop,
        grace_seconds=0.3,
        unfinished=lambda item, begun: f"{'abandoned' if begun else 'not started'} {item}",
    )
    release.set()
    assert time.monotonic() - started < 2
    assert results[0] == "done 0" and results[1] == "abandoned 1"
    assert results[2] in ("done 2", "not started 2") and results[3] == "not started 3"
