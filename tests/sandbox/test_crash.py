"""The crash switch: a job process dies with 137 right after its N-th completed external call."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sandbox.common import REPO_ROOT

SCRIPT = """
import sys, requests
base = sys.argv[1]
session = requests.Session()
session.trust_env = False
for n in range(1, 6):
    method = "POST" if n % 2 == 0 else "GET"
    session.request(method, f"{base}/call/{n}")
    print(f"saw answer {n}", flush=True)
print("finished", flush=True)
"""


def _run(tmp_path: Path, *options: str, base: str) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "job.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    command = [sys.executable, "-m", "sandbox.crash", *options, "--target", str(script), "--", base]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=60, cwd=REPO_ROOT)


def test_process_exits_137_right_after_the_nth_call(tmp_path: Path, local_http_server) -> None:
    for n in range(1, 6):
        local_http_server.script("GET" if n % 2 else "POST", f"/call/{n}")
    result = _run(tmp_path, "--after", "3", base=local_http_server.url)

    assert result.returncode == 137
    assert [r.path for r in local_http_server.requests] == ["/call/1", "/call/2", "/call/3"]
    assert result.stdout.splitlines() == ["saw answer 1", "saw answer 2"]  # the 3rd answer was never seen
    assert "right after call 3" in result.stderr


def test_match_counts_only_matching_calls(tmp_path: Path, local_http_server) -> None:
    for n in range(1, 6):
        local_http_server.script("GET" if n % 2 else "POST", f"/call/{n}")
    result = _run(tmp_path, "--after", "2", "--match", "^POST ", base=local_http_server.url)

    assert result.returncode == 137
    assert [r.path for r in local_http_server.requests] == ["/call/1", "/call/2", "/call/3", "/call/4"]


def test_a_job_that_makes_fewer_calls_finishes_normally(tmp_path: Path, local_http_server) -> None:
    for n in range(1, 6):
        local_http_server.script("GET" if n % 2 else "POST", f"/call/{n}")
    result = _run(tmp_path, "--after", "50", base=local_http_server.url)
    assert result.returncode == 0 and result.stdout.strip().endswith("finished")
