"""Pure pieces without servers: the QBO query parser and the scenario loader."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sandbox import qbo_query
from sandbox.scenario import ScenarioError, load, secrets

ROWS = [
    {
        "Id": "2",
        "DisplayName": "Amy's Bird Sanctuary",
        "Active": True,
        "Balance": 274.0,
        "MetaData": {"CreateTime": "2014-09-11"},
    },
    {
        "Id": "10",
        "DisplayName": "Bill's Windsurf Shop",
        "Active": False,
        "Balance": 85.0,
        "MetaData": {"CreateTime": "2014-09-12"},
    },
    {
        "Id": "3",
        "DisplayName": "Cool Cars",
        "Active": True,
        "Balance": 0,
        "MetaData": {"CreateTime": "2014-09-13"},
    },
]


def _ids(text: str, active_only: bool = True) -> list[str]:
    page, _ = qbo_query.run(qbo_query.parse(text), ROWS, default_active_only=active_only)
    return [row["Id"] for row in page]


@pytest.mark.parametrize(
    ("text", "ids"),
    [
        ("SELECT * FROM Customer ORDERBY Id", ["2", "3"]),
        ("select * from customer where Active in (true, false) orderby id", ["2", "3", "10"]),
        ("SELECT * FROM Customer WHERE DisplayName = 'amy\\'s bird sanctuary'", ["2"]),
        ("SELECT * FROM Customer WHERE DisplayName LIKE '%S B%' AND Active IN (true,false)", ["2"]),
        (
            "SELECT * FROM Customer WHERE Balance > '80' AND Active IN (true,false) ORDERBY Balance DESC",
            ["2", "10"],
        ),
        ("SELECT * FROM Customer WHERE MetaData.CreateTime >= '2014-09-12' AND Active = false", ["10"]),
        ("SELECT * FROM Customer WHERE Id IN ('3', '2') ORDER BY DisplayName DESC", ["3", "2"]),
        ("SELECT * FROM Customer ORDERBY Id MAXRESULTS 1 STARTPOSITION 2", ["3"]),
        ("SELECT *, Sku FROM Customer WHERE Id = '2'", ["2"]),  # python-quickbooks' Item query
    ],
)
def test_query_language(text: str, ids: list[str]) -> None:
    assert _ids(text) == ids


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("SELECT Id FROM Customer", "4001"),
        ("SELECT * FROM Customer WHERE DisplayName = 'x' OR Id = '1'", "4000"),
        ("SELECT * FROM Customer WHERE DisplayName = 'unterminated", "4000"),
        ("SELECT * FROM Customer MAXRESULTS 5000", "4001"),
        ("SELECT * FROM Customer STARTPOSITION 1 STARTPOSITION 2", "4000"),
        ("", "4000"),
    ],
)
def test_query_errors(text: str, code: str) -> None:
    with pytest.raises(qbo_query.QueryError) as error:
        qbo_query.parse(text)
    assert error.value.code == code


def test_count_reports_the_total() -> None:
    parsed = qbo_query.parse("SELECT COUNT(*) FROM Customer WHERE Active IN (true,false)")
    assert parsed.count and qbo_query.run(parsed, ROWS, default_active_only=True)[1] == 3


def test_scenario_extends_the_default_and_overrides_secrets(tmp_path: Path) -> None:
    path = tmp_path / "graph-delivery.json"
    path.write_text(
        json.dumps(
            {
                "extends": "default",
                "name": "graph-delivery",
                "settings": {"INVOICE_DELIVERY": "graph"},
                "secrets": {"QBO/10000": {"refresh_token": "revoked"}},
            }
        )
    )
    scenario = load(path)

    assert scenario["name"] == "graph-delivery" and scenario["settings"]["INVOICE_DELIVERY"] == "graph"
    assert scenario["settings"]["EXCLUDED_CUSTOMERS"] == "10001 - AICPA" and len(scenario["registry"]) == 8
    qbo_secret = secrets(scenario)["QBO/10000"]
    assert qbo_secret["refresh_token"] == "revoked" and qbo_secret["realm_id"] == "9341453172655510"


def test_a_broken_scenario_names_every_problem() -> None:
    with pytest.raises(ScenarioError) as error:
        load(
            {
                "qbo": {"customers": [{"DisplayName": "no id"}]},
                "clickup": {"time_entries": [{"user": 1, "start": "2026-10-01T00:00:00Z"}]},
                "registry": [{"customer_name": "no key"}],
            }
        )
    message = str(error.value)
    assert "qbo.customers[0] needs an Id" in message
    assert "clickup.time_entries[0] has unknown user 1" in message
    assert "needs end, duration_minutes or running" in message
    assert "registry[0] needs a client_id" in message
