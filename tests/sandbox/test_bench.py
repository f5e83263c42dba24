"""`make bench` in small: the scaled scenario is sound and both jobs stay inside QBO's limits.

The bench runs the real entrypoint as separate processes against a private sandbox that answers
429 above 10 requests/s (as QBO does); with next to no latency the jobs run flat out into that
limit, so a client-side limiter that lets one request too many through shows up as a QBO 429.
"""

from __future__ import annotations

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


def test_small_bench_invoices_each_client_once_sends_each_once_and_gets_no_qbo_429(tmp_path: Path) -> None:
    results = bench.run_bench(12, profile=bench.FAST, seed=11, state_dir=tmp_path, say=lambda line: None)

    failed = [f"{c['check']}: {c['detail']}" for c in results["checks"] if not c["passed"]]
    assert not failed, "\n".join(failed) + "\n" + bench.render(results)
    assert results["passed"]
    create, send, again = results["runs"]
    assert (create["created"], send["sent"], again["created"]) == (12, 12, 0)
    assert [run["exit_code"] for run in results["runs"]] == [0, 0, 0]
    assert all(run["calls"].get("qbo", {}).get("429", 0) == 0 for run in results["runs"])
    assert results["all_runs"]["qbo_peak_1s"] <= 10
    assert create["qbo_calls_per_invoice"] < 2 and send["qbo_calls_per_invoice"] <= 2.5
    assert "PASS  every client invoiced exactly once" in bench.render(results)
