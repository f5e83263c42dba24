"""`make bench` in small: the scaled scenario is sound and both jobs stay inside QBO's limits.

The bench runs the real entrypoint as separate processes against a private sandbox that answers
429 above 10 requests/s (as QBO does); with next to no latency the jobs run flat out into that
limit, so a client-side limiter that lets one request too many through shows up as a QBO 429.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from sandbox import bench
from sandbox.scenario import load

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("bench")]


def test_scaled_scenario_is_deterministic_and_gives_every_client_something_to_bill() -> None:
    first = bench.build_scenario(30, seed=5)
    again = bench.build_scenario(30, seed=5)
    size = bench.scenario_size(first)

    assert first == again
    assert load(first)["registry"] == first["registry"]  # seeds as it is
    assert size["clients"] == 30 and 30 <= size["workspaces"] <= 60
    assert 20 * 30 <= size["october_runs"] <= 60 * 30
    assert size["runs"] > 2.5 * size["october_runs"]  # months of history: several pages per workspace
    workspaces = {w["id"]: w for w in first["robocorp"]["workspaces"]}
    for item, customer in zip(first["registry"], first["qbo"]["customers"], strict=True):
        assert customer["DisplayName"].startswith(item["client_id"])
        assert customer["PrimaryEmailAddr"]["Address"]
        assert item["robocorp_workspace_ids"] and all(w in workspaces for w in item["robocorp_workspace_ids"])


def test_peak_counts_the_busiest_sliding_window() -> None:
    assert bench.peak([], 1.0) == 0
    assert bench.peak([0.0, 0.5, 0.99, 1.0, 1.5], 1.0) == 3  # (0.5, 1.5] holds 1.0 and 1.5 too, not 0.5
    assert bench.peak([0.0, 0.1, 0.2, 5.0], 60.0) == 4


def test_lower_bound_is_the_least_time_the_published_limits_allow() -> None:
    profile = bench.Profile()

    def calls(qbo: int = 0, clickup: int = 0) -> dict:
        return {"qbo": {"calls": qbo}, "clickup": {"calls": clickup}, "robocorp": {"calls": 5000}}

    assert bench.lower_bound_seconds(calls(), profile) == 0.0
    assert bench.lower_bound_seconds(calls(qbo=10), profile) == 0.0  # ten fit in one second
    assert bench.lower_bound_seconds(calls(qbo=11), profile) == 1.0
    assert bench.lower_bound_seconds(calls(qbo=504), profile) == 60.0  # 500/min binds, not 10/s (50 s)
    assert bench.lower_bound_seconds(calls(qbo=1002), profile) == 120.0
    assert bench.lower_bound_seconds(calls(qbo=44, clickup=201), profile) == 120.0  # ClickUp 100/min


def test_peak_in_flight_counts_calls_the_service_was_answering_at_once() -> None:
    def call(at: float, ms: float, service: str = "qbo") -> dict:
        return {"service": service, "time": datetime.fromtimestamp(at, UTC).isoformat(), "ms": ms}

    entries = [call(0.0, 500), call(0.1, 500), call(0.2, 100), call(0.6, 100), call(0.3, 900, "graph")]
    assert bench.peak_in_flight(entries, "qbo") == 3
    assert bench.peak_in_flight([call(0.0, 100), call(0.1, 100)], "qbo") == 1  # one ends as the next starts


def test_small_bench_meets_the_same_checks_as_the_big_one(tmp_path: Path) -> None:
    """About 40 clients flat out into QBO's limits: exactly once, 0 x 429, QBO peaks inside 10/s and
    500/min, memory, and a repeat run that reads nothing it does not need (ratios: 500 clients)."""
    results = bench.run_bench(40, profile=bench.FAST, seed=11, state_dir=tmp_path, say=lambda line: None)

    failed = [f"{c['check']}: {c['detail']}" for c in results["checks"] if not c["passed"]]
    assert not failed, "\n".join(failed) + "\n" + bench.render(results)
    assert results["passed"]
    create, send, again = results["runs"]
    assert (create["created"], send["sent"], again["created"]) == (40, 40, 0)
    assert [run["exit_code"] for run in results["runs"]] == [0, 0, 0]
    assert all(run["calls"].get("qbo", {}).get("429", 0) == 0 for run in results["runs"])
    assert results["all_runs"]["qbo_peak_1s"] <= 10 and results["all_runs"]["qbo_peak_60s"] <= 500
    assert create["qbo_calls_per_invoice"] < 2 and send["qbo_calls_per_invoice"] <= 2.5
    assert "robocorp" not in again["calls"] and again["calls_in_all"] <= 20
    for run in results["runs"]:
        assert {"lower_bound_seconds", "ratio", "max_rss_mb", "qbo_peak_in_flight"} <= set(run)
        assert 0 < run["max_rss_mb"] <= 150 and run["qbo_peak_in_flight"] <= 10
    assert create["lower_bound_seconds"] == 4.0 and create["ratio"] == round(create["seconds"] / 4.0, 2)
    assert "PASS  every client invoiced exactly once" in bench.render(results)
