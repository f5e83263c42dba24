"""State survives stop/start: AWS through the moto snapshot, the stand-ins through their files."""

from __future__ import annotations

import json
import time
from pathlib import Path

from sandbox import Sandbox
from tests.sandbox.helpers import QBO_CLIENT, session_for


def test_secrets_ledger_and_refresh_token_survive_a_restart(tmp_path: Path) -> None:
    with Sandbox(tmp_path) as sandbox:
        http = session_for(sandbox)
        secrets = sandbox.aws_client("secretsmanager")
        dynamodb = sandbox.aws_client("dynamodb")
        stored = json.loads(secrets.get_secret_value(SecretId="QBO/10000")["SecretString"])
        rotated = http.post(
            sandbox.env["QBO_TOKEN_URL"],
            data={"grant_type": "refresh_token", "refresh_token": stored["refresh_token"]},
            auth=QBO_CLIENT,
        ).json()["refresh_token"]
        new_version = secrets.put_secret_value(
            SecretId="QBO/10000", SecretString=json.dumps({**stored, "refresh_token": rotated})
        )["VersionId"]
        dynamodb.put_item(
            TableName="qbo-invoice-processor-ledger",
            Item={
                "pk": {"S": "invoice#10002#2026-10"},
                "status": {"S": "created"},
                "expires_at": {"N": "1893456000"},
            },
        )
        first_env = sandbox.env
        versions_before = sandbox.state()["secrets"]["QBO/10000"]

    offline = Sandbox(tmp_path).state()
    assert offline["running"] is False and offline["ledger"][0]["pk"] == "invoice#10002#2026-10"

    with Sandbox(tmp_path) as sandbox:
        http = session_for(sandbox)
        secrets = sandbox.aws_client("secretsmanager")
        current = json.loads(secrets.get_secret_value(SecretId="QBO/10000")["SecretString"])
        refreshed = http.post(
            sandbox.env["QBO_TOKEN_URL"],
            data={"grant_type": "refresh_token", "refresh_token": current["refresh_token"]},
            auth=QBO_CLIENT,
        )
        state = sandbox.state()
        ttl = sandbox.aws_client("dynamodb").describe_time_to_live(TableName="qbo-invoice-processor-ledger")
        second_env = sandbox.env

    assert current["refresh_token"] == rotated and refreshed.status_code == 200
    versions = state["secrets"]["QBO/10000"]
    assert [v["version_id"] for v in versions] == [v["version_id"] for v in versions_before]
    assert versions[-1]["version_id"] == new_version and versions[-1]["stages"] == ["AWSCURRENT"]
    assert versions[-1]["changed"] == ["refresh_token"] and versions[0]["changed"] == ["(created)"]
    assert "AWSPREVIOUS" in versions[0]["stages"]
    assert [row["pk"] for row in state["ledger"]] == ["invoice#10002#2026-10"]
    assert len(state["registry"]) == 8
    assert ttl["TimeToLiveDescription"]["AttributeName"] == "expires_at"
    assert second_env["QBO_BASE_URL"] == first_env["QBO_BASE_URL"]  # ports are reused when free
    assert rotated not in json.dumps(state)  # secret values never appear in the state


def test_reset_wipes_everything_and_seeds_again(tmp_path: Path) -> None:
    with Sandbox(tmp_path) as sandbox:
        http = session_for(sandbox)
        sandbox.aws_client("dynamodb").put_item(
            TableName="qbo-invoice-processor-ledger", Item={"pk": {"S": "x"}}
        )
        sandbox.set_faults("qbo", latency_ms=5)
        (sandbox.state_dir / "sharepoint" / "leftover.txt").write_text("x")
        sandbox.reset(
            {"name": "tiny", "qbo": {"customers": [{"Id": "1", "DisplayName": "10002 - Acme CPA"}]}}
        )
        state = sandbox.state()
        token = http.post(
            sandbox.env["QBO_TOKEN_URL"],
            data={
                "grant_type": "refresh_token",
                "refresh_token": "AB11800000000sandboxInitialRefreshToken0000000000",
            },
            auth=(
                "ABsandboxQboClientId0000000000000000000000000000",
                "sandboxQboClientSecret00000000000000000000",
            ),
        )

    assert state["ledger"] == [] and state["registry"] == [] and state["files"] == []
    assert state["faults"] == {} and state["seed"]["scenario"] == "tiny"
    assert state["invoices"] == []
    assert token.status_code == 200  # the base scenario's credentials


def test_a_second_sandbox_on_the_same_dir_is_refused(tmp_path: Path) -> None:
    with Sandbox(tmp_path):
        second = Sandbox(tmp_path)
        try:
            second.start()
        except RuntimeError as exc:
            assert "another sandbox" in str(exc)
        else:
            second.stop()
            raise AssertionError("two sandboxes shared one state dir")


def test_two_sandboxes_in_one_process_do_not_share_aws(tmp_path: Path) -> None:
    with (
        Sandbox(
            tmp_path / "a", scenario={"registry": [{"client_id": "10002"}, {"client_id": "10003"}]}
        ) as first,
        Sandbox(tmp_path / "b", scenario={"registry": [{"client_id": "20001"}]}) as second,
    ):
        first.aws_client("dynamodb").put_item(
            TableName="qbo-invoice-processor-ledger", Item={"pk": {"S": "only-in-a"}}
        )
        assert [r["client_id"] for r in second.state()["registry"]] == ["20001"]
        assert second.state()["ledger"] == []
        assert len(first.state()["registry"]) == 2


def test_the_invoice_documents_are_written_behind_and_flushed_before_anyone_reads_them(
    tmp_path: Path,
) -> None:
    """Issue 13: a QBO write no longer rewrites every invoice on the request path, yet the files a
    reader (``state``, ``sandbox show``, a restart) sees always hold every write."""
    from sandbox.store import JsonStore, read_json

    store = JsonStore(tmp_path, flush_seconds=0.2)
    store.put("qbo/invoices", [{"Id": "1"}])
    store.put("qbo/company", {"next_id": 2})  # not deferred: on disk at once
    assert read_json(tmp_path / "qbo" / "company.json") == {"next_id": 2}
    with store.edit("qbo/invoices") as invoices:
        invoices.append({"Id": "2"})
    store.flush()
    assert read_json(tmp_path / "qbo" / "invoices.json") == [{"Id": "1"}, {"Id": "2"}]

    store.put("qbo/requestids", {"r1": {"status": 200}})  # written behind by the store's writer
    deadline = time.monotonic() + 5
    while read_json(tmp_path / "qbo" / "requestids.json") is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert read_json(tmp_path / "qbo" / "requestids.json") == {"r1": {"status": 200}}

    with Sandbox(tmp_path / "sandbox") as sandbox:
        customer = next(c for c in sandbox.qbo.rows("Customer") if c.get("Active", True))
        item = sandbox.qbo.rows("Item")[0]
        line = {"ItemRef": {"value": item["Id"]}, "Qty": 1, "UnitPrice": 10}
        made = sandbox.qbo.create_invoice(
            {
                "CustomerRef": {"value": customer["Id"]},
                "Line": [{"DetailType": "SalesItemLineDetail", "Amount": 10, "SalesItemLineDetail": line}],
            }
        )
    offline = Sandbox(tmp_path / "sandbox").state()  # from the files alone: stop flushed them
    assert made["Id"] in {invoice["Id"] for invoice in offline["invoices"]}
