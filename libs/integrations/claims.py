"""A run's ledger claims: taken once, kept alive by a heartbeat, recorded when the work is done.

Liveness (DESIGN §7): a claim is alive while its lease is renewed. This run renews the lease of
every claim it holds from its own thread, every third of the lease, so long waits (a 120 s QBO
call, a 429 wait) never let it lapse. A run that dies stops renewing: within one lease (about a
minute) its claims are taken over by the next run, with the stored requestid, so QBO answers a
create that did happen with the original invoice. A claim held by a LIVE run is waited for (up to
one lease) and never taken: two live runs never both do the same work.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from loguru import logger

from integrations import errors
from integrations.aws import Ledger, LedgerEntry
from integrations.lifecycle import StopSignal


class Claims:
    def __init__(
        self,
        ledger: Ledger,
        run_id: str,
        lease_seconds: float,
        stop: StopSignal | None = None,
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ):
        self.ledger, self.run_id, self.lease_seconds = ledger, run_id, lease_seconds
        self.stop = stop or StopSignal()
        self._monotonic = monotonic
        self._held: set[str] = set()
        self._lock = threading.Lock()
        self._beating = threading.Event()
        self._thread: threading.Thread | None = None

    # -- the heartbeat

    def __enter__(self) -> Claims:
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat-{self.run_id}", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._beating.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _beat(self) -> None:
        interval = max(self.lease_seconds / 3, 0.2)
        while not self._beating.wait(interval):
            with self._lock:
                held = sorted(self._held)
            for key in held:
                try:
                    if not self.ledger.renew(key, self.run_id, self.lease_seconds):
                        logger.warning("ledger: claim {key} is no longer ours; not renewing it", key=key)
                        self._forget(key)
                except errors.ServiceError as exc:  # try again on the next beat; the lease has slack
                    logger.warning("ledger: could not renew claim {key}: {error}", key=key, error=str(exc))

    def _forget(self, key: str) -> None:
        with self._lock:
            self._held.discard(key)

    # -- claims

    def take(
        self, key: str, request_id: str, attributes: Mapping[str, Any] | None = None
    ) -> tuple[bool, LedgerEntry | None]:
        """Claim ``key``; a claim held by a live run is waited for, up to one lease.

        Returns (acquired, the entry as it is now): not acquired means another run finished the
        work (its status says how), or is still alive and doing it (status "claimed")."""
        deadline = self._monotonic() + self.lease_seconds * 1.5
        announced = False
        while True:
            acquired, entry = self.ledger.claim(key, self.run_id, request_id, self.lease_seconds, attributes)
            if acquired:
                with self._lock:
                    self._held.add(key)
                return True, entry
            if entry is None or entry.status != "claimed" or self._monotonic() >= deadline:
                return False, entry
            if not announced:
                logger.info(
                    "{key} is claimed by run {run}; waiting for it to finish or expire",
                    key=key,
                    run=entry.run_id,
                )
                announced = True
            if self.stop.sleep(min(2.0, self.lease_seconds / 6)):
                return False, entry

    def record(self, key: str, status: str, attributes: Mapping[str, Any] | None = None) -> None:
        """Store the outcome of a claim this run holds; a finished claim needs no more heartbeat."""
        self.ledger.record(key, self.run_id, status, attributes)
        if status != "claimed":
            self._forget(key)

    def note(self, key: str, attributes: Mapping[str, Any]) -> None:
        """Add to a claim this run still holds without finishing it (e.g. "about to mail")."""
        self.ledger.record(key, self.run_id, "claimed", attributes)
