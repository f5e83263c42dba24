"""Helpers for the sandbox tests: sessions that trust the sandbox CA and a thin QBO caller."""

from __future__ import annotations

import time

import requests

from integrations.http import RateLimiter
from sandbox import Sandbox

QBO_CLIENT = ("ABq7Xm2Vn9Lp4Rk8Tb1Yd6Hs3Gf0JcSandboxClientId01", "sbxQboSecret7Tm2Qx9Vb4Nk8Lp3Rs6Wd1Yh5Gf")
REALM = "9341453172655510"


def session_for(sandbox: Sandbox) -> requests.Session:
    """requests lets REQUESTS_CA_BUNDLE from the environment override Session.verify; tests opt out."""
    session = requests.Session()
    session.trust_env = False
    session.verify = sandbox.env["REQUESTS_CA_BUNDLE"]
    return session


def qbo_token(sandbox: Sandbox, http: requests.Session) -> str:
    """Refresh with the refresh token the stand-in currently accepts (as a client reading the secret would)."""
    current = sandbox.qbo.store.get("qbo/oauth")["refresh_token"]
    response = http.post(
        sandbox.env["QBO_TOKEN_URL"],
        data={"grant_type": "refresh_token", "refresh_token": current},
        auth=QBO_CLIENT,
    )
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


# The stand-in enforces QBO's 10/s and 500/min by default; tests that are not about limits pace
# themselves like a real client instead of relaxing the stand-in (one pace for the whole worker).
_PACE = RateLimiter(per_second=10, per_minute=500)


class Qbo:
    """A thin QBO caller for the tests: base URL, bearer token, minorversion, QBO's pace."""

    def __init__(self, sandbox: Sandbox, http: requests.Session) -> None:
        self.http = http
        self.base = f"{sandbox.env['QBO_BASE_URL']}/v3/company/{REALM}"
        self.headers = {"Authorization": f"Bearer {qbo_token(sandbox, http)}", "Accept": "application/json"}

    def _paced(self, method: str, path: str, params: dict, **kwargs: object) -> requests.Response:
        for _ in range(3):  # another test's calls may still fill the stand-in's one-second window
            _PACE.acquire()
            response = self.http.request(
                method,
                f"{self.base}{path}",
                params={"minorversion": 75, **params},
                headers=self.headers,
                **kwargs,
            )
            if response.status_code != 429:
                return response
            time.sleep(1.1)
        return response

    def get(self, path: str, **params: object) -> requests.Response:
        return self._paced("GET", path, params)

    def post(self, path: str, body: object = None, **params: object) -> requests.Response:
        return self._paced("POST", path, params, json=body)

    def query(self, text: str) -> requests.Response:
        return self.get("/query", query=text)

    def raw_query(self, text: str) -> requests.Response:
        """One query, unpaced and never retried (for tests of the limits themselves)."""
        return self.http.get(
            f"{self.base}/query", params={"minorversion": 75, "query": text}, headers=self.headers
        )
