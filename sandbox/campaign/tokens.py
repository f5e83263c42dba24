"""Is the QBO refresh token in Secrets Manager still usable? (DESIGN §7 "Tokens".)

Asked of the QBO stand-in's token endpoint itself, so the answer stays right whatever grace the
stand-in gives a retried refresh. The check rotates the token: it is the last thing a scenario does.
"""

from __future__ import annotations

import json
import re
from typing import Any

import requests

from sandbox.campaign.counts import Outcome
from sandbox.campaign.workspace import JobRun

# The honest exit 2 (DESIGN §2, §7): the run names the way to re-authorise, `make qbo-auth`.
REAUTH_MESSAGE = re.compile(r"make qbo-auth")


def token_usable(sandbox: Any) -> bool:
    env = sandbox.env
    stored = json.loads(
        sandbox.aws_client("secretsmanager").get_secret_value(SecretId=env["QBO_SECRET_NAME"])["SecretString"]
    )
    answer = requests.post(
        env["QBO_TOKEN_URL"],
        data={"grant_type": "refresh_token", "refresh_token": str(stored.get("refresh_token", ""))},
        auth=(str(stored.get("client_id", "")), str(stored.get("client_secret", ""))),
        headers={"Accept": "application/json"},
        verify=env["REQUESTS_CA_BUNDLE"],
        timeout=30,
    )
    return answer.status_code == 200


def honest_exit_2(run: JobRun) -> bool:
    return run.exit_code == 2 and bool(REAUTH_MESSAGE.search(run.output()))


def count_token(sandbox: Any, runs: list[JobRun], outcome: Outcome) -> None:
    """Lost token: unusable and the last run did not exit 2 saying how to re-authorise."""
    if token_usable(sandbox):
        return
    if runs and honest_exit_2(runs[-1]):
        outcome.counts.reauth += 1
        outcome.notes.append(f"{outcome.name}: re-authorisation needed (exit 2 with the steps)")
    else:
        codes = ", ".join(f"{r.label} exit {r.exit_code}" for r in runs)
        outcome.problem("lost_tokens", f"the stored QBO refresh token no longer works ({codes})")
