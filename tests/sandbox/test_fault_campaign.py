"""The fault campaign counts what it claims to count (planted faults are found, a clean state
counts nothing) and a small sample of every family runs end to end (`make faults` is the full run)."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandbox import scenario as scenarios
from sandbox.campaign import bad_input, checks, families, report, secrets_scan, tokens
from sandbox.campaign.counts import Outcome
from sandbox.campaign.run import run_campaign
from sandbox.campaign.scenarios import CREATE, SEND, default_scenario
from sandbox.campaign.workspace import JobRun, Workspace
from tests.sandbox.helpers import Qbo, session_for

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("faults")]
BOOKKEEPER = "bookkeeper@brightline-automation.example"


class Seeded:
    """A stopped sandbox after a clean create and a clean send, and both references."""

    def __init__(self, root: Path):
        self.template = root / "sandbox"
        with Workspace(root) as space:
            assert space.run("create", CREATE).exit_code == 0
            self.create = checks.reference_from(space.sandbox.state(), BOOKKEEPER, [], send=False)
            assert space.run("send", SEND).exit_code == 0
            self.send = checks.reference_from(space.sandbox.state(), BOOKKEEPER, [], send=True)


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Seeded:
    return Seeded(tmp_path_factory.mktemp("faults-template"))


@pytest.fixture
def space(seeded: Seeded, tmp_path: Path) -> Iterator[Workspace]:
    with Workspace(tmp_path / "scenario", clone_of=seeded.template) as running:
        yield running


def _count(space: Workspace, reference: checks.Reference, send: bool = True) -> Outcome:
    outcome = Outcome("test", "planted")
    state = space.sandbox.state()
    checks.count_invoices(state, reference, outcome)
    checks.count_archives(state, reference, outcome)
    if send:
        checks.count_deliveries(state, reference, BOOKKEEPER, outcome)
    return outcome


def _secrets(space: Workspace) -> dict[str, str]:
    scenario = json.loads((space.sandbox.state_dir / "scenario.json").read_text())
    return secrets_scan.secret_values(space.sandbox.state_dir, scenario, {})


def test_a_clean_create_and_send_count_nothing(seeded: Seeded, space: Workspace) -> None:
    outcome = _count(space, seeded.send)
    files = secrets_scan.output_files(space.root, space.sandbox.state_dir)
    tokens.count_token(space.sandbox, [], outcome)

    assert outcome.counts.faulty() is False, outcome.problems
    assert len(seeded.send.invoices) == 7 and len(seeded.send.delivered) == 4  # Cedar's is held
    assert secrets_scan.scan(files, _secrets(space)) == []
    assert (
        len([f for f in files if f.suffix == ".eml"]) == 6
    )  # 4 invoices (Cedar's is held) + 2 bookkeeper mails were read


def test_a_planted_duplicate_invoice_counts_one(seeded: Seeded, space: Workspace) -> None:
    state = space.sandbox.state()
    original = next(
        i for i in state["invoices"] if "invoice-processor:10004:2026-10" in str(i.get("PrivateNote"))
    )
    copy = {k: original[k] for k in ("CustomerRef", "Line", "PrivateNote")}
    copy["Line"] = [line for line in copy["Line"] if line.get("DetailType") == "SalesItemLineDetail"]
    answer = Qbo(space.sandbox, session_for(space.sandbox)).post("/invoice", copy)
    assert answer.status_code == 200, answer.text

    outcome = _count(space, seeded.send)

    assert (outcome.counts.duplicates, outcome.counts.lost, outcome.counts.double_mails) == (1, 0, 0)
    assert "invoice-processor:10004:2026-10" in outcome.problems[0]


def test_a_planted_second_customer_mail_counts_one_double_mail(seeded: Seeded, space: Workspace) -> None:
    mail = next(m for m in space.sandbox.state()["mails"] if "10003-202610" in m["subject"])
    shutil.copy(mail["path"], Path(mail["path"]).with_name("zz-again.eml"))

    outcome = _count(space, seeded.send)

    assert (outcome.counts.double_mails, outcome.counts.duplicates) == (1, 0)
    assert "10003-202610 mailed 2 times" in outcome.problems[0]


def test_a_missing_invoice_counts_lost_and_unrecovered(seeded: Seeded, space: Workspace) -> None:
    with space.sandbox.qbo.store.edit("qbo/invoices") as invoices:
        invoices[:] = [
            i for i in invoices if "invoice-processor:10005:2026-10" not in str(i.get("PrivateNote"))
        ]

    outcome = _count(space, seeded.create, send=False)

    assert (outcome.counts.lost, outcome.counts.unrecovered, outcome.counts.duplicates) == (1, 1, 0)


def test_an_invoice_billed_to_another_customer_counts_lost(seeded: Seeded, space: Workspace) -> None:
    with space.sandbox.qbo.store.edit("qbo/invoices") as invoices:
        for invoice in invoices:
            if "invoice-processor:10003:2026-10" in str(invoice.get("PrivateNote")):
                invoice["CustomerRef"] = {"value": "59", "name": "10002 - Acme CPA"}

    outcome = _count(space, seeded.create, send=False)

    assert (outcome.counts.lost, outcome.counts.unrecovered) == (1, 0)
    assert "billed to customer 59" in outcome.problems[0]


def test_an_unsent_invoice_and_a_missing_archive_count_unrecovered(seeded: Seeded, space: Workspace) -> None:
    with space.sandbox.qbo.store.edit("qbo/invoices") as invoices:
        for invoice in invoices:
            if invoice.get("DocNumber") == "10006-202610":
                invoice["EmailStatus"] = "NeedToSend"
    csv = next(f for f in space.sandbox.state()["files"] if f["path"].endswith("usage-10002-2026-10.csv"))
    Path(csv["local_path"]).unlink()

    outcome = _count(space, seeded.send)

    assert outcome.counts.unrecovered == 2 and outcome.counts.lost == 0, outcome.problems


def test_a_leaked_secret_is_found_in_any_form(space: Workspace) -> None:
    secrets = _secrets(space)
    token = next(value for value, label in secrets.items() if label == "QBO refresh token (current)")
    (space.root / "01-run.stderr").write_text(json.dumps({"message": f"refresh with {token}\n"}))

    files = secrets_scan.output_files(space.root, space.sandbox.state_dir)
    leaks = secrets_scan.scan(files, secrets)

    assert [(path.name, label) for path, label in leaks] == [("01-run.stderr", "QBO refresh token (current)")]


def _run(tmp: Path, exit_code: int, text: str) -> JobRun:
    (tmp / "x.stdout").write_text("")
    (tmp / "x.stderr").write_text(text)
    return JobRun("rerun", [], exit_code, 1.0, tmp / "x.stdout", tmp / "x.stderr", tmp / "x.json")


def test_an_unusable_token_is_lost_unless_the_run_exited_2_saying_how_to_reauthorise(
    space: Workspace, tmp_path: Path
) -> None:
    secrets = space.sandbox.aws_client("secretsmanager")
    value = json.loads(secrets.get_secret_value(SecretId="QBO/10000")["SecretString"])
    secrets.put_secret_value(
        SecretId="QBO/10000", SecretString=json.dumps({**value, "refresh_token": "revoked-1"})
    )

    silent, honest = Outcome("test", "silent"), Outcome("test", "honest")
    tokens.count_token(space.sandbox, [_run(tmp_path, 1, "run failed unexpectedly")], silent)
    tokens.count_token(space.sandbox, [_run(tmp_path, 2, "invalid_grant: run `make qbo-auth`")], honest)

    assert (silent.counts.lost_tokens, silent.counts.reauth) == (1, 0)
    assert (honest.counts.lost_tokens, honest.counts.reauth) == (0, 1)


def test_every_bad_input_kind_is_a_valid_scenario_of_its_own() -> None:
    names = [kind.name for kind in bad_input.KINDS]

    assert len(names) >= 45 and len(set(names)) == len(names)
    for kind in bad_input.KINDS:
        scenarios.validate(scenarios.load(bad_input.scenario_for(kind, default_scenario())))


def test_a_sample_of_every_family_runs_and_reports(tmp_path: Path) -> None:
    result = run_campaign(tmp_path, workers=2, sample=1, say=lambda line: None)

    assert [row["family"] for row in result["families"]] == list(families.FAMILIES)
    assert result["scenarios"] == len(families.FAMILIES)
    broken = [p for o in result["outcomes"] for p in o["problems"] if "could not run" in p]
    assert broken == []
    assert sum(o["files_scanned"] for o in result["outcomes"]) > 50
    assert re.fullmatch(
        r"faults: 8 scenarios, \d+ duplicate invoices, \d+ double mails, \d+ lost invoices, "
        r"\d+ lost tokens, \d+ leaked secrets, \d+ unrecovered",
        report.last_line(result),
    )
